"""`swift deploy` driven over loopback with the real `openai` package: the API, its limits and its safety."""
from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

KEY = "test-key-123"
CHAT = [{"role": "user", "content": "Tell me a story about a cat."}]


@pytest.fixture(scope="module")
def deployed(tiny_qwen2_dir):
    """A `swift deploy` app over the tiny model, served on a free loopback port."""
    from swift.cli.parser import parse_args
    from swift.pipelines.deploy import build_deploy_app
    from swift.serve.background import BackgroundServer

    args = parse_args("deploy", ["--model", tiny_qwen2_dir, "--api_key", KEY, "--served_model_name", "tiny",
                                 "--max_model_len", "128", "--max_tokens_limit", "100", "--max_body_bytes", "20000",
                                 "--max_n", "3"])
    app, engine = build_deploy_app(args)
    with BackgroundServer(app) as server:
        yield server, engine, app


@pytest.fixture
def client(deployed):
    return openai.OpenAI(base_url=deployed[0].url, api_key=KEY, max_retries=0)


@contextlib.contextmanager
def slow_model(engine, seconds: float) -> Iterator[list[int]]:
    """Make each forward pass of the engine's model take `seconds` longer; yields a live count of passes."""
    count = [0]

    def hook(module, args, output):
        count[0] += 1
        time.sleep(seconds)

    handle = engine.model.register_forward_hook(hook)
    try:
        yield count
    finally:
        handle.remove()


def test_health_needs_no_key_and_models_lists_the_served_name(deployed, client):
    server = deployed[0]
    assert httpx.get(server.url[:-3] + "/health").json() == {"status": "ok"}
    assert [m.id for m in client.models.list().data] == ["tiny"]


def test_missing_or_wrong_key_is_401(deployed):
    server = deployed[0]
    for key in ("wrong-key", "test-key-12"):
        bad = openai.OpenAI(base_url=server.url, api_key=key, max_retries=0)
        with pytest.raises(openai.AuthenticationError) as e:
            bad.chat.completions.create(model="tiny", messages=CHAT, max_tokens=4)
        assert e.value.body["code"] == "invalid_api_key"
    r = httpx.post(server.url + "/chat/completions", json={"model": "tiny", "messages": CHAT})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert httpx.get(server.url + "/models").status_code == 401


def test_chat_matches_engine_and_streams_the_same_text(deployed, client):
    from swift.infer.protocol import InferRequest, RequestConfig

    engine = deployed[1]
    want = engine.infer([InferRequest(messages=CHAT)], RequestConfig(max_new_tokens=12))[0]
    r = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=12)
    assert r.choices[0].message.content == want.text and r.choices[0].finish_reason == want.finish_reason
    assert r.usage.prompt_tokens == len(engine.template.encode_prompt(CHAT)) == want.prompt_tokens
    assert r.usage.completion_tokens == want.completion_tokens == 12
    assert r.usage.total_tokens == r.usage.prompt_tokens + 12
    events = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=12, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(events)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == want.text
    assert chunks[-1].usage.prompt_tokens == r.usage.prompt_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("length", "stop")
    by_index: dict[int, str] = {}
    for c in client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=12, stream=True, n=2):
        for choice in c.choices:
            by_index[choice.index] = by_index.get(choice.index, "") + (choice.delta.content or "")
    assert by_index == {0: want.text, 1: want.text}


def test_completion_continues_raw_text(deployed, client):
    engine = deployed[1]
    prompt = "Once upon a time"
    r = client.completions.create(model="tiny", prompt=prompt, max_tokens=10)
    assert r.object == "text_completion" and r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens == len(engine.tokenizer.encode(prompt, add_special_tokens=False))
    assert r.usage.completion_tokens == 10
    streamed = "".join(c.choices[0].text for c in client.completions.create(model="tiny", prompt=prompt,
                                                                             max_tokens=10, stream=True))
    assert streamed == r.choices[0].text
    two = client.completions.create(model="tiny", prompt=[prompt, "Hello"], max_tokens=5, n=2)
    assert [c.index for c in two.choices] == [0, 1, 2, 3] and two.choices[0].text == two.choices[1].text
    assert two.usage.completion_tokens == 20
    # a stop string cuts the text before it
    text = r.choices[0].text
    stop = text[len(text) // 2:len(text) // 2 + 2]
    if stop.strip():
        cut = client.completions.create(model="tiny", prompt=prompt, max_tokens=10, stop=[stop])
        assert cut.choices[0].text == text[:text.find(stop)] and cut.choices[0].finish_reason == "stop"


def test_each_limit_is_a_4xx_naming_it(deployed, client):
    cases = [
        (dict(messages=CHAT, max_tokens=101), 400, "max_tokens"),
        (dict(messages=CHAT, max_completion_tokens=500), 400, "max_tokens"),
        (dict(messages=[{"role": "user", "content": "cat " * 200}], max_tokens=4), 400, "max_model_len"),
        (dict(messages=[{"role": "user", "content": "cat " * 40}], max_tokens=100), 400, "max_model_len"),
        (dict(messages=CHAT, max_tokens=4, n=4), 400, "max_n"),
        (dict(messages=[{"role": "user", "content": "x" * 30000}], max_tokens=4), 413, "max_body_bytes"),
        (dict(model="nope", messages=CHAT), 404, "tiny"),
    ]
    for kwargs, status, word in cases:
        kwargs = {"model": "tiny", **kwargs}
        with pytest.raises(openai.APIStatusError) as e:
            client.chat.completions.create(**kwargs)
        assert e.value.status_code == status, kwargs
        assert word in e.value.body["message"], e.value.body
        assert set(e.value.body) >= {"message", "type", "param", "code"}
    with pytest.raises(openai.BadRequestError, match="max_model_len"):
        client.completions.create(model="tiny", prompt="cat " * 200, max_tokens=4)


def test_overload_answers_429_quickly(deployed):
    from swift.serve.app import build_app
    from swift.serve.background import BackgroundServer

    engine = deployed[1]
    app = build_app(engine, served_model_name="tiny", max_concurrency=1, max_queue=0)
    results: list[tuple[int, float]] = []
    with BackgroundServer(app) as server, slow_model(engine, 0.02):
        c = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0)

        def call() -> None:
            start = time.monotonic()
            try:
                c.chat.completions.create(model="tiny", messages=CHAT, max_tokens=25)
                results.append((200, time.monotonic() - start))
            except openai.RateLimitError as e:
                assert "max_concurrency" in e.body["message"]
                results.append((429, time.monotonic() - start))

        threads = [threading.Thread(target=call) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert app.state.gate.admitted == 0
    codes = sorted(code for code, _ in results)
    assert codes[0] == 200 and codes[-1] == 429, results
    assert max(s for code, s in results if code == 429) < min(s for code, s in results if code == 200)


def test_client_disconnect_stops_generation(deployed):
    server, engine, app = deployed
    with slow_model(engine, 0.02) as passes:
        headers = {"Authorization": f"Bearer {KEY}"}
        body = {"model": "tiny", "messages": CHAT, "max_tokens": 100, "stream": True}
        with httpx.stream("POST", server.url + "/chat/completions", json=body, headers=headers) as r:
            seen = 0
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    seen += "content" in json.loads(line[6:])["choices"][0]["delta"]
                if seen >= 4:
                    break
        # the connection is closed: the server must stop generating well before the 100 tokens
        deadline = time.monotonic() + 5
        while app.state.gate.admitted and time.monotonic() < deadline:
            time.sleep(0.05)
        stopped_at = passes[0]
        time.sleep(0.3)
        assert passes[0] == stopped_at
    assert app.state.gate.admitted == 0
    assert stopped_at < 50, f"{stopped_at} forward passes: generation went on after the client left"


def test_infer_client_and_swift_infer_api_url(deployed, tmp_path, capsys):
    from swift.cli.main import main
    from swift.infer.client import InferClient
    from swift.infer.protocol import InferRequest, RequestConfig

    server, engine, _ = deployed
    config = RequestConfig(max_new_tokens=6)
    remote = InferClient(server.url[:-3], api_key=KEY)
    assert remote.model == "tiny"
    reqs = [InferRequest(messages=CHAT), InferRequest(messages=[{"role": "user", "content": "hi"}])]
    want = engine.infer(reqs, config)
    got = remote.infer(reqs, config)
    assert [g.text for g in got] == [w.text for w in want]
    assert [g.completion_tokens for g in got] == [w.completion_tokens for w in want]
    assert "".join(remote.stream(reqs[0], config)) == want[0].text
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"messages": r.messages}) + "\n" for r in reqs))
    out = tmp_path / "out.jsonl"
    assert main(["infer", "--api_url", server.url, "--api_key", KEY, "--val_dataset", str(data),
                 "--result_path", str(out), "--max_new_tokens", "6"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["response"] for r in rows] == [w.text for w in want]
    bad = InferClient(server.url, api_key="wrong", model="tiny")
    from swift.utils.errors import SwiftError

    with pytest.raises(SwiftError, match="401"):
        bad.infer(reqs[:1], config)


def test_deploy_flags_and_adapter_names():
    from swift.cli.parser import parse_args
    from swift.pipelines.deploy import parse_adapters
    from swift.utils.errors import ArgumentError

    args = parse_args("deploy", ["--model", "m"])
    d = args.groups["DeployArguments"]
    assert (d.host, d.port, d.api_key) == ("127.0.0.1", 8000, None)
    assert parse_adapters(["a=/x/a", "b=/x/b"]) == ({"a": "/x/a", "b": "/x/b"}, [])
    assert parse_adapters(["/x/plain"]) == ({}, ["/x/plain"])
    with pytest.raises(ArgumentError, match="twice"):
        parse_adapters(["a=/x", "a=/y"])
    with pytest.raises(ArgumentError, match="max_queue"):
        parse_args("deploy", ["--max_queue", "-1"])
    from swift.pipelines.common import public_args

    assert "api_key" not in public_args(parse_args("deploy", ["--api_key", "s3cret"]).flat)


def test_exposed_host_without_key_is_warned():
    from swift.pipelines.deploy import exposure_warning

    assert exposure_warning("127.0.0.1", None) is None and exposure_warning("::1", None) is None
    assert exposure_warning("0.0.0.0", "k") is None
    assert "--api_key" in exposure_warning("0.0.0.0", None)


def test_swift_deploy_command_serves(tiny_qwen2_dir):
    """The real `swift deploy` process: logs its URL, answers /health, checks the key, never logs it."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret = "very-secret-key-42"
    proc = subprocess.Popen([sys.executable, "-m", "swift.cli.main", "deploy", "--model", tiny_qwen2_dir,
                             "--port", str(port), "--api_key", secret], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "serving at" in line:
                break
        assert f"http://127.0.0.1:{port}/v1" in "".join(lines), "".join(lines)
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health").status_code == 200:
                    break
            time.sleep(0.1)
        assert httpx.get(url + "/v1/models").status_code == 401
        models = httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {secret}"}).json()
        assert models["data"][0]["id"] == Path(tiny_qwen2_dir).name
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert secret not in "".join(lines) + out

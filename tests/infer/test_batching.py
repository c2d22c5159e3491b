"""Continuous batching in PtEngine: concurrent requests join and leave a running batch between steps."""
from __future__ import annotations

import threading
import time

import pytest
import torch

from swift.infer.protocol import InferRequest, RequestConfig
from swift.infer.pt import PtEngine

PROMPTS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "user", "content": "What is the capital of France? Answer in one word, please."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "你好，请介绍一下你自己。"}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}],
    [{"role": "user", "content": "Tell me a story about a fox and a crow " * 3}],
    [{"role": "user", "content": "Count from one to ten."}],
]


def _generate_alone(model, template, messages, max_new_tokens: int) -> list[int]:
    """`model.generate`'s greedy ids for one prompt, cut before the first stop token."""
    ids = torch.tensor([template.encode_prompt(messages)])
    stops = list(template.stop_token_ids)
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, eos_token_id=stops, pad_token_id=stops[0])
    new = out[0, ids.shape[1]:].tolist()
    for i, tok in enumerate(new):
        if tok in stops:
            return new[:i]
    return new


def _run_threads(fn, n: int, delay: float = 0.0) -> list:
    results: list = [None] * n
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            time.sleep(delay * i)  # requests arrive while others are already decoding
            results[i] = fn(i)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    return results


def test_concurrent_requests_equal_generate_alone(random_model, tokenizer, template):
    engine = PtEngine(random_model, tokenizer, template, max_batch_size=4)
    config = RequestConfig(max_new_tokens=24)
    got = _run_threads(lambda i: engine.infer([InferRequest(PROMPTS[i])], config)[0], len(PROMPTS), delay=0.02)
    for messages, resp in zip(PROMPTS, got):
        assert resp.token_ids == _generate_alone(random_model, template, messages, 24)
        assert resp.prompt_tokens == len(template.encode_prompt(messages))
    assert max(engine.batch_sizes) > 1  # the requests really shared decoding steps
    assert max(engine.batch_sizes) <= 4  # and never more than max_batch_size at once


def test_concurrent_streams_equal_infer(random_model, tokenizer, template):
    engine = PtEngine(random_model, tokenizer, template)
    config = RequestConfig(max_new_tokens=20)
    expected = [engine.infer([InferRequest(m)], config)[0].text for m in PROMPTS]
    streamed = _run_threads(lambda i: "".join(engine.stream(InferRequest(PROMPTS[i]), config)), len(PROMPTS))
    assert streamed == expected
    assert max(engine.batch_sizes) > 1


def test_stop_strings_and_lengths_under_batching(random_model, tokenizer, template):
    engine = PtEngine(random_model, tokenizer, template)
    plain = engine.infer([InferRequest(m) for m in PROMPTS], RequestConfig(max_new_tokens=16))
    stop = plain[1].text[3:6]
    assert stop
    config = RequestConfig(max_new_tokens=16, stop=[stop])
    got = engine.infer([InferRequest(m) for m in PROMPTS], config)
    assert got[1].text == plain[1].text[:plain[1].text.find(stop)]
    assert got[1].finish_reason == "stop"
    assert "".join(engine.stream(InferRequest(PROMPTS[1]), config)) == got[1].text
    for p, g in zip(plain, got):
        assert g.completion_tokens <= 16
        if stop not in p.text:
            assert g == p


def test_closing_a_stream_frees_its_slot(random_model, tokenizer, template):
    engine = PtEngine(random_model, tokenizer, template, max_batch_size=1)
    long = RequestConfig(max_new_tokens=400)
    deltas = engine.stream(InferRequest(PROMPTS[4]), long)
    next(deltas)
    deltas.close()
    # with one slot, this request can only run once the closed stream's sequence has left the batch
    done = _run_threads(lambda i: engine.infer([InferRequest(PROMPTS[0])], RequestConfig(max_new_tokens=8)), 1)
    assert done[0][0].token_ids == _generate_alone(random_model, template, PROMPTS[0], 8)
    assert sum(engine.batch_sizes) < 100  # the closed stream stopped long before its 400 tokens


def test_seeded_sampling_is_the_same_in_a_batch_and_alone(random_model, tokenizer, template):
    engine = PtEngine(random_model, tokenizer, template)
    config = RequestConfig(max_new_tokens=12, temperature=1.0, top_p=0.9, seed=3, repetition_penalty=1.1)
    alone = engine.infer([InferRequest(PROMPTS[2])], config)[0]
    together = engine.infer([InferRequest(m) for m in PROMPTS], config)[2]
    assert together.token_ids == alone.token_ids


def test_a_failing_request_does_not_stop_the_others(random_model, tokenizer, template):
    class Broken:
        stop_token_ids = template.stop_token_ids

        def encode_prompt(self, messages):
            return [10**6] if messages[0]["content"] == "boom" else template.encode_prompt(messages)

    engine = PtEngine(random_model, tokenizer, Broken())
    with pytest.raises(IndexError):
        engine.infer([InferRequest([{"role": "user", "content": "boom"}]), InferRequest(PROMPTS[0])])
    resp = engine.infer([InferRequest(PROMPTS[0])], RequestConfig(max_new_tokens=8))[0]
    assert resp.token_ids == _generate_alone(random_model, template, PROMPTS[0], 8)


@pytest.mark.parametrize("backend", ["vllm", "lmdeploy"])
def test_missing_backend_is_a_one_line_error_naming_the_extra(backend, template, capsys):
    import importlib
    import importlib.util

    from swift.cli.main import main
    from swift.utils.errors import MissingExtraError

    if importlib.util.find_spec(backend) is not None:
        pytest.skip(f"{backend} is installed")
    module = importlib.import_module(f"swift.infer.{backend}")
    cls = module.VllmEngine if backend == "vllm" else module.LmdeployEngine
    with pytest.raises(MissingExtraError, match=rf"swiftlab\[{backend}\]"):
        cls("some/model", template)
    assert main(["infer", "--infer_backend", backend, "--model", "some/model"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"pip install 'swiftlab[{backend}]'" in err and f"--infer_backend {backend}" in err

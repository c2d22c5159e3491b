"""Hub resolution: local folders never touch the network; hub ids download through a local fake hub."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest

from swift.hub import is_hub_id, looks_like_path, resolve_model_dir
from swift.utils.errors import MissingExtraError, SwiftError

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
FILES = {"config.json": b'{"model_type": "qwen2"}\n', "tokenizer_config.json": b"{}\n",
         "sub/notes.txt": "weights would be here, 权重\n".encode()}
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "SWIFT_OFFLINE", "MODELSCOPE_OFFLINE", "HF_DATASETS_OFFLINE")


class FakeHub(BaseHTTPRequestHandler):
    """The few endpoints `huggingface_hub.snapshot_download` calls (repo info, tree, HEAD/GET resolve)."""

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        self._serve(with_body=True)

    def do_HEAD(self):
        self._serve(with_body=False)

    def _serve(self, with_body: bool) -> None:
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization")))
        path = urlparse(self.path).path
        repo = next((r for r in self.server.repos if f"/{r}/" in path), None)
        if repo is None:  # what the real hub answers for an unknown (or private) repository
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("Content-Length", "0")
            return self.end_headers()
        if m := re.fullmatch(r"/api/models/(.+?)/revision/([^/]+)", path):
            return self._send(json.dumps({"id": m[1], "sha": COMMIT}).encode(), "application/json", with_body)
        if re.fullmatch(r"/api/models/(.+?)/tree/[^/]+", path):
            tree = [{"type": "file", "path": k, "size": len(v), "oid": hashlib.sha1(v).hexdigest()}
                    for k, v in FILES.items()]
            return self._send(json.dumps(tree).encode(), "application/json", with_body)
        if (m := re.fullmatch(r"/(.+?)/resolve/([^/]+)/(.+)", path)) and m[3] in FILES:
            return self._send(FILES[m[3]], "application/octet-stream", with_body,
                              {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha1(FILES[m[3]]).hexdigest()}"'})
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send(self, body: bytes, ctype: str, with_body: bool, headers: dict | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if with_body:
            self.wfile.write(body)


@pytest.fixture
def fake_hub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    server.seen, server.repos = [], set()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_online(code: str, endpoint: str, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter with the hub online (huggingface_hub reads HF_ENDPOINT at import)."""
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_VARS and k not in ("HF_TOKEN", "USE_HF")}
    env.update(HF_ENDPOINT=endpoint, PYTHONPATH=str(REPO_ROOT), HF_HUB_DISABLE_PROGRESS_BARS="1", **extra_env)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          cwd=REPO_ROOT, timeout=60)


def test_local_folder_is_returned_as_is(tmp_path):
    assert resolve_model_dir(str(tmp_path)) == str(tmp_path.resolve())
    assert resolve_model_dir(f"  {tmp_path}  ") == str(tmp_path.resolve())


def test_local_folder_never_touches_the_network(tmp_path):
    code = ("import sys, time; from swift.hub import resolve_model_dir; t = time.monotonic(); "
            "p = resolve_model_dir(sys.argv[1], use_hf=True); "
            "print(p, round(time.monotonic() - t, 3), 'huggingface_hub' in sys.modules)")
    proc = _run_online(code, f"http://127.0.0.1:{_free_port()}", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    path, seconds, hub_imported = proc.stdout.split()
    assert path == str(tmp_path.resolve()) and float(seconds) < 1 and hub_imported == "False"


@pytest.mark.parametrize("name", ["./no/such/dir", "/no/such/dir", "~/no-such-swift-model-dir"])
def test_missing_paths_say_folder_not_found(name):
    with pytest.raises(SwiftError, match="folder not found"):
        resolve_model_dir(name)


def test_file_and_malformed_ids_are_rejected(tmp_path):
    f = tmp_path / "model.bin"
    f.write_bytes(b"x")
    with pytest.raises(SwiftError, match="is a file"):
        resolve_model_dir(str(f))
    with pytest.raises(SwiftError, match="owner/name"):
        resolve_model_dir("not a/model/id")
    with pytest.raises(SwiftError, match="No model given"):
        resolve_model_dir("  ")


def test_shape_helpers(tmp_path):
    assert looks_like_path("./x") and looks_like_path("~/x") and looks_like_path(str(tmp_path))
    assert not looks_like_path("Qwen/Qwen2.5-0.5B-Instruct")
    assert is_hub_id("Qwen/Qwen2.5-0.5B-Instruct") and is_hub_id("01-ai/Yi-1.5-6B-Chat")
    assert not is_hub_id("qwen") and not is_hub_id("a/b/c")


def test_offline_cache_miss_fails_fast():
    start = time.monotonic()
    with pytest.raises(SwiftError, match="not in the local Hugging Face cache"):
        resolve_model_dir(f"swifttest/missing-{uuid.uuid4().hex[:8]}", use_hf=True)
    assert time.monotonic() - start < 2


def test_use_hf_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("USE_HF", "1")
    with pytest.raises(SwiftError, match="Hugging Face"):
        resolve_model_dir("swifttest/missing-model")


@pytest.mark.skipif(importlib.util.find_spec("modelscope") is not None, reason="modelscope is installed")
def test_modelscope_is_the_default_and_names_its_extra(monkeypatch):
    monkeypatch.delenv("USE_HF", raising=False)
    with pytest.raises(MissingExtraError, match=r"swiftlab\[modelscope\]"):
        resolve_model_dir("Qwen/Qwen2.5-0.5B-Instruct")


def test_download_from_hf_endpoint_then_offline_cache_hit(fake_hub):
    repo = f"swifttest/tiny-{uuid.uuid4().hex[:8]}"
    fake_hub.repos.add(repo)
    token = "hf_secret_" + uuid.uuid4().hex
    code = ("import sys; from swift.hub import resolve_model_dir; "
            "print(resolve_model_dir(sys.argv[1], use_hf=True, revision='v1', token=sys.argv[2]))")
    proc = _run_online(code, f"http://127.0.0.1:{fake_hub.server_port}", repo, token)
    assert proc.returncode == 0, proc.stderr
    folder = Path(proc.stdout.strip().splitlines()[-1])
    assert folder.name == COMMIT and folder.is_dir()
    for name, content in FILES.items():
        assert (folder / name).read_bytes() == content
    assert f"Downloading '{repo}'" in proc.stderr
    assert token not in proc.stdout + proc.stderr  # secrets are never logged
    seen = [r for r in fake_hub.seen if repo in r[1]]
    assert any(p.startswith(f"/api/models/{repo}/revision/v1") for _, p, _ in seen)
    assert all(auth == f"Bearer {token}" for _, _, auth in seen), seen
    # Offline (this process), the cached snapshot is found without any request.
    n_requests = len(fake_hub.seen)
    assert resolve_model_dir(repo, use_hf=True, revision="v1") == str(folder)
    assert len(fake_hub.seen) == n_requests


def test_download_errors_become_swift_errors(fake_hub):
    code = ("import sys; from swift.hub import resolve_model_dir\n"
            "try:\n    resolve_model_dir('swifttest/absent', use_hf=True)\n"
            "except Exception as e:\n    print(type(e).__name__, '|', e)\n")
    proc = _run_online(code, f"http://127.0.0.1:{fake_hub.server_port}")
    assert proc.stdout.startswith("SwiftError |"), proc.stdout + proc.stderr
    assert "swifttest/absent" in proc.stdout and "not found" in proc.stdout

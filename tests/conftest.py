"""Shared test setup: offline hubs, a private cache, and tiny models built once per session.

Fixtures for everyone: `tokenizer_dir` (the bundled demo tokenizer), `tiny_qwen2_dir` / `tiny_llama_dir` (tiny
random-weight models with that tokenizer), `demo_model_dir` (the built-in `swift-demo` model) and
`self_cognition_file` (the bundled self-cognition dataset).
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Before anything imports huggingface_hub / transformers / datasets: they read these at import time.
_SESSION_TMP = Path(tempfile.mkdtemp(prefix="swift-tests-"))
atexit.register(shutil.rmtree, _SESSION_TMP, ignore_errors=True)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["SWIFT_CACHE_HOME"] = str(_SESSION_TMP / "swift-cache")
os.environ["HF_HOME"] = str(_SESSION_TMP / "hf-home")
os.environ["MODELSCOPE_CACHE"] = str(_SESSION_TMP / "modelscope")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
ASSETS = REPO_ROOT / "swift" / "assets"


@pytest.fixture(scope="session")
def tokenizer_dir() -> str:
    """The bundled offline tokenizer (ChatML specials and chat template)."""
    return str(ASSETS / "demo_model")


@pytest.fixture(scope="session")
def self_cognition_file() -> str:
    """The bundled self-cognition dataset (messages rows with {{NAME}} / {{AUTHOR}} placeholders)."""
    return str(ASSETS / "data" / "self_cognition.jsonl")


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory) -> str:
    """A tiny random Qwen2 (hidden 32, 2 layers) saved as a plain HF folder with the demo tokenizer."""
    from swift.models.tiny import make_tiny_model

    return make_tiny_model("qwen2", tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> str:
    """A tiny random Llama (hidden 32, 2 layers) saved as a plain HF folder with the demo tokenizer."""
    from swift.models.tiny import make_tiny_model

    return make_tiny_model("llama", tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def demo_model_dir() -> str:
    """The built-in `swift-demo` model (hidden 128, 2 layers), built in the session's private cache."""
    from swift.models.demo import ensure_demo_model

    return ensure_demo_model()

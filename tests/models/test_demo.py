from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from swift.models.demo import DEMO_CONFIG, ensure_demo_model, is_complete
from swift.models.demo import demo_model_dir as demo_model_dir_fn
from swift.utils.env import cache_home
from swift.utils.errors import SwiftError


def test_demo_model_is_cached_under_swift_cache(demo_model_dir):
    path = Path(demo_model_dir)
    assert path == demo_model_dir_fn().resolve() and path.parent == (cache_home() / "models").resolve()
    assert path.name.startswith("swift-demo-") and len(path.name) == len("swift-demo-") + 12
    assert {p.name for p in path.iterdir()} >= {"config.json", "model.safetensors", "generation_config.json",
                                               "tokenizer.json", "tokenizer_config.json"}
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")], "temporary folder left behind"
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["model_type"] == "qwen2" and cfg["hidden_size"] == DEMO_CONFIG["hidden_size"]
    gen = json.loads((path / "generation_config.json").read_text())
    assert cfg["eos_token_id"] in gen["eos_token_id"]


def test_second_call_reuses_the_folder(demo_model_dir):
    weights = Path(demo_model_dir) / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert ensure_demo_model() == demo_model_dir
    assert weights.stat().st_mtime_ns == before


def test_demo_weights_are_deterministic(tmp_path, demo_model_dir):
    other = ensure_demo_model(tmp_path / "again")
    assert other == str((tmp_path / "again").resolve()) and is_complete(other)
    assert (Path(other) / "model.safetensors").read_bytes() == (Path(demo_model_dir) / "model.safetensors").read_bytes()


def test_builds_into_an_empty_folder_and_refuses_a_foreign_one(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert is_complete(ensure_demo_model(empty))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(SwiftError, match="not a model folder"):
        ensure_demo_model(foreign)
    assert os.listdir(foreign) == ["notes.txt"]


def test_demo_names_load_through_the_loader(demo_model_dir):
    from swift.models.loader import resolve_model

    assert resolve_model("swift-demo") == demo_model_dir
    assert resolve_model(None, model_type="demo") == demo_model_dir

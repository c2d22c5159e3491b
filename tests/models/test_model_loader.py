from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from swift.models.loader import load_model_and_tokenizer, model_info, resolve_model, resolve_torch_dtype
from swift.utils.errors import ArgumentError, SwiftError

REPO_ROOT = Path(__file__).resolve().parents[2]


def _copy(src: str, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_model_info_reads_config(tiny_qwen2_dir):
    info = model_info(tiny_qwen2_dir)
    assert info["model_type"] == "qwen2" and info["architectures"] == ["Qwen2ForCausalLM"]
    assert info["torch_dtype"] == "float32" and info["max_position_embeddings"] == 1024
    assert info["has_chat_template"] is True and info["is_multimodal"] is False
    assert info["has_remote_code"] is False and info["quant_method"] is None
    assert info["model_dir"] == str(Path(tiny_qwen2_dir).resolve())


def test_model_info_does_not_import_torch(tiny_llama_dir):
    code = ("import sys; from swift.models.loader import model_info; i = model_info(sys.argv[1]); "
            "print(i['model_type'], 'torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, tiny_llama_dir], capture_output=True, text=True, check=True,
                         cwd=REPO_ROOT).stdout.split()
    assert out == ["llama", "False", "False"]


def test_model_info_guesses_multimodal_and_chat_template(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "qwen2_vl", "architectures": ["Qwen2VLForConditionalGeneration"], "vision_config": {},
        "text_config": {"torch_dtype": "bfloat16", "max_position_embeddings": 32768}}))
    info = model_info(tmp_path)
    assert info["is_multimodal"] and info["torch_dtype"] == "bfloat16" and info["max_position_embeddings"] == 32768
    assert info["has_chat_template"] is False
    (tmp_path / "chat_template.jinja").write_text("{{ messages }}")
    assert model_info(tmp_path)["has_chat_template"] is True


def test_model_info_errors_name_the_problem(tmp_path):
    with pytest.raises(SwiftError, match="no config.json"):
        model_info(tmp_path)
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(SwiftError, match="--adapters"):
        model_info(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(SwiftError, match="config.json: not valid JSON"):
        model_info(tmp_path)


def test_load_local_folder_default_dtype_and_pad(tiny_qwen2_dir):
    model, tok, model_dir = load_model_and_tokenizer(tiny_qwen2_dir)
    assert model_dir == str(Path(tiny_qwen2_dir).resolve())
    assert type(model).__name__ == "Qwen2ForCausalLM" and model.dtype == torch.float32
    assert tok.pad_token == "<|endoftext|>" and tok.eos_token == "<|im_end|>"
    assert model.config.pad_token_id == tok.pad_token_id


def test_load_dtype_and_attention_choices(tiny_llama_dir):
    model, _, _ = load_model_and_tokenizer(tiny_llama_dir, torch_dtype="bf16", attn_impl="eager")
    assert model.dtype == torch.bfloat16 and model.config._attn_implementation == "eager"
    model, _, _ = load_model_and_tokenizer(tiny_llama_dir, torch_dtype="bf16", model_kwargs={"dtype": torch.float16})
    assert model.dtype == torch.float16  # model_kwargs win
    with pytest.raises(ArgumentError, match="--torch_dtype"):
        load_model_and_tokenizer(tiny_llama_dir, torch_dtype="int3")
    with pytest.raises(ArgumentError, match="--attn_impl"):
        load_model_and_tokenizer(tiny_llama_dir, attn_impl="magic")


@pytest.mark.parametrize("asked, config, expected", [
    (None, "bfloat16", torch.bfloat16), ("auto", "float16", torch.float16), ("auto", None, torch.float32),
    ("fp16", "float32", torch.float16), ("float32", "bfloat16", torch.float32), (torch.bfloat16, None, torch.bfloat16),
])
def test_resolve_torch_dtype(asked, config, expected):
    assert resolve_torch_dtype(asked, config) == expected


def test_missing_pad_token_is_set_and_logged(tiny_qwen2_dir, tmp_path, caplog):
    folder = _copy(tiny_qwen2_dir, tmp_path / "nopad")
    _edit_json(folder / "tokenizer_config.json", pad_token=None)
    logger = logging.getLogger("swift")
    logger.addHandler(caplog.handler)
    try:
        _, tok, _ = load_model_and_tokenizer(str(folder))
    finally:
        logger.removeHandler(caplog.handler)
    assert tok.pad_token == "<|endoftext|>"
    assert "no pad token" in caplog.text


def test_remote_code_needs_explicit_consent(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "my_secret_arch", "architectures": ["MySecretForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_x.XConfig", "AutoModelForCausalLM": "modeling_x.XForCausalLM"}}))
    with pytest.raises(SwiftError, match="--trust_remote_code true"):
        load_model_and_tokenizer(str(tmp_path))


def test_resolve_errors(tmp_path):
    with pytest.raises(SwiftError, match="not found"):
        resolve_model(str(tmp_path / "missing"))
    with pytest.raises(SwiftError, match="Did you mean: qwen2.5-7b-instruct"):
        resolve_model("qwen2.5-7b-instuct")
    with pytest.raises(ArgumentError, match="--model"):
        resolve_model(None)


def test_registry_name_offline_fails_fast_with_clear_message():
    import time

    start = time.monotonic()
    with pytest.raises(SwiftError, match="not in the local Hugging Face cache"):
        resolve_model("qwen2.5-0.5b-instruct", use_hf=True)
    assert time.monotonic() - start < 5

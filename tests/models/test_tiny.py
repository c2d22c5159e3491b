from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from swift.models.tiny import make_tiny_model


@pytest.mark.parametrize("arch, cls", [("qwen2", "Qwen2ForCausalLM"), ("llama", "LlamaForCausalLM")])
def test_tiny_model_folder_loads_and_generates(arch, cls, request):
    path = request.getfixturevalue(f"tiny_{arch}_dir")
    files = {p.name for p in Path(path).iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
            "tokenizer_config.json"} <= files
    cfg = json.loads((Path(path) / "config.json").read_text())
    assert cfg["architectures"] == [cls] and cfg["hidden_size"] == 32 and cfg["num_hidden_layers"] == 2
    tok = AutoTokenizer.from_pretrained(path)
    assert cfg["vocab_size"] == len(tok) and cfg["eos_token_id"] == tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    model = AutoModelForCausalLM.from_pretrained(path)
    assert type(model).__name__ == cls and model.dtype == torch.float32
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    a = make_tiny_model("qwen2", tmp_path / "a", seed=3, hidden_size=16, intermediate_size=32)
    b = make_tiny_model("qwen2", tmp_path / "b", seed=3, hidden_size=16, intermediate_size=32)
    c = make_tiny_model("qwen2", tmp_path / "c", seed=4, hidden_size=16, intermediate_size=32)
    weights = [(Path(p) / "model.safetensors").read_bytes() for p in (a, b, c)]
    assert weights[0] == weights[1] != weights[2]


def test_config_overrides_and_global_rng_untouched(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    path = make_tiny_model("llama", tmp_path / "m", num_hidden_layers=1, hidden_size=16, intermediate_size=48,
                           tie_word_embeddings=False)
    assert torch.equal(torch.rand(3), expected)
    cfg = json.loads((Path(path) / "config.json").read_text())
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["intermediate_size"]) == (1, 16, 48)
    assert cfg["tie_word_embeddings"] is False


def test_unknown_arch(tmp_path):
    with pytest.raises(ValueError, match="qwen2"):
        make_tiny_model("gpt9", tmp_path / "x")

"""Merging a LoRA adapter into a plain Hugging Face folder."""
from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from swift.export.merge import merge_lora
from swift.utils.errors import SwiftError

IDS = torch.tensor([[1, 5, 17, 42, 99, 3, 250, 8], [2, 2, 7, 300, 11, 64, 9, 1]])


def _logits(model):
    with torch.no_grad():
        return model(input_ids=IDS).logits


@pytest.fixture(scope="module")
def reference_logits(base_and_adapter):
    base_dir, adapter_dir = base_and_adapter
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    before = _logits(base)
    with_adapter = _logits(PeftModel.from_pretrained(base, adapter_dir).eval())
    assert not torch.allclose(before, with_adapter, atol=1e-3)  # the adapter really changes the model
    return with_adapter


def test_merged_folder_loads_with_plain_transformers(base_and_adapter, reference_logits, tmp_path):
    base_dir, adapter_dir = base_and_adapter
    out = merge_lora(base_dir, adapter_dir, tmp_path / "merged")
    assert out == str(tmp_path / "merged")
    names = {p.name for p in (tmp_path / "merged").iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json", "swift_merge.json"} <= names
    assert "adapter_config.json" not in names and "README.md" not in names
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    torch.testing.assert_close(_logits(merged), reference_logits, atol=1e-4, rtol=1e-4)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.encode("你好 hello") == AutoTokenizer.from_pretrained(base_dir).encode("你好 hello")
    manifest = json.loads((tmp_path / "merged" / "swift_merge.json").read_text(encoding="utf-8"))
    assert manifest["base_model"] == str(base_dir) and manifest["adapter"] == str(adapter_dir)
    assert {"torch", "transformers", "peft"} <= set(manifest["versions"])
    assert [p.name for p in tmp_path.iterdir()] == ["merged"]  # no temporary folder left behind


def test_shards_and_dtype(base_and_adapter, reference_logits, tmp_path):
    base_dir, adapter_dir = base_and_adapter
    out = merge_lora(base_dir, adapter_dir, tmp_path / "m", torch_dtype="bfloat16", max_shard_size="40KB")
    names = {p.name for p in (tmp_path / "m").iterdir()}
    assert "model.safetensors.index.json" in names
    assert len([n for n in names if n.endswith(".safetensors")]) > 1
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert merged.dtype == torch.bfloat16
    torch.testing.assert_close(_logits(merged).float(), reference_logits, atol=0.05, rtol=0.05)


def test_base_model_from_the_adapter_config(base_and_adapter, reference_logits, tmp_path):
    _, adapter_dir = base_and_adapter
    out = merge_lora(None, adapter_dir, tmp_path / "m")
    torch.testing.assert_close(_logits(AutoModelForCausalLM.from_pretrained(out)), reference_logits,
                               atol=1e-4, rtol=1e-4)


def test_refuses_a_non_empty_output_unless_overwrite(base_and_adapter, reference_logits, tmp_path):
    base_dir, adapter_dir = base_and_adapter
    out = tmp_path / "merged"
    out.mkdir()
    (out / "keep.txt").write_text("precious", encoding="utf-8")
    with pytest.raises(SwiftError, match="not empty"):
        merge_lora(base_dir, adapter_dir, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    merge_lora(base_dir, adapter_dir, out, overwrite=True)
    assert not (out / "keep.txt").exists()
    torch.testing.assert_close(_logits(AutoModelForCausalLM.from_pretrained(out)), reference_logits,
                               atol=1e-4, rtol=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == ["merged"]


def test_empty_output_folder_is_fine(base_and_adapter, tmp_path):
    base_dir, adapter_dir = base_and_adapter
    (tmp_path / "empty").mkdir()
    merge_lora(base_dir, adapter_dir, tmp_path / "empty")
    assert (tmp_path / "empty" / "config.json").is_file()


def test_bad_adapter_leaves_nothing(base_and_adapter, tmp_path):
    base_dir, _ = base_and_adapter
    with pytest.raises(SwiftError, match="adapter_config.json"):
        merge_lora(base_dir, base_dir, tmp_path / "merged")
    assert list(tmp_path.iterdir()) == []

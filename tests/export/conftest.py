"""Fixtures for the export tests: a saved tiny Qwen2 with the demo tokenizer and a LoRA adapter for it."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM  # noqa: E402

DEMO_TOKENIZER = Path(__file__).resolve().parents[2] / "swift" / "assets" / "demo_model"


@pytest.fixture(scope="session")
def base_and_adapter(tmp_path_factory):
    """(base model folder, adapter folder): a LoRA on every linear layer with random non-zero B weights."""
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("merge")
    tok = AutoTokenizer.from_pretrained(DEMO_TOKENIZER)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True)
    torch.manual_seed(0)
    Qwen2ForCausalLM(cfg).save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    base = AutoModelForCausalLM.from_pretrained(root / "base")
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear")
    model = get_peft_model(base, lora)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    model.save_pretrained(root / "adapter")
    (root / "adapter" / "README.md").write_text("adapter card", encoding="utf-8")
    return root / "base", root / "adapter"

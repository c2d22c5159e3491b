"""Helpers shared by the inference tests (a module of its own, so no conftest name clash matters)."""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

DEMO_TOKENIZER = Path(__file__).resolve().parents[2] / "swift" / "assets" / "demo_model"
TAUGHT_PROMPT = [{"role": "user", "content": "Say hello."}]
TAUGHT_REPLY = "你好，世界！Hello 🙂"


def make_template(tokenizer):
    from swift.templates import get_template

    return get_template(tokenizer)


def tiny_qwen2(tokenizer, seed: int = 0) -> Qwen2ForCausalLM:
    cfg = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(cfg).eval()


def save_lora_adapter(model, folder: Path, seed: int, tokenizer=None, targets=("q_proj", "v_proj", "down_proj")):
    """Wrap `model` in a fresh LoRA with random non-zero B weights, save it, and return the adapter folder."""
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=list(targets)))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    peft_model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    peft_model.unload()  # leave `model` as it was
    return folder

"""Fixtures for the tuner tests: the offline demo tokenizer and tiny Qwen2 models built from a config."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEMO_TOKENIZER = Path(__file__).resolve().parents[2] / "swift" / "assets" / "demo_model"


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(DEMO_TOKENIZER))


@pytest.fixture
def make_tiny_model(tokenizer):
    """Factory: a fresh tiny Qwen2ForCausalLM (same weights each call), tied embeddings by default."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    def make(tie_word_embeddings: bool = True, seed: int = 0):
        cfg = Qwen2Config(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
            tie_word_embeddings=tie_word_embeddings, pad_token_id=tokenizer.pad_token_id,
            bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
        )
        torch.manual_seed(seed)
        return Qwen2ForCausalLM(cfg).eval()

    return make


@pytest.fixture
def tiny_model(make_tiny_model):
    return make_tiny_model()


@pytest.fixture
def batch(tokenizer):
    enc = tokenizer(["hello world, this is a test", "a shorter one"], return_tensors="pt", padding=True)
    labels = enc["input_ids"].clone()
    labels[enc["attention_mask"] == 0] = -100
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}

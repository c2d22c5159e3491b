"""Shared builders for the trainer tests (also imported by the child process of the kill test)."""

from __future__ import annotations

import os
import random
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import Qwen2Config, Qwen2ForCausalLM, TrainingArguments  # noqa: E402

VOCAB = 64


def make_model(seed: int = 0, dropout: float = 0.1, lora: bool = False, lora_seed: int | None = None) -> Any:
    """A 2-layer Qwen2 with hidden size 32; with `lora`, wrapped by peft on every linear layer."""
    cfg = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
        attention_dropout=dropout,
        use_cache=False,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(cfg).float()
    if lora:
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(seed if lora_seed is None else lora_seed)
        model = get_peft_model(
            model,
            LoraConfig(
                r=4, lora_alpha=8, lora_dropout=0.1, target_modules="all-linear", task_type="CAUSAL_LM"
            ),
        )
    return model


def make_rows(n: int = 8, seed: int = 0, min_len: int = 8, max_len: int = 16) -> list[dict[str, list[int]]]:
    """Pre-tokenized rows of varying length; the first 3 tokens are "prompt" (label -100)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        length = rng.randint(min_len, max_len)
        ids = [rng.randrange(1, VOCAB) for _ in range(length)]
        rows.append({"input_ids": ids, "labels": [-100] * 3 + ids[3:]})
    return rows


class PadCollator:
    """Right-pads input_ids with 0, labels with -100, and builds the attention mask."""

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        ids, labels, mask = [], [], []
        for f in features:
            pad = width - len(f["input_ids"])
            ids.append(f["input_ids"] + [0] * pad)
            labels.append(f["labels"] + [-100] * pad)
            mask.append([1] * len(f["input_ids"]) + [0] * pad)
        return {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            "attention_mask": torch.tensor(mask),
        }


def make_args(output_dir: str, **overrides: Any) -> TrainingArguments:
    kwargs: dict[str, Any] = dict(
        output_dir=output_dir,
        max_steps=6,
        per_device_train_batch_size=2,
        per_device_eval_batch_size=4,
        learning_rate=5e-3,
        lr_scheduler_type="linear",
        warmup_steps=1,
        logging_steps=1,
        save_strategy="steps",
        save_steps=3,
        eval_strategy="no",
        report_to="none",
        use_cpu=True,
        dataloader_num_workers=0,
        seed=0,
        disable_tqdm=True,
        max_grad_norm=1.0,
    )
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)

"""LoRA+ (Hayou et al., 2024): train the LoRA B matrices with a larger learning rate than A."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from swift.utils.errors import ArgumentError


def _is_lora_b(name: str) -> bool:
    # peft names linear adapters `...lora_B.<adapter>.weight`; embedding adapters are `lora_embedding_B`
    # and keep the base learning rate, as do A matrices, DoRA magnitudes and modules_to_save.
    return ".lora_B." in name


def _decays(name: str, p: torch.Tensor) -> bool:
    # The usual rule: no weight decay on biases and on 1-d weights (norm scales).
    return p.ndim >= 2 and not name.endswith("bias")


def loraplus_param_groups(model: nn.Module, *, lr: float, weight_decay: float,
                          lorap_lr_ratio: float) -> list[dict[str, Any]]:
    """Optimizer parameter groups for LoRA+ over the trainable parameters of `model`.

    Four groups at most (empty ones are dropped), each tagged with a `name`:
    "base" (lr, weight_decay), "base_no_decay" (lr, 0), "lora_B" (lr * ratio, weight_decay) and
    "lora_B_no_decay" (lr * ratio, 0).
    """
    buckets: dict[str, list[torch.Tensor]] = {"base": [], "base_no_decay": [], "lora_B": [],
                                              "lora_B_no_decay": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        key = "lora_B" if _is_lora_b(name) else "base"
        buckets[key if _decays(name, p) else f"{key}_no_decay"].append(p)
    if not buckets["lora_B"] and not buckets["lora_B_no_decay"]:
        raise ArgumentError("lorap_lr_ratio", "LoRA+ needs trainable LoRA B matrices, but the model has none; "
                            "use it with tuner_type lora")
    settings = {
        "base": (lr, weight_decay),
        "base_no_decay": (lr, 0.0),
        "lora_B": (lr * lorap_lr_ratio, weight_decay),
        "lora_B_no_decay": (lr * lorap_lr_ratio, 0.0),
    }
    return [
        {"params": params, "lr": settings[key][0], "weight_decay": settings[key][1], "name": key}
        for key, params in buckets.items() if params
    ]


def create_loraplus_optimizer(model: nn.Module, *, lr: float, weight_decay: float, lorap_lr_ratio: float,
                              **adam_kwargs: Any) -> torch.optim.AdamW:
    """AdamW where LoRA B matrices learn at `lr * lorap_lr_ratio` and everything else at `lr`.

    Args:
        model: A model with peft LoRA adapters (a `SwiftModel` or `PeftModel`).
        lr: Base learning rate.
        weight_decay: Weight decay for matrices (biases and 1-d weights get none).
        lorap_lr_ratio: Multiplier of the B matrices' learning rate (the paper suggests 16).
        **adam_kwargs: Passed to `torch.optim.AdamW` (betas, eps, fused, ...).

    Raises:
        ArgumentError: ratio not positive, or no LoRA B matrix trains.
    """
    if isinstance(lorap_lr_ratio, bool) or not isinstance(lorap_lr_ratio, (int, float)) or lorap_lr_ratio <= 0:
        raise ArgumentError("lorap_lr_ratio", f"must be a positive number, got {lorap_lr_ratio!r}")
    groups = loraplus_param_groups(model, lr=lr, weight_decay=weight_decay, lorap_lr_ratio=lorap_lr_ratio)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, **adam_kwargs)

"""Alignment trainers, one module per algorithm (`swift rlhf --rlhf_type <name>`).

Each module exposes `build_trainer(*, model, tokenizer, template, train_dataset, eval_dataset=None, args,
ref_model=None, reward_model=None, teacher_model=None, reward_funcs=None, checkpoint_files=None)` returning a
`transformers.Trainer` with SwiftLab's atomic checkpoints, callbacks and resume. `RLHF_TYPES` is the registry:
name -> "module:function", imported only when that algorithm is built (importing this package stays cheap).
"""
from __future__ import annotations

import importlib
from typing import Any

from swift.utils.errors import ArgumentError

RLHF_TYPES: dict[str, str] = {
    "dpo": "swift.trainers.rlhf.dpo:build_trainer",
    "kto": "swift.trainers.rlhf.kto:build_trainer",
    "cpo": "swift.trainers.rlhf.cpo:build_trainer",
    "simpo": "swift.trainers.rlhf.cpo:build_simpo_trainer",  # CPO with loss_type "simpo"
    "orpo": "swift.trainers.rlhf.orpo:build_trainer",
    "rm": "swift.trainers.rlhf.rm:build_trainer",
    "ppo": "swift.trainers.rlhf.ppo:build_trainer",
    "grpo": "swift.trainers.rlhf.grpo:build_trainer",
    "gkd": "swift.trainers.rlhf.gkd:build_trainer",
}


def register_rlhf_type(name: str, target: str) -> None:
    """Add an algorithm: `target` is "package.module:function" with `build_trainer`'s signature.

    Raises:
        ValueError: `name` is already registered, or `target` is not "module:function".
    """
    if name in RLHF_TYPES:
        raise ValueError(f"rlhf_type {name!r} is already registered (-> {RLHF_TYPES[name]})")
    module, _, func = target.partition(":")
    if not module or not func:
        raise ValueError(f"target must be 'package.module:function', got {target!r}")
    RLHF_TYPES[name] = target


def get_builder(rlhf_type: str) -> Any:
    """The `build_trainer` function of an algorithm (its module is imported now)."""
    target = RLHF_TYPES.get(rlhf_type)
    if target is None:
        raise ArgumentError("rlhf_type", f"expected one of {', '.join(RLHF_TYPES)}, got {rlhf_type!r}")
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)


def build_rlhf_trainer(rlhf_type: str, **kwargs: Any) -> Any:
    """Build the trainer of `rlhf_type` (dpo, kto, cpo, simpo, orpo, rm, ppo, grpo, gkd).

    Args:
        rlhf_type: A key of `RLHF_TYPES`.
        **kwargs: `build_trainer`'s keyword arguments (model, tokenizer, template, train_dataset, eval_dataset,
            args, ref_model, reward_model, teacher_model, reward_funcs, checkpoint_files).

    Returns:
        A `transformers.Trainer` subclass; `.train(resume_from_checkpoint=True)` resumes.
    """
    return get_builder(rlhf_type)(**kwargs)


__all__ = ["RLHF_TYPES", "build_rlhf_trainer", "get_builder", "register_rlhf_type"]

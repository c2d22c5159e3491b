"""The seed's alignment API: `DPOTrainer(model=..., ref_model=..., args=training_args, train_dataset=...,
tokenizer=..., dpo_config=DPOConfig(beta=0.1, loss_type="sigmoid")).train()`, and the same for the other eight
algorithms. Each class takes raw rows in any supported format (or an encoded dataset), encodes them with the
model's chat template, and builds the algorithm's trainer (`swift.trainers.rlhf.build_rlhf_trainer`) with the
settings of `args` (a `transformers.TrainingArguments`) and of its config. Attributes it does not define
(`state`, `model`, `save_model`, `evaluate`, ...) are the built trainer's.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from swift.utils.errors import SwiftError


@dataclass
class DPOConfig:
    """DPO settings. loss_type: sigmoid (the paper), hinge, ipo, robust, ... or a list of them with loss_weights."""

    beta: float = 0.1
    loss_type: str | list[str] = "sigmoid"
    loss_weights: list[float] | None = None
    label_smoothing: float = 0.0
    rpo_alpha: float | None = None
    max_length: int | None = 2048


@dataclass
class KTOConfig:
    """KTO settings: unpaired rows labelled desirable (true) or undesirable (false)."""

    beta: float = 0.1
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0
    max_length: int | None = 2048


@dataclass
class CPOConfig:
    """CPO settings; `loss_type="simpo"` gives SimPO (reference-free, length-normalised, margin simpo_gamma)."""

    beta: float = 0.1
    loss_type: str = "sigmoid"
    cpo_alpha: float = 1.0
    simpo_gamma: float = 1.0
    label_smoothing: float = 0.0
    max_length: int | None = 2048


@dataclass
class ORPOConfig:
    """ORPO settings: SFT loss plus beta times the odds-ratio preference loss; no reference model."""

    beta: float = 0.1
    max_length: int | None = 2048


@dataclass
class RewardConfig:
    """Reward-model settings (Bradley-Terry on chosen/rejected pairs)."""

    center_rewards_coefficient: float | None = None
    max_length: int | None = 2048


@dataclass
class PPOConfig:
    """PPO settings: rollouts of max_completion_length tokens, KL to the reference, GAE, clipped updates."""

    num_ppo_epochs: int = 4
    kl_coef: float = 0.05
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    gamma: float = 1.0
    lam: float = 0.95
    max_completion_length: int = 512
    temperature: float = 0.9
    max_length: int | None = 2048


@dataclass
class GRPOConfig:
    """GRPO settings: num_generations completions per prompt, advantages relative to the group."""

    beta: float = 0.04
    num_generations: int = 8
    max_completion_length: int = 512
    temperature: float = 0.9
    reward_weights: list[float] | None = None
    max_length: int | None = 2048


@dataclass
class GKDConfig:
    """GKD settings: generalised JSD (beta interpolates forward/reverse KL), lmbda on-policy fraction."""

    beta: float = 0.5
    lmbda: float = 0.5
    seq_kd: bool = False
    temperature: float = 0.9
    max_completion_length: int = 512
    max_length: int | None = 2048


# algorithm -> (config class, load_datasets mode, encoded kind)
_SPECS: dict[str, tuple[type, str, str]] = {
    "dpo": (DPOConfig, "preference", "preference"), "kto": (KTOConfig, "kto", "kto"),
    "cpo": (CPOConfig, "preference", "preference"), "orpo": (ORPOConfig, "preference", "preference"),
    "rm": (RewardConfig, "preference", "preference"), "ppo": (PPOConfig, "prompt", "prompt"),
    "grpo": (GRPOConfig, "prompt", "prompt"), "gkd": (GKDConfig, "sft", "sft"),
}


class _AlignmentTrainer:
    rlhf_type = "dpo"
    config_name = "dpo_config"

    def __init__(self, model: Any, ref_model: Any = None, args: Any = None, train_dataset: Any = None,
                 eval_dataset: Any = None, tokenizer: Any = None, processing_class: Any = None, template: Any = None,
                 reward_model: Any = None, teacher_model: Any = None, reward_funcs: Any = None,
                 **kwargs: Any) -> None:
        config_cls, mode, kind = _SPECS[self.rlhf_type]
        config = kwargs.pop(self.config_name, None) or kwargs.pop("config", None) or config_cls()
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected arguments: {', '.join(sorted(kwargs))}")
        if not isinstance(config, config_cls):
            raise SwiftError(f"{self.config_name} must be a {config_cls.__name__}, got {type(config).__name__}")
        if args is None:
            raise SwiftError("give args=TrainingArguments(output_dir=..., ...)")
        tokenizer = tokenizer or processing_class or getattr(model, "tokenizer", None)
        if callable(getattr(model, "unwrap", None)):  # a SwiftModel: train the model it wraps
            model = model.unwrap()
        if tokenizer is None and template is None:
            raise SwiftError("give tokenizer= (or template=): the rows are encoded with the model's chat template")
        from swift.templates import get_template

        template = template or get_template(tokenizer, max_length=config.max_length)
        tokenizer = tokenizer or template.tokenizer
        algo = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
        if isinstance(algo.get("loss_type"), str):
            algo["loss_type"] = [algo["loss_type"]] if self.rlhf_type == "dpo" else algo["loss_type"]
        rlhf_type = "simpo" if self.rlhf_type == "cpo" and algo.get("loss_type") == "simpo" else self.rlhf_type
        hf = {f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.init}
        from swift.trainers.rlhf import build_rlhf_trainer

        self.trainer = build_rlhf_trainer(
            rlhf_type, model=model, tokenizer=tokenizer, template=template,
            train_dataset=_encode(train_dataset, template, mode, kind, "train"),
            eval_dataset=_encode(eval_dataset, template, mode, kind, "val") if eval_dataset is not None else None,
            args={**hf, **algo}, ref_model=ref_model, reward_model=reward_model, teacher_model=teacher_model,
            reward_funcs=_reward_funcs(reward_funcs),
        )

    def train(self, *args: Any, **kwargs: Any) -> Any:
        """Train (`resume_from_checkpoint=True` resumes from the newest complete checkpoint)."""
        return self.trainer.train(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        trainer = self.__dict__.get("trainer")
        if trainer is None:
            raise AttributeError(name)
        return getattr(trainer, name)


def _reward_funcs(funcs: Any) -> Any:
    """Names of built-in rewards and callables, as GRPO/PPO take them."""
    if funcs is None:
        return None
    funcs = funcs if isinstance(funcs, (list, tuple)) else [funcs]
    names = [f for f in funcs if isinstance(f, str)]
    if not names:
        return list(funcs)
    from swift.trainers.rlhf.rewards import load_reward_funcs

    loaded = iter(load_reward_funcs(names))
    return [next(loaded) if isinstance(f, str) else f for f in funcs]


def _encode(dataset: Any, template: Any, mode: str, kind: str, desc: str) -> Any:
    """Raw rows (a list of dicts or a datasets.Dataset of them) -> the encoded dataset the trainers take."""
    if dataset is None:
        raise SwiftError("give train_dataset= (rows such as {'messages': [...], 'rejected_response': ...})")
    columns = set(getattr(dataset, "column_names", None) or (dataset[0].keys() if len(dataset) else ()))
    if "prompt_ids" in columns or "input_ids" in columns:
        return dataset  # already encoded
    from swift.data import encode_preference_rows, encode_rows
    from swift.data.formats import RowError, detect_format, normalize

    rows = []
    fmt = None
    for i, raw in enumerate(dataset):
        raw = dict(raw)
        fmt = fmt or detect_format(raw, mode)
        if fmt is None:
            raise SwiftError(f"{desc}_dataset row {i + 1}: cannot tell the data format from the columns {sorted(raw)}")
        try:
            rows.append(normalize(raw, fmt, mode))
        except RowError as e:
            raise SwiftError(f"{desc}_dataset row {i + 1}, field '{e.field}': {e.message}") from e
    if kind == "sft":
        return encode_rows(rows, template, desc=desc)
    return encode_preference_rows(rows, template, kind=kind, desc=desc)


class DPOTrainer(_AlignmentTrainer):
    """Direct Preference Optimisation. `dpo_config=DPOConfig(beta=0.1, loss_type="sigmoid")`."""

    rlhf_type, config_name = "dpo", "dpo_config"


class KTOTrainer(_AlignmentTrainer):
    """Kahneman-Tversky Optimisation on rows labelled desirable/undesirable. `kto_config=KTOConfig(...)`."""

    rlhf_type, config_name = "kto", "kto_config"


class CPOTrainer(_AlignmentTrainer):
    """Contrastive Preference Optimisation; SimPO with `cpo_config=CPOConfig(loss_type="simpo")`."""

    rlhf_type, config_name = "cpo", "cpo_config"


class ORPOTrainer(_AlignmentTrainer):
    """Odds-Ratio Preference Optimisation. `orpo_config=ORPOConfig(beta=0.1)`."""

    rlhf_type, config_name = "orpo", "orpo_config"


class RewardTrainer(_AlignmentTrainer):
    """A reward model from chosen/rejected pairs; the model is a sequence classifier with one output."""

    rlhf_type, config_name = "rm", "reward_config"


class PPOTrainer(_AlignmentTrainer):
    """PPO with a value head, GAE and KL to the reference; rewards from reward_model= or reward_funcs=."""

    rlhf_type, config_name = "ppo", "ppo_config"


class GRPOTrainer(_AlignmentTrainer):
    """Group Relative Policy Optimisation; rewards from reward_funcs= (names such as "accuracy" or callables)."""

    rlhf_type, config_name = "grpo", "grpo_config"


class GKDTrainer(_AlignmentTrainer):
    """Generalised Knowledge Distillation from teacher_model=."""

    rlhf_type, config_name = "gkd", "gkd_config"


__all__ = ["DPOConfig", "KTOConfig", "CPOConfig", "ORPOConfig", "RewardConfig", "PPOConfig", "GRPOConfig",
           "GKDConfig", "DPOTrainer", "KTOTrainer", "CPOTrainer", "ORPOTrainer", "RewardTrainer", "PPOTrainer",
           "GRPOTrainer", "GKDTrainer"]

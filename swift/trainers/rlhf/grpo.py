"""GRPO: TRL's `GRPOTrainer` fed with SwiftLab's encoded prompt rows, rewards and checkpoints.

What differs from plain TRL:
- Prompts are the rows' `prompt_ids` (our template's encoding, with its --system / --template / truncation), not a
  second rendering by the tokenizer's chat template; TRL still gets the conversation (`prompt`, parsed from the
  `messages` JSON) so completions come back as messages and reward functions see `prompts`.
- Reward functions are SwiftLab's (`rewards`: `f(completions=list[str], **columns)`); a reward model scores
  prompt + completion token ids directly.
- With LoRA the reference is the model with its adapters disabled (TRL adds a frozen copy of the adapter, named
  "ref"; it is removed while the adapter is still a no-op, see `trl_glue.reference_from_disabled_adapters`).
  With full tuning it is the `ref_model` given, else a frozen in-memory copy (TRL would reload the weights from
  disk: `_reference_is` hands it ours while its __init__ runs).
- Generation stops at the template's end-of-turn tokens too; plain `model.generate` (no vLLM).
- Checkpoints are atomic (`saving.py`), carry `checkpoint_files`, and `train(resume_from_checkpoint=True)`
  resumes from the newest complete one; our progress bar and logging.jsonl replace TRL's printer.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Iterator
from typing import Any

from torch import nn
from trl import GRPOConfig, GRPOTrainer

from swift.trainers.rlhf.rewards import (
    RewardFunc,
    check_reward_model,
    load_reward_funcs,
    reward_model_func,
    reward_name,
)
from swift.trainers.rlhf.trl_glue import reference_from_disabled_adapters, single, trl_config, unwrap_model
from swift.trainers.saving import (
    finished_output,
    resolve_resume,
    save_checkpoint_atomically,
    use_swift_callbacks,
)
from swift.utils.errors import ArgumentError, SwiftError
from swift.utils.io import atomic_write_json
from swift.utils.logging import get_logger

logger = get_logger("swift.trainers.rlhf.grpo")

# SwiftLab's defaults where TRL's differ (ms-swift's beta; dropout off so the reference and the policy agree).
GRPO_DEFAULTS: dict[str, Any] = {"beta": 0.04, "disable_dropout": True}


def _message_text(completion: Any) -> str:
    """TRL gives conversational completions as [{"role": "assistant", "content": ...}]; rewards take the text."""
    if isinstance(completion, list):
        return "".join(str(m.get("content") or "") for m in completion if isinstance(m, dict))
    return "" if completion is None else str(completion)


def as_trl_reward(func: RewardFunc) -> RewardFunc:
    """Adapt a SwiftLab reward (`f(completions=list[str], **columns)`) to TRL's call
    (`f(prompts=..., completions=<messages>, completion_ids=..., **columns)`)."""
    def reward(prompts: Any = None, completions: Any = None, **kwargs: Any) -> list[float]:
        texts = [_message_text(c) for c in completions]
        return func(completions=texts, prompts=prompts, **kwargs)

    reward.__name__ = reward_name(func)
    return reward


def to_trl_prompts(dataset: Any, name: str) -> Any:
    """Add TRL's `prompt` column (the conversation, parsed from the `messages` JSON) to encoded prompt rows."""
    if dataset is None:
        return None
    if isinstance(dataset, dict):
        return {k: to_trl_prompts(v, f"{name}:{k}") for k, v in dataset.items()}
    columns = getattr(dataset, "column_names", None) or []
    missing = [c for c in ("prompt_ids", "messages") if c not in columns]
    if missing:
        raise SwiftError(f"grpo: {name} lacks column(s) {', '.join(missing)}; encode prompt rows with "
                         "swift.data.encode_preference_rows(rows, template, kind='prompt')")
    if "prompt" in columns:
        dataset = dataset.remove_columns("prompt")

    def parse(row: dict[str, Any]) -> dict[str, Any]:
        messages = row["messages"]
        return {"prompt": json.loads(messages) if isinstance(messages, str) else messages}

    return dataset.map(parse, desc=f"grpo prompts ({name})")


@contextlib.contextmanager
def _reference_is(ref_model: nn.Module | None) -> Iterator[None]:
    """While TRL's __init__ runs, make its `create_model_from_path` (used only to load the full-tuning reference)
    return `ref_model`: the in-memory copy or the one given, instead of a reload from disk."""
    if ref_model is None:
        yield
        return
    import trl.trainer.grpo_trainer as grpo_module

    original = grpo_module.create_model_from_path
    grpo_module.create_model_from_path = lambda *args, **kwargs: ref_model
    try:
        yield
    finally:
        grpo_module.create_model_from_path = original


def _is_peft(model: Any) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


class SwiftGRPOTrainer(GRPOTrainer):
    """TRL's GRPO with SwiftLab's prompts, rewards, references and checkpoints (see the module docstring).

    Args:
        model: Causal LM or peft model.
        args: The GRPOConfig.
        reward_funcs: TRL-style reward callables (`as_trl_reward`).
        tokenizer: The tokenizer (saved into checkpoints).
        template: SwiftLab template (its stop tokens end completions).
        train_dataset, eval_dataset: Encoded prompt rows (`prompt_ids`, `messages`, extra columns).
        ref_model: Reference for full tuning (default: a frozen copy of `model`); with LoRA, when given, it
            replaces the adapters-disabled reference.
        checkpoint_files: File name -> JSON-able object written into every checkpoint.
    """

    def __init__(self, *, model: nn.Module, args: GRPOConfig, reward_funcs: list[RewardFunc], tokenizer: Any,
                 template: Any, train_dataset: Any, eval_dataset: Any = None, ref_model: nn.Module | None = None,
                 checkpoint_files: dict[str, Any] | None = None) -> None:
        self.template = template
        self.checkpoint_files: dict[str, Any] = dict(checkpoint_files or {})
        self._prompt_ids: list[list[int]] | None = None
        peft = _is_peft(model)
        full_ref = None
        if not peft and args.beta != 0.0:
            full_ref = ref_model if ref_model is not None else copy.deepcopy(model)
            full_ref.requires_grad_(False)
        with _reference_is(full_ref):
            super().__init__(model=model, reward_funcs=reward_funcs, args=args,
                             train_dataset=to_trl_prompts(train_dataset, "train_dataset"),
                             eval_dataset=to_trl_prompts(eval_dataset, "eval_dataset"), processing_class=tokenizer)
        use_swift_callbacks(self)
        if peft:
            self._use_disabled_adapters(ref_model)
        self._stop_at_end_of_turn()

    def _use_disabled_adapters(self, ref_model: nn.Module | None) -> None:
        reference_from_disabled_adapters(self.accelerator.unwrap_model(self.model))
        if ref_model is not None and self.beta != 0.0:  # an explicit reference wins over disabled adapters
            from trl.trainer.utils import add_fused_lm_head, disable_dropout_in_model

            ref_model.eval().requires_grad_(False)
            if self.args.disable_dropout:
                disable_dropout_in_model(ref_model)
            add_fused_lm_head(ref_model, temperature=self.temperature,
                              cast_lm_head_to_fp32=self.args.cast_lm_head_to_fp32)
            self.ref_model = self.accelerator.prepare_model(ref_model, evaluation_mode=True)

    def _stop_at_end_of_turn(self) -> None:
        """Completions end at the template's stop tokens (end of turn) as well as at the eos TRL found."""
        stops = list(self.eos_token_ids)
        for t in getattr(self.template, "stop_token_ids", None) or []:
            if int(t) not in stops:
                stops.append(int(t))
        self.eos_token_ids = stops
        if getattr(self, "generation_config", None) is not None:
            self.generation_config.eos_token_id = stops
            self.generation_kwargs["eos_token_id"] = stops

    # ---- prompts: our encoding ----------------------------------------------------------------------------
    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        self._prompt_ids = [list(x["prompt_ids"]) for x in inputs] if inputs and "prompt_ids" in inputs[0] else None
        try:
            return super()._generate_and_score_completions(inputs)
        finally:
            self._prompt_ids = None

    def _tokenize_prompts(self, prompts: list) -> tuple[list[list[int]], Any, dict[str, Any]]:
        """The batch's `prompt_ids` (encoded by SwiftLab's template) instead of the tokenizer's chat template."""
        if self._prompt_ids is not None and len(self._prompt_ids) == len(prompts):
            return self._prompt_ids, None, {}
        return super()._tokenize_prompts(prompts)

    # ---- checkpoints --------------------------------------------------------------------------------------
    def _send_telemetry(self) -> None:
        """No usage pings: SwiftLab's only network code is swift.hub."""

    def train(self, resume_from_checkpoint: str | bool | None = None, trial: Any = None,
              ignore_keys_for_eval: list[str] | None = None, **kwargs: Any) -> Any:
        """Train; `resume_from_checkpoint=True` resumes from the newest COMPLETE checkpoint in output_dir."""
        checkpoint = resolve_resume(self, resume_from_checkpoint)
        done = finished_output(self, checkpoint)
        if done is not None:
            return done
        return super().train(resume_from_checkpoint=checkpoint, trial=trial,
                             ignore_keys_for_eval=ignore_keys_for_eval, **kwargs)

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        save_checkpoint_atomically(self, model, trial, self.checkpoint_files, extra=self._save_entropy_state)

    def _save_entropy_state(self, checkpoint_dir: str) -> None:
        """What TRL's own _save_checkpoint adds (adaptive entropy), read back by its _load_optimizer_and_scheduler."""
        if self.use_adaptive_entropy and self.args.should_save:
            atomic_write_json(os.path.join(checkpoint_dir, "entropy_ctrl_state.json"),
                              {"entropy_coef": self.entropy_coef, "last_world_entropy": self._last_world_entropy})


def grpo_config(args: dict[str, Any], *, reward_weights: list[float] | None = None) -> GRPOConfig:
    """GRPOConfig from the flat args (TRL's field names; ms-swift's `loss_type` list of one name accepted)."""
    values = {**GRPO_DEFAULTS, **{k: v for k, v in args.items() if v is not None}}
    if "loss_type" in values:
        values["loss_type"] = single(values["loss_type"], "loss_type", "dapo")
    return trl_config(GRPOConfig, values, reward_weights=reward_weights, remove_unused_columns=False,
                      use_vllm=False)


def build_trainer(*, model: Any, tokenizer: Any, template: Any, train_dataset: Any, eval_dataset: Any = None,
                  args: dict[str, Any], ref_model: Any = None, reward_model: Any = None, teacher_model: Any = None,
                  reward_funcs: list[str | RewardFunc] | None = None,
                  checkpoint_files: dict[str, Any] | None = None) -> SwiftGRPOTrainer:
    """The GRPO trainer for the flat `args` (TrainingArguments + GRPOConfig fields: num_generations,
    max_completion_length, temperature, beta, reward_weights, loss_type, epsilon, num_iterations, ...).

    `reward_funcs` holds names (resolved with `args["external_plugins"]`) or callables; a `reward_model` adds a
    reward (weight 1) scored on the token ids. `teacher_model` is not used.
    """
    funcs = [as_trl_reward(f) for f in load_reward_funcs(reward_funcs or [],
                                                         external_plugins=args.get("external_plugins") or [])]
    weights = args.get("reward_weights")
    if weights is not None and len(weights) != len(funcs):
        raise ArgumentError("reward_weights", f"give one weight per reward function ({len(funcs)}), got {len(weights)}")
    if reward_model is not None:
        check_reward_model(reward_model, model)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        funcs.append(reward_model_func(reward_model, pad))
        weights = None if weights is None else [*weights, 1.0]
    if not funcs:
        raise ArgumentError("reward_funcs", "grpo needs rewards: --reward_funcs (e.g. accuracy format) or "
                                            "--reward_model <folder>")
    config = grpo_config(args, reward_weights=weights)
    if reward_model is not None:
        reward_model.eval().requires_grad_(False).to(config.device)
    return SwiftGRPOTrainer(model=unwrap_model(model), args=config, reward_funcs=funcs, tokenizer=tokenizer, template=template,
                            train_dataset=train_dataset, eval_dataset=eval_dataset, ref_model=ref_model,
                            checkpoint_files=checkpoint_files)


__all__ = ["SwiftGRPOTrainer", "as_trl_reward", "to_trl_prompts", "grpo_config", "build_trainer", "GRPO_DEFAULTS"]

"""DPO (`--rlhf_type dpo`): TRL's DPOTrainer on SwiftLab's encoded preference pairs.

TRL owns the algorithm: its collator puts chosen and rejected in one batch (one policy forward and one
reference forward per step, chosen first), its fused LM head computes the log-probs without the full logits,
and its losses (sigmoid, hinge, ipo, robust, ..., combined with `loss_weights`). Our subclass replaces the
dataset preparation (the rows arrive encoded by `swift.data.encode_preference_rows`; there is no second
tokenization), makes the reference of a LoRA policy its adapters-disabled self, and saves through
`swift.trainers.saving` (atomic checkpoints, our callbacks, `resume_from_checkpoint=True`).

ms-swift flags mapped onto DPOConfig: `beta`, `loss_type` (a list), `loss_weights`, `max_length`, and
- `rpo_alpha`: RPO's NLL term on the chosen replies = TRL's "sft" loss with weight rpo_alpha;
- `label_smoothing` with "sigmoid": conservative DPO, -(1-e) log s(bd) - e log s(-bd). TRL's "sigmoid" has
  no smoothing, so it is rewritten exactly with TRL's own losses: cDPO = 2(1-e) sigmoid - (1-2e) robust.
"""
from __future__ import annotations

from typing import Any

from trl import DPOConfig, DPOTrainer

from swift.trainers.rlhf.trl_glue import (
    PREFERENCE_COLUMNS,
    as_dataset,
    drop_long_prompts,
    reference_from_disabled_adapters,
    require_columns,
    trl_config,
    unwrap_model,
)
from swift.trainers.saving import (
    finished_output,
    resolve_resume,
    save_checkpoint_atomically,
    use_swift_callbacks,
)
from swift.utils.errors import ArgumentError


class SwiftDPOTrainer(DPOTrainer):
    """`trl.DPOTrainer` on pre-encoded pairs (`prompt_ids`, `chosen_ids`, `rejected_ids`), with SwiftLab saving.

    Args:
        template: The chat template the rows were encoded with (kept for reference).
        checkpoint_files: File name -> JSON-able object written into every checkpoint (e.g. args.json).
        *args, **kwargs: `trl.DPOTrainer`'s arguments.
    """

    def __init__(self, *args: Any, template: Any = None, checkpoint_files: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        self.template = template
        self.checkpoint_files: dict[str, Any] = dict(checkpoint_files or {})
        super().__init__(*args, **kwargs)
        if self.ref_model is None:
            reference_from_disabled_adapters(self.model)
        use_swift_callbacks(self)

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: DPOConfig, dataset_name: str) -> Any:
        """The seam: TRL tokenizes prompt/chosen/rejected text here; our rows are already token ids."""
        require_columns(dataset, PREFERENCE_COLUMNS, dataset_name, "preference")
        if args.truncation_mode == "keep_start":  # the collator would cut every completion token
            dataset = drop_long_prompts(dataset, args.max_length, dataset_name)
        return dataset

    def _send_telemetry(self) -> None:
        """No usage pings: SwiftLab's only network code is swift.hub."""

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any) -> Any:
        """Train; `resume_from_checkpoint=True` resumes from the newest COMPLETE checkpoint in output_dir."""
        checkpoint = resolve_resume(self, resume_from_checkpoint)
        return finished_output(self, checkpoint) or super().train(resume_from_checkpoint=checkpoint, **kwargs)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        save_checkpoint_atomically(self, model, trial, self.checkpoint_files)


def dpo_losses(args: dict[str, Any]) -> tuple[list[str], list[float]]:
    """ms-swift's `loss_type` / `loss_weights` / `rpo_alpha` / `label_smoothing` -> TRL's loss_type and
    loss_weights lists (see the module docstring)."""
    loss_type = args.get("loss_type") or ["sigmoid"]
    types = [loss_type] if isinstance(loss_type, str) else list(loss_type)
    weights = args.get("loss_weights")
    weights = [1.0] * len(types) if weights is None else [float(w) for w in weights]
    if len(weights) != len(types):
        raise ArgumentError("loss_weights", f"give one weight per loss_type ({types}), got {weights}")
    combined: dict[str, float] = {}
    for t, w in zip(types, weights, strict=True):
        combined[t] = combined.get(t, 0.0) + w
    smoothing = float(args.get("label_smoothing") or 0.0)
    if smoothing and "sigmoid" in combined:
        if not 0.0 < smoothing < 0.5:
            raise ArgumentError("label_smoothing", f"must be in [0, 0.5), got {smoothing}")
        w = combined.pop("sigmoid")
        combined["sigmoid"] = 2 * (1 - smoothing) * w
        combined["robust"] = combined.get("robust", 0.0) - (1 - 2 * smoothing) * w
    rpo_alpha = args.get("rpo_alpha")
    if rpo_alpha:
        combined["sft"] = combined.get("sft", 0.0) + float(rpo_alpha)
    return list(combined), list(combined.values())


def build_trainer(*, model: Any, tokenizer: Any, template: Any, train_dataset: Any, eval_dataset: Any = None,
                  args: dict[str, Any], ref_model: Any = None, reward_model: Any = None, teacher_model: Any = None,
                  reward_funcs: Any = None, checkpoint_files: dict[str, Any] | None = None) -> SwiftDPOTrainer:
    """A DPO trainer (the contract of `swift.trainers.rlhf`).

    Args:
        model: A causal LM, or a peft model (then `ref_model=None` means: the model with adapters disabled).
        tokenizer: Saved into every checkpoint.
        template: The chat template of the encoded rows.
        train_dataset: `encode_preference_rows(..., kind="preference")` output (or a list of such rows).
        eval_dataset: The same, or None.
        args: TrainingArguments fields + beta, loss_type, loss_weights, rpo_alpha, label_smoothing, max_length.
        ref_model: A frozen reference model (full tuning); None with LoRA.
        reward_model, teacher_model, reward_funcs: Not used by DPO.
        checkpoint_files: File name -> JSON-able object written into every checkpoint.
    """
    loss_type, loss_weights = dpo_losses(args)
    config = trl_config(DPOConfig, args, template=template, loss_type=loss_type, loss_weights=loss_weights,
                        label_smoothing=float(args.get("label_smoothing") or 0.0))
    return SwiftDPOTrainer(model=unwrap_model(model), ref_model=unwrap_model(ref_model), args=config,
                           train_dataset=as_dataset(train_dataset), eval_dataset=as_dataset(eval_dataset),
                           processing_class=tokenizer, template=template, checkpoint_files=checkpoint_files)

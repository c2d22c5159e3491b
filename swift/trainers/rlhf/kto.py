"""KTO (`--rlhf_type kto`): TRL's KTOTrainer on SwiftLab's encoded unpaired rows.

Rows are `prompt_ids`, `completion_ids`, `label` (True: desirable) from
`swift.data.encode_preference_rows(..., kind="kto")`. TRL owns the loss (eq. 7 of the KTO paper) and its KL
reference point, estimated from mismatched (prompt, completion) pairs of the same batch: each row's
`KL_completion_ids` is the completion of its neighbour. Our subclass replaces TRL's dataset preparation (no
second tokenization), shuffles the training rows once with the run's seed before building those mismatched
pairs (TRL samples KTO batches in order, so a file sorted by label would give single-label batches), makes a
LoRA policy's reference its adapters-disabled self, and saves through `swift.trainers.saving`.

ms-swift flags mapped onto KTOConfig: `beta`, `desirable_weight`, `undesirable_weight`, `loss_type` (kto or
apo_zero_unpaired), `max_length`.
"""
from __future__ import annotations

from typing import Any

from trl import KTOConfig, KTOTrainer

from swift.trainers.rlhf.trl_glue import (
    KTO_COLUMNS,
    as_dataset,
    drop_long_prompts,
    reference_from_disabled_adapters,
    require_columns,
    single,
    trl_config,
    unwrap_model,
)
from swift.trainers.saving import (
    finished_output,
    resolve_resume,
    save_checkpoint_atomically,
    use_swift_callbacks,
)
from swift.utils.errors import ArgumentError, DataError
from swift.utils.logging import get_logger

logger = get_logger("swift.trainers.rlhf")


def add_kl_completions(dataset: Any, batch_size: int) -> Any:
    """`KL_completion_ids`: within each block of `batch_size` rows, the completion of the previous row
    (the first row takes the block's last), so every mismatched pair uses a completion of its own batch."""
    def rotate(batch: dict[str, list]) -> dict[str, list]:
        completions = batch["completion_ids"]
        return {"KL_completion_ids": [completions[-1], *completions[:-1]]}

    return dataset.map(rotate, batched=True, batch_size=batch_size)


class SwiftKTOTrainer(KTOTrainer):
    """`trl.KTOTrainer` on pre-encoded rows (`prompt_ids`, `completion_ids`, `label`), with SwiftLab saving.

    Args:
        template: The chat template the rows were encoded with (kept for reference).
        checkpoint_files: File name -> JSON-able object written into every checkpoint (e.g. args.json).
        *args, **kwargs: `trl.KTOTrainer`'s arguments.
    """

    def __init__(self, *args: Any, template: Any = None, checkpoint_files: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        self.template = template
        self.checkpoint_files: dict[str, Any] = dict(checkpoint_files or {})
        super().__init__(*args, **kwargs)
        if self.ref_model is None:
            reference_from_disabled_adapters(self.model)
        use_swift_callbacks(self)

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: KTOConfig, dataset_name: str) -> Any:
        """The seam: TRL tokenizes prompt/completion text here; our rows are already token ids."""
        require_columns(dataset, KTO_COLUMNS, dataset_name, "kto")
        dataset = drop_long_prompts(dataset, args.max_length, dataset_name)
        if dataset_name == "train" and hasattr(dataset, "shuffle") and hasattr(dataset, "__len__"):
            dataset = dataset.shuffle(seed=args.seed).flatten_indices()
            labels = [bool(x) for x in dataset["label"]]
            if all(labels) or not any(labels):
                which = "desirable (true)" if all(labels) else "undesirable (false)"
                logger.warning("every KTO training row is %s; KTO learns from both kinds", which)
        if self.calculate_KL:
            dataset = add_kl_completions(dataset, args.per_device_train_batch_size)
        return dataset

    def _send_telemetry(self) -> None:
        """No usage pings: SwiftLab's only network code is swift.hub."""

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any) -> Any:
        """Train; `resume_from_checkpoint=True` resumes from the newest COMPLETE checkpoint in output_dir."""
        checkpoint = resolve_resume(self, resume_from_checkpoint)
        return finished_output(self, checkpoint) or super().train(resume_from_checkpoint=checkpoint, **kwargs)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        save_checkpoint_atomically(self, model, trial, self.checkpoint_files)


def build_trainer(*, model: Any, tokenizer: Any, template: Any, train_dataset: Any, eval_dataset: Any = None,
                  args: dict[str, Any], ref_model: Any = None, reward_model: Any = None, teacher_model: Any = None,
                  reward_funcs: Any = None, checkpoint_files: dict[str, Any] | None = None) -> SwiftKTOTrainer:
    """A KTO trainer (the contract of `swift.trainers.rlhf`).

    Args:
        model: A causal LM, or a peft model (then `ref_model=None` means: the model with adapters disabled).
        tokenizer: Saved into every checkpoint.
        template: The chat template of the encoded rows.
        train_dataset: `encode_preference_rows(..., kind="kto")` output (or a list of such rows).
        eval_dataset: The same, or None.
        args: TrainingArguments fields + beta, desirable_weight, undesirable_weight, loss_type, max_length.
            The KL estimate needs `per_device_train_batch_size` >= 2.
        ref_model: A frozen reference model (full tuning); None with LoRA.
        reward_model, teacher_model, reward_funcs: Not used by KTO.
        checkpoint_files: File name -> JSON-able object written into every checkpoint.
    """
    loss_type = single(args.get("loss_type"), "loss_type", "kto")
    if loss_type not in ("kto", "apo_zero_unpaired"):
        raise ArgumentError("loss_type", f"kto takes 'kto' or 'apo_zero_unpaired', got {loss_type!r}")
    if loss_type == "kto" and int(args.get("per_device_train_batch_size", 8)) < 2:
        raise ArgumentError("per_device_train_batch_size", "KTO estimates its KL term from the other rows of a "
                            "batch: use at least 2")
    train_dataset = as_dataset(train_dataset)
    if train_dataset is not None and "label" in getattr(train_dataset, "column_names", []):
        bad = [i for i, v in enumerate(train_dataset["label"]) if not isinstance(v, bool) and v not in (0, 1)]
        if bad:
            raise DataError(f"label must be true or false, got {train_dataset['label'][bad[0]]!r}",
                            row=bad[0] + 1, field="label")
    # KTO pairs each row with its neighbour's completion, so batches keep the (once shuffled) dataset order
    config = trl_config(KTOConfig, args, template=template, loss_type=loss_type,
                        train_sampling_strategy="sequential")
    return SwiftKTOTrainer(model=unwrap_model(model), ref_model=unwrap_model(ref_model), args=config,
                           train_dataset=train_dataset, eval_dataset=as_dataset(eval_dataset),
                           processing_class=tokenizer, template=template, checkpoint_files=checkpoint_files)

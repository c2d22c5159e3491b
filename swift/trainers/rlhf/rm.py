"""Reward model (`--rlhf_type rm`): TRL's RewardTrainer on encoded preference pairs.

The model is a sequence classifier with one output (`load_model_and_tokenizer(..., task="seq_cls")`); the loss is
Bradley-Terry, -log sigmoid(r(chosen) - r(rejected)), plus an optional `center_rewards_coefficient` term.
TRL's collator scores chosen and rejected in one batch. Its dataset preparation skips tokenization for rows
that already have `chosen_ids`/`rejected_ids`, but there those are whole sequences; ours are completions after
`prompt_ids`, so our subclass joins them first (the seam), then lets TRL filter by `max_length`. Checkpoints of
a LoRA run hold the adapter and the trained score head (peft's `modules_to_save` for SEQ_CLS).
"""
from __future__ import annotations

from typing import Any

from trl import RewardConfig, RewardTrainer

from swift.trainers.rlhf.trl_glue import (
    PREFERENCE_COLUMNS,
    as_dataset,
    column_names,
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


def join_prompt(example: dict[str, Any]) -> dict[str, list[int]]:
    """prompt_ids + chosen_ids / rejected_ids -> the whole sequences a reward model scores."""
    prompt = list(example["prompt_ids"])
    return {"chosen_ids": prompt + list(example["chosen_ids"]), "rejected_ids": prompt + list(example["rejected_ids"])}


class SwiftRewardTrainer(RewardTrainer):
    """`trl.RewardTrainer` on pre-encoded pairs (`prompt_ids`, `chosen_ids`, `rejected_ids`), with SwiftLab saving.

    Args:
        template: The chat template the rows were encoded with (kept for reference).
        checkpoint_files: File name -> JSON-able object written into every checkpoint (e.g. args.json).
        *args, **kwargs: `trl.RewardTrainer`'s arguments.
    """

    def __init__(self, *args: Any, template: Any = None, checkpoint_files: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        self.template = template
        self.checkpoint_files: dict[str, Any] = dict(checkpoint_files or {})
        super().__init__(*args, **kwargs)
        use_swift_callbacks(self)

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: RewardConfig, dataset_name: str) -> Any:
        """The seam: whole sequences from our prompt + completion columns, then TRL's max_length filter."""
        columns = column_names(dataset)
        if "prompt_ids" in columns:
            require_columns(dataset, PREFERENCE_COLUMNS, dataset_name, "preference")
            dataset = dataset.map(join_prompt, remove_columns=["prompt_ids"])
        else:  # whole sequences already (TRL's own layout)
            require_columns(dataset, PREFERENCE_COLUMNS[1:], dataset_name, "preference")
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

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
                  reward_funcs: Any = None, checkpoint_files: dict[str, Any] | None = None) -> SwiftRewardTrainer:
    """A reward-model trainer (the contract of `swift.trainers.rlhf`).

    Args:
        model: A sequence classifier with `num_labels=1` (load with task="seq_cls"), or a peft model of one.
        tokenizer: Saved into every checkpoint.
        template: The chat template of the encoded rows.
        train_dataset: `encode_preference_rows(..., kind="preference")` output (or a list of such rows).
        eval_dataset: The same, or None.
        args: TrainingArguments fields + center_rewards_coefficient, max_length (`beta` etc. are ignored).
        ref_model, reward_model, teacher_model, reward_funcs: Not used.
        checkpoint_files: File name -> JSON-able object written into every checkpoint.
    """
    model = unwrap_model(model)
    if getattr(model.config, "num_labels", None) != 1 or "ForSequenceClassification" not in _class_name(model):
        raise ArgumentError("model", f"a reward model is a sequence classifier with one output, got "
                            f"{_class_name(model)} (num_labels={getattr(model.config, 'num_labels', None)}); load it "
                            "with load_model_and_tokenizer(..., task='seq_cls')")
    config = trl_config(RewardConfig, args, template=template)
    return SwiftRewardTrainer(model=model, args=config, train_dataset=as_dataset(train_dataset),
                              eval_dataset=as_dataset(eval_dataset), processing_class=tokenizer, template=template,
                              checkpoint_files=checkpoint_files)


def _class_name(model: Any) -> str:
    base = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    return type(base).__name__

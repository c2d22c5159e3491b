"""ORPO (`--rlhf_type orpo`): TRL's experimental ORPOTrainer on encoded pairs.

Reference-free: the NLL of the chosen sequence minus `beta` times the mean log-sigmoid of the log odds ratio
between the chosen and the rejected reply (per-token average log-probs). TRL's `concatenated_forward` runs chosen
and rejected as one batch. As for CPO, our subclass converts the rows of `swift.data.encode_preference_rows`
into TRL's paired columns and turns `tokenize_row` (the tokenization seam) into a no-op, and saves through
`swift.trainers.saving`. ms-swift flags mapped onto ORPOConfig: `beta`, `max_length`.
"""
from __future__ import annotations

from typing import Any

from trl.experimental.orpo import ORPOConfig, ORPOTrainer

from swift.trainers.rlhf.trl_glue import as_dataset, paired_datasets, trl_config, unwrap_model
from swift.trainers.saving import (
    finished_output,
    resolve_resume,
    save_checkpoint_atomically,
    use_swift_callbacks,
)
from swift.utils.errors import ArgumentError


class SwiftORPOTrainer(ORPOTrainer):
    """`trl.experimental.orpo.ORPOTrainer` on pre-encoded pairs (`prompt_ids`, `chosen_ids`, `rejected_ids`).

    Args:
        args: An `ORPOConfig`.
        train_dataset, eval_dataset: Encoded pairs (a dataset, a dict of them for eval, or None).
        template: The chat template the rows were encoded with (kept for reference).
        checkpoint_files: File name -> JSON-able object written into every checkpoint (e.g. args.json).
        **kwargs: `ORPOTrainer`'s other arguments (model, processing_class, ...).
    """

    def __init__(self, *, args: ORPOConfig, train_dataset: Any, eval_dataset: Any = None, template: Any = None,
                 checkpoint_files: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.template = template
        self.checkpoint_files: dict[str, Any] = dict(checkpoint_files or {})
        train_dataset, eval_dataset = paired_datasets(train_dataset, eval_dataset, args.max_length)
        super().__init__(args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, **kwargs)
        use_swift_callbacks(self)

    def tokenize_row(self, feature: dict[str, Any], model: Any = None) -> dict:
        """The seam: TRL tokenizes prompt/chosen/rejected text here; our rows are token ids already."""
        return {}

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
                  reward_funcs: Any = None, checkpoint_files: dict[str, Any] | None = None) -> SwiftORPOTrainer:
    """An ORPO trainer (the contract of `swift.trainers.rlhf`).

    Args:
        model: A causal LM or a peft model (no reference model: `ref_model` must be None).
        tokenizer: Saved into every checkpoint.
        template: The chat template of the encoded rows.
        train_dataset: `encode_preference_rows(..., kind="preference")` output (or a list of such rows).
        eval_dataset: The same, or None.
        args: TrainingArguments fields + beta (the odds-ratio weight), max_length.
        ref_model, reward_model, teacher_model, reward_funcs: Not used by ORPO.
        checkpoint_files: File name -> JSON-able object written into every checkpoint.
    """
    if ref_model is not None:
        raise ArgumentError("ref_model", "ORPO uses no reference model; drop --ref_model")
    config = trl_config(ORPOConfig, args, template=template)
    return SwiftORPOTrainer(model=unwrap_model(model), args=config, train_dataset=as_dataset(train_dataset),
                            eval_dataset=as_dataset(eval_dataset), processing_class=tokenizer, template=template,
                            checkpoint_files=checkpoint_files)

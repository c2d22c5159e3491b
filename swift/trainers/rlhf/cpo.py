"""CPO and SimPO (`--rlhf_type cpo`, `--rlhf_type simpo`): TRL's experimental CPOTrainer on encoded pairs.

Both are reference-free. CPO: DPO's sigmoid / hinge / ipo loss on the policy's summed log-probs plus
`cpo_alpha` times the NLL of the chosen replies. SimPO: CPO with loss_type "simpo", the log-probs averaged over
each reply's tokens and a target margin `simpo_gamma`. TRL's `concatenated_forward` runs chosen and rejected as
one batch. Our subclass converts the rows of `swift.data.encode_preference_rows` into TRL's paired columns
before TRL sees them and turns its `tokenize_row` (the tokenization seam) into a no-op, and saves through
`swift.trainers.saving`.

ms-swift flags mapped onto CPOConfig: `beta`, `loss_type`, `label_smoothing`, `cpo_alpha`, `simpo_gamma`,
`max_length`.
"""
from __future__ import annotations

from typing import Any

from trl.experimental.cpo import CPOConfig, CPOTrainer

from swift.trainers.rlhf.trl_glue import as_dataset, paired_datasets, single, trl_config, unwrap_model
from swift.trainers.saving import (
    finished_output,
    resolve_resume,
    save_checkpoint_atomically,
    use_swift_callbacks,
)
from swift.utils.errors import ArgumentError

CPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "simpo")


class SwiftCPOTrainer(CPOTrainer):
    """`trl.experimental.cpo.CPOTrainer` on pre-encoded pairs (`prompt_ids`, `chosen_ids`, `rejected_ids`).

    Args:
        args: A `CPOConfig`.
        train_dataset, eval_dataset: Encoded pairs (a dataset, a dict of them for eval, or None).
        template: The chat template the rows were encoded with (kept for reference).
        checkpoint_files: File name -> JSON-able object written into every checkpoint (e.g. args.json).
        **kwargs: `CPOTrainer`'s other arguments (model, processing_class, ...).
    """

    def __init__(self, *, args: CPOConfig, train_dataset: Any, eval_dataset: Any = None, template: Any = None,
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
                  reward_funcs: Any = None, checkpoint_files: dict[str, Any] | None = None) -> SwiftCPOTrainer:
    """A CPO trainer (the contract of `swift.trainers.rlhf`); `loss_type="simpo"` gives SimPO.

    Args:
        model: A causal LM or a peft model (no reference model: `ref_model` must be None).
        tokenizer: Saved into every checkpoint.
        template: The chat template of the encoded rows.
        train_dataset: `encode_preference_rows(..., kind="preference")` output (or a list of such rows).
        eval_dataset: The same, or None.
        args: TrainingArguments fields + beta, loss_type (sigmoid, hinge, ipo, simpo), label_smoothing,
            cpo_alpha, simpo_gamma, max_length.
        ref_model, reward_model, teacher_model, reward_funcs: Not used by CPO.
        checkpoint_files: File name -> JSON-able object written into every checkpoint.
    """
    loss_type = single(args.get("loss_type"), "loss_type", "sigmoid")
    if loss_type not in CPO_LOSS_TYPES:
        raise ArgumentError("loss_type", f"cpo takes one of {', '.join(CPO_LOSS_TYPES)}, got {loss_type!r}")
    if ref_model is not None:
        raise ArgumentError("ref_model", "CPO and SimPO use no reference model; drop --ref_model")
    config = trl_config(CPOConfig, args, template=template, loss_type=loss_type)
    return SwiftCPOTrainer(model=unwrap_model(model), args=config, train_dataset=as_dataset(train_dataset),
                           eval_dataset=as_dataset(eval_dataset), processing_class=tokenizer, template=template,
                           checkpoint_files=checkpoint_files)


def build_simpo_trainer(*, args: dict[str, Any], **kwargs: Any) -> SwiftCPOTrainer:
    """SimPO (`--rlhf_type simpo`): `build_trainer` with loss_type "simpo"."""
    loss_type = single(args.get("loss_type"), "loss_type", "simpo")
    if loss_type != "simpo":
        raise ArgumentError("loss_type", f"rlhf_type simpo is CPO with loss_type simpo, got {loss_type!r}")
    return build_trainer(args={**args, "loss_type": "simpo"}, **kwargs)

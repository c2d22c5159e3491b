"""GKD (generalised knowledge distillation): TRL's experimental `GKDTrainer` on SwiftLab's SFT rows.

The seam: TRL's default collator (`DataCollatorForChatML`) renders `messages` with the tokenizer's chat template,
a second tokenization next to ours. `GKDCollator` instead takes the rows `swift.data.encode_rows` already made
(`input_ids`, `labels`: the template's encoding, with its --system / --template / truncation) and derives what
GKD needs from them: the prompt of the on-policy generations is everything before the LAST labelled reply (for a
single-turn row, exactly `template.encode_prompt(history)`), and the teacher-forced loss covers every labelled
token (all assistant replies, as SFT trains them).

Per step, with probability `lmbda` the student generates its own completions (on-policy), else with `seq_kd` the
teacher does, else the dataset's replies are used; the loss is the generalised JSD between the student's and
the teacher's next-token distributions (`beta` 0: forward KL, 1: reverse KL).
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from swift.trainers.rlhf.ppo_core import pad_sequences
from swift.trainers.rlhf.trl_glue import trl_config, unwrap_model
from swift.trainers.saving import (
    finished_output,
    resolve_resume,
    save_checkpoint_atomically,
    use_swift_callbacks,
)
from swift.utils.errors import ArgumentError, SwiftError

with warnings.catch_warnings():  # TRL warns on every import of trl.experimental
    warnings.simplefilter("ignore")
    from trl.experimental.gkd import GKDConfig, GKDTrainer

IGNORE_INDEX = -100

# SwiftLab's flag names -> GKDConfig's.
_RENAMES = {"max_completion_length": "max_new_tokens"}


def last_reply_start(labels: Sequence[int]) -> int:
    """Index of the first token of the last run of labelled tokens (the last assistant reply); -1 if none."""
    i = len(labels) - 1
    while i >= 0 and labels[i] == IGNORE_INDEX:
        i -= 1
    if i < 0:
        return -1
    while i > 0 and labels[i - 1] != IGNORE_INDEX:
        i -= 1
    return i


class GKDCollator:
    """Encoded SFT rows -> GKD's batch: `input_ids`, `attention_mask`, `labels` (right padded) and `prompts`,
    `prompt_attention_mask` (left padded: the tokens before each row's last reply, for generation).

    Args:
        pad_token_id: Padding id.
    """

    def __init__(self, pad_token_id: int):
        self.pad_token_id = int(pad_token_id)

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = [list(f["input_ids"]) for f in features]
        labels = [list(f["labels"]) for f in features]
        prompts = []
        for row, (x, y) in enumerate(zip(ids, labels)):
            start = last_reply_start(y)
            if start <= 0:
                what = "no labelled reply" if start < 0 else "no prompt before its labelled reply"
                raise SwiftError(f"gkd: a training row has {what} (batch row {row + 1}); GKD generates replies "
                                 "to prompts, so every row needs a user turn followed by an assistant reply")
            prompts.append(x[:start])
        input_ids, attention_mask = pad_sequences(ids, self.pad_token_id, "right")
        label_ids, _ = pad_sequences(labels, IGNORE_INDEX, "right")
        prompt_ids, prompt_mask = pad_sequences(prompts, self.pad_token_id, "left")
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": label_ids,
                "prompts": prompt_ids, "prompt_attention_mask": prompt_mask}


class SwiftGKDTrainer(GKDTrainer):
    """TRL's GKD on encoded SFT rows, with atomic checkpoints, our callbacks and resume.

    Args:
        model: Student (causal LM or peft model).
        teacher_model: Teacher, same vocabulary.
        args: The GKDConfig.
        tokenizer: The tokenizer (saved into checkpoints).
        template: SwiftLab template (its stop tokens end generated replies).
        train_dataset, eval_dataset: Encoded SFT rows (`input_ids`, `labels`).
        checkpoint_files: File name -> JSON-able object written into every checkpoint.
    """

    def __init__(self, *, model: nn.Module, teacher_model: nn.Module, args: GKDConfig, tokenizer: Any, template: Any,
                 train_dataset: Any, eval_dataset: Any = None,
                 checkpoint_files: dict[str, Any] | None = None) -> None:
        self.template = template
        self.checkpoint_files: dict[str, Any] = dict(checkpoint_files or {})
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        teacher_model.eval().requires_grad_(False)
        super().__init__(model=model, teacher_model=teacher_model, args=args, data_collator=GKDCollator(pad),
                         train_dataset=train_dataset, eval_dataset=eval_dataset, processing_class=tokenizer)
        use_swift_callbacks(self)
        stops = self.generation_config.eos_token_id
        stops = [] if stops is None else [stops] if isinstance(stops, int) else list(stops)
        for t in [*(getattr(template, "stop_token_ids", None) or []), tokenizer.eos_token_id]:
            if t is not None and int(t) not in stops:
                stops.append(int(t))
        self.generation_config.eos_token_id = stops
        self.generation_kwargs["eos_token_id"] = stops

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
        save_checkpoint_atomically(self, model, trial, self.checkpoint_files)


def gkd_config(args: dict[str, Any], template: Any = None) -> GKDConfig:
    """GKDConfig from the flat args (`max_completion_length` -> max_new_tokens; beta/lmbda/temperature/seq_kd)."""
    values = {"disable_dropout": True, **{k: v for k, v in args.items() if v is not None}}
    for ours, theirs in _RENAMES.items():
        if values.get(ours) is not None and theirs not in values:
            values[theirs] = values[ours]
    for name in ("beta", "lmbda"):
        if values.get(name) is not None and not 0.0 <= float(values[name]) <= 1.0:
            raise ArgumentError(name, f"gkd: must be in [0, 1], got {values[name]}")
    return trl_config(GKDConfig, values, template=template, remove_unused_columns=False,
                      dataset_kwargs={"skip_prepare_dataset": True}, packing=False, padding_free=False)


def build_trainer(*, model: Any, tokenizer: Any, template: Any, train_dataset: Any, eval_dataset: Any = None,
                  args: dict[str, Any], ref_model: Any = None, reward_model: Any = None, teacher_model: Any = None,
                  reward_funcs: Any = None, checkpoint_files: dict[str, Any] | None = None) -> SwiftGKDTrainer:
    """The GKD trainer for the flat `args` (TrainingArguments + lmbda, beta, seq_kd, temperature,
    max_completion_length). `train_dataset` holds SFT rows (`input_ids`, `labels`); `teacher_model` is required
    and shares the student's vocabulary. `ref_model`, `reward_model` and `reward_funcs` are not used."""
    if teacher_model is None:
        raise ArgumentError("teacher_model", "gkd distils from a teacher: give --teacher_model <folder or id>")
    model = unwrap_model(model)
    for name, ds in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
        columns = getattr(ds, "column_names", None)
        if ds is not None and not isinstance(ds, dict) and not {"input_ids", "labels"} <= set(columns or []):
            raise SwiftError(f"gkd: {name} needs encoded SFT rows (columns input_ids, labels; "
                             "swift.data.encode_rows(rows, template))")

    def vocab(m: Any) -> int:
        return m.config.get_text_config().vocab_size

    if vocab(model) != vocab(teacher_model):
        raise ArgumentError("teacher_model", f"the teacher's vocabulary ({vocab(teacher_model)} tokens) differs from "
                                             f"the student's ({vocab(model)}); GKD compares next-token distributions "
                                             "token by token, so use a teacher of the same family")
    return SwiftGKDTrainer(model=model, teacher_model=teacher_model, args=gkd_config(args, template), tokenizer=tokenizer,
                           template=template, train_dataset=train_dataset, eval_dataset=eval_dataset,
                           checkpoint_files=checkpoint_files)


__all__ = ["GKDCollator", "SwiftGKDTrainer", "last_reply_start", "gkd_config", "build_trainer"]

"""The SFT trainer: `transformers.Trainer` plus token accuracy, throughput and atomic checkpoints."""

from __future__ import annotations

import os
import time
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainingArguments

from swift.launch.fsdp import add_fsdp_callbacks, prepare_fsdp
from swift.trainers.checkpoint import CONVERTED_ADAPTER_DIR
from swift.trainers.saving import (
    finished_output,
    resolve_resume,
    save_checkpoint_atomically,
    use_swift_callbacks,
)
from swift.utils.errors import SwiftError
from swift.utils.logging import get_logger

logger = get_logger("swift.trainers.sft")

IGNORE_INDEX = -100
_TRAIN, _EVAL = "train", "eval"


def token_accuracy_counts(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor]:
    """Count next-token predictions that hit their label.

    Position t of `logits` predicts label t+1 (labels are aligned with input_ids, as HF causal LMs take them).

    Args:
        logits: [batch, seq, vocab] model outputs.
        labels: [batch, seq] targets, `ignore_index` where no loss is taken.
        ignore_index: Label value that is not counted.

    Returns:
        (correct, total) as 0-dim int64 tensors on the logits' device (no host sync).
    """
    with torch.no_grad():
        preds = logits[..., :-1, :].argmax(dim=-1)
        target = labels[..., 1:].to(preds.device)
        mask = target != ignore_index
        correct = ((preds == target) & mask).sum()
        return correct, mask.sum()


def _is_raw_chat(dataset: Any) -> bool:
    """True for un-encoded chat rows: a list of dicts with "messages", or a datasets.Dataset with that column."""
    if dataset is None:
        return False
    columns = getattr(dataset, "column_names", None)
    if isinstance(columns, list):
        return "messages" in columns and "input_ids" not in columns
    if isinstance(dataset, (list, tuple)) and dataset:
        first = dataset[0]
        return isinstance(first, dict) and "messages" in first and "input_ids" not in first
    return False


def _has_token_rows(dataset: Any) -> bool:
    columns = getattr(dataset, "column_names", None)
    if isinstance(columns, list):
        return "input_ids" in columns
    if isinstance(dataset, (list, tuple)) and dataset:
        return isinstance(dataset[0], dict) and "input_ids" in dataset[0]
    return False


def _pad_token_id(tokenizer: Any) -> int:
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is None:
        pad = getattr(tokenizer, "eos_token_id", None)
    if pad is None:
        raise SwiftError(
            "The tokenizer has neither a pad token nor an eos token; set tokenizer.pad_token first."
        )
    return int(pad)


class SwiftTrainer(Trainer):
    """Supervised fine-tuning over `transformers.Trainer`.

    Adds token accuracy (`token_acc`, `eval_token_acc`) and throughput (`tokens_per_second`, real
    non-pad tokens) to the logs, atomic checkpoints (a `checkpoint-N` folder is complete or absent) and
    `resume_from_checkpoint=True` that only picks complete checkpoints.

    Args:
        model: A `PreTrainedModel`, a peft model, or a `swift.tuners.SwiftModel` (unwrapped via `unwrap()`).
        args: Training arguments.
        train_dataset: Encoded rows (input_ids/labels), or un-encoded chat rows ("messages"), which are
            encoded with `template`.
        eval_dataset: As `train_dataset` (or a dict of them).
        data_collator: Defaults to `swift.data.DataCollator(pad_token_id)` for token rows.
        processing_class: The tokenizer or processor (saved into every checkpoint); defaults to the
            SwiftModel's or the template's tokenizer.
        template: The chat template for un-encoded rows; defaults to `swift.templates.get_template(tokenizer)`.
        checkpoint_files: File name -> JSON-able object, written into every checkpoint (e.g. `args.json`).
        **kwargs: Passed to `transformers.Trainer` (callbacks, compute_loss_func, optimizers, ...).
    """

    def __init__(
        self,
        model: nn.Module,
        args: TrainingArguments,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        data_collator: Any = None,
        processing_class: Any = None,
        template: Any = None,
        checkpoint_files: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.swift_model = model if callable(getattr(model, "unwrap", None)) else None
        if self.swift_model is not None:
            model = self.swift_model.unwrap()
            if processing_class is None:
                processing_class = getattr(self.swift_model, "tokenizer", None)
        if processing_class is None and template is not None:
            # so that every checkpoint carries the tokenizer (`swift infer --adapters <ckpt>`)
            processing_class = getattr(template, "processor", None) or getattr(template, "tokenizer", None)
        self.template = template
        self.checkpoint_files: dict[str, Any] = dict(checkpoint_files or {})
        train_dataset, eval_dataset, data_collator = self._prepare_data(
            train_dataset, eval_dataset, data_collator, processing_class
        )
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            **kwargs,
        )
        use_swift_callbacks(self)
        add_fsdp_callbacks(self)  # FSDP2: measured sharding log (swift/launch/fsdp.py)
        self._counts: dict[str, torch.Tensor | None] = {_TRAIN: None, _EVAL: None}
        self._interval_start: float | None = None
        self._paused = 0.0
        self._ckpt_token: str | None = None

    # ---- FSDP2 (swift/launch/fsdp.py) -------------------------------------------------------------
    def create_accelerator_and_postprocess(self) -> None:
        """HF's accelerator, then FSDP2 checked, and made real on CPU (accelerate alone would run DDP there)."""
        super().create_accelerator_and_postprocess()
        prepare_fsdp(self)

    # ---- data -------------------------------------------------------------------------------------
    def _prepare_data(
        self, train_dataset: Any, eval_dataset: Any, data_collator: Any, processing_class: Any
    ) -> tuple[Any, Any, Any]:
        tokenizer = getattr(processing_class, "tokenizer", processing_class)
        if tokenizer is None and self.template is not None:
            tokenizer = getattr(self.template, "tokenizer", None)
        evals = eval_dataset if isinstance(eval_dataset, dict) else {None: eval_dataset}
        if _is_raw_chat(train_dataset) or any(_is_raw_chat(d) for d in evals.values()):
            from swift.data import encode_rows

            if self.template is None:
                if tokenizer is None:
                    raise SwiftError(
                        "Un-encoded chat rows need a tokenizer: pass processing_class= or template=."
                    )
                from swift.templates import get_template

                self.template = get_template(tokenizer)

            def encode(ds: Any, desc: str) -> Any:
                return encode_rows(list(ds), self.template, desc=desc) if _is_raw_chat(ds) else ds

            train_dataset = encode(train_dataset, "train")
            evals = {k: encode(v, "val" if k is None else f"val:{k}") for k, v in evals.items()}
            eval_dataset = evals if isinstance(eval_dataset, dict) else evals[None]
        token_rows = _has_token_rows(train_dataset) or any(_has_token_rows(d) for d in evals.values())
        if data_collator is None and token_rows and tokenizer is not None:
            from swift.data import DataCollator

            data_collator = DataCollator(_pad_token_id(tokenizer))
        return train_dataset, eval_dataset, data_collator

    # ---- metrics ----------------------------------------------------------------------------------
    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        """HF's loss, plus token-accuracy and token counts taken from the same forward pass."""
        labels = inputs.get("labels")  # HF pops labels for label smoothing; keep a handle first
        mode = _TRAIN if model.training else _EVAL
        if mode == _TRAIN and self._interval_start is None:
            self._interval_start = time.time()
        loss, outputs = super().compute_loss(
            model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
        )
        logits = outputs.get("logits") if isinstance(outputs, dict) else None
        if labels is not None and logits is not None and logits.shape[:-1] == labels.shape:
            correct, total = token_accuracy_counts(logits, labels)
        else:
            correct = total = torch.zeros((), dtype=torch.int64, device=loss.device)
        if mode == _TRAIN:
            mask = inputs.get("attention_mask")
            ids = inputs.get("input_ids")
            if mask is not None and mask.dim() == 2:
                n_tokens = mask.sum()
            else:
                n_tokens = torch.tensor(ids.numel() if ids is not None else 0, device=loss.device)
        else:
            n_tokens = torch.zeros((), dtype=torch.int64, device=loss.device)
        self._accumulate(mode, correct, total, n_tokens)
        return (loss, outputs) if return_outputs else loss

    def _accumulate(self, mode: str, *values: torch.Tensor) -> None:
        device = values[0].device
        step = torch.stack([v.to(device=device, dtype=torch.int64) for v in values])
        if self._counts[mode] is None:
            self._counts[mode] = step
        else:
            self._counts[mode] += step.to(self._counts[mode].device)

    def _drain(self, mode: str) -> tuple[int, int, int]:
        """Sum the counters over processes (the only sync, once per log) and reset them."""
        counts = self._counts[mode]
        if counts is None:
            counts = torch.zeros(3, dtype=torch.int64, device=self.args.device)
        self._counts[mode] = None
        if self.accelerator.num_processes > 1:
            counts = self.accelerator.reduce(counts.to(self.args.device), reduction="sum")
        correct, total, tokens = (int(x) for x in counts.tolist())
        return correct, total, tokens

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add `token_acc` and `tokens_per_second` to each training log."""
        if "loss" in logs and not any(k.startswith("eval_") for k in logs):
            correct, total, tokens = self._drain(_TRAIN)
            if total > 0:
                logs["token_acc"] = correct / total
            now = time.time()
            if self._interval_start is not None:
                seconds = max(now - self._interval_start - self._paused, 1e-9)
                logs["tokens_per_second"] = tokens / seconds
            self._interval_start, self._paused = now, 0.0
        super().log(logs, start_time)

    def evaluation_loop(
        self,
        dataloader: Any,
        description: str,
        prediction_loss_only: bool | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> Any:
        """HF's loop, plus `<prefix>_token_acc`; time spent here does not count against train throughput."""
        t0 = time.time()
        self._counts[_EVAL] = None
        output = super().evaluation_loop(
            dataloader,
            description,
            prediction_loss_only=prediction_loss_only,
            ignore_keys=ignore_keys,
            metric_key_prefix=metric_key_prefix,
        )
        correct, total, _ = self._drain(_EVAL)
        if total > 0 and output.metrics is not None:
            output.metrics[f"{metric_key_prefix}_token_acc"] = correct / total
        self._paused += time.time() - t0
        return output

    # ---- checkpoints ------------------------------------------------------------------------------
    def train(
        self,
        resume_from_checkpoint: str | bool | None = None,
        trial: Any = None,
        ignore_keys_for_eval: list[str] | None = None,
    ) -> Any:
        """Train; `resume_from_checkpoint=True` resumes from the newest COMPLETE checkpoint in output_dir."""
        resume_from_checkpoint = resolve_resume(self, resume_from_checkpoint)
        done = finished_output(self, resume_from_checkpoint)
        if done is not None:
            return done
        self._counts = {_TRAIN: None, _EVAL: None}
        self._interval_start, self._paused = None, 0.0
        return super().train(
            resume_from_checkpoint=resume_from_checkpoint or None,
            trial=trial,
            ignore_keys_for_eval=ignore_keys_for_eval,
        )

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        """Save like HF does, but into a temporary folder that is renamed to `checkpoint-N` once complete."""
        t0 = time.time()
        save_checkpoint_atomically(self, model, trial, self.checkpoint_files, extra=self._save_converted_adapter)
        self._paused += time.time() - t0

    def _save_converted_adapter(self, checkpoint_dir: str) -> None:
        """PiSSA/OLoRA: the checkpoint's adapter applies to the modified base (what resuming needs); also write
        `converted/`, the same adapter for the ORIGINAL base, which inference, merging and vLLM use."""
        initial = getattr(self.swift_model, "_initial_adapter", None)
        if not initial or not self.args.should_save:
            return
        from swift.tuners.model import save_converted_adapter

        save_converted_adapter(self.accelerator.unwrap_model(self.model), initial,
                               os.path.join(checkpoint_dir, CONVERTED_ADAPTER_DIR))

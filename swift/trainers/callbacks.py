"""Trainer callbacks: a progress bar with the numbers that matter, and a JSONL log with a loss-curve plot."""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from swift.trainers.plot import plot_loss_curves
from swift.utils.io import atomic_write_text
from swift.utils.logging import get_logger

logger = get_logger("swift.trainers.callbacks")

LOGGING_JSONL = "logging.jsonl"
LOSS_CURVE_PNG = "loss_curve.png"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3e}"
        return f"{value:.4f}"
    return str(value)


def _fmt_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


class SwiftProgressCallback(TrainerCallback):
    """Replaces HF's ProgressCallback and PrinterCallback.

    Shows one tqdm bar (step/total, ETA) with loss, token_acc and tokens/s as its postfix, and prints each
    evaluation as one line. With `disable_tqdm=True` it prints one line per log instead of a bar.
    Only the main process prints.
    """

    def __init__(self) -> None:
        self.bar = None
        self.eval_bar = None
        self._t0 = 0.0
        self._step0 = 0

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._t0, self._step0 = time.time(), state.global_step
        if state.is_world_process_zero and not args.disable_tqdm:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=state.max_steps, initial=state.global_step, desc="train", dynamic_ncols=True
            )

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_prediction_step(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        eval_dataloader: Any = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero or args.disable_tqdm:
            return
        try:
            total = len(eval_dataloader)
        except TypeError:
            return
        if self.eval_bar is None:
            from tqdm.auto import tqdm

            self.eval_bar = tqdm(total=total, desc="eval", leave=self.bar is None, dynamic_ncols=True)
        self.eval_bar.update(1)

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if self.eval_bar is not None:
            self.eval_bar.close()
            self.eval_bar = None
        if state.is_world_process_zero and metrics:
            shown = {k: v for k, v in metrics.items() if not k.endswith(("_runtime", "_per_second"))}
            self._write(
                f"[eval] step {state.global_step}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in shown.items())
            )

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        if "loss" in logs:
            post = {"loss": _fmt(logs["loss"])}
            if "token_acc" in logs:
                post["acc"] = _fmt(logs["token_acc"])
            if "tokens_per_second" in logs:
                post["tok/s"] = f"{logs['tokens_per_second']:.0f}"
            if self.bar is not None:
                self.bar.set_postfix(post, refresh=False)
            else:
                self._write(self._line(state, post))
        elif "train_runtime" in logs:  # the last log of train(): close the bar so the summary follows it
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            self._write("[train] done: " + ", ".join(f"{k}={_fmt(v)}" for k, v in logs.items()))

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _line(self, state: TrainerState, post: dict[str, str]) -> str:
        done = state.global_step - self._step0
        elapsed = time.time() - self._t0
        left = (state.max_steps - state.global_step) * elapsed / done if done > 0 else math.nan
        eta = _fmt_duration(left) if math.isfinite(left) else "?"
        fields = " ".join(f"{k}={v}" for k, v in post.items())
        return f"[train] step {state.global_step}/{state.max_steps} {fields} eta={eta}"

    def _write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)


class JsonlLoggerCallback(TrainerCallback):
    """Appends every log dict (+ step, epoch, elapsed seconds) as one JSON line to `<output_dir>/logging.jsonl`.

    On a resumed run, records past the resumed step (written by the interrupted run after its last
    checkpoint) are dropped first, and `elapsed` continues from the kept records. At train end the loss
    curves are drawn into `<output_dir>/loss_curve.png`. Main process only.

    Args:
        output_dir: Where to write; defaults to `args.output_dir`.
        plot: Whether to draw `loss_curve.png` at train end.
    """

    def __init__(self, output_dir: str | None = None, plot: bool = True) -> None:
        self.output_dir = output_dir
        self.plot = plot
        self._t0: float | None = None
        self._elapsed_offset = 0.0

    def path(self, args: TrainingArguments) -> str:
        return os.path.join(self.output_dir or args.output_dir, LOGGING_JSONL)

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero:
            return
        self._t0 = time.time()
        self._elapsed_offset = self._truncate_after(self.path(args), state.global_step)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        if self._t0 is None:
            self._t0 = time.time()
        record = dict(logs)
        record.update(
            step=state.global_step,
            epoch=state.epoch,
            elapsed=round(self._elapsed_offset + time.time() - self._t0, 3),
        )
        path = self.path(args)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False, default=_json_default) + "\n")

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero or not self.plot:
            return
        out = os.path.join(self.output_dir or args.output_dir, LOSS_CURVE_PNG)
        try:
            png = plot_loss_curves(self.path(args), out)
        except Exception as e:  # a plot must never fail a finished training
            logger.warning("Could not draw the loss curve: %s", e)
            return
        if png:
            logger.info("Loss curve: %s", png)

    @staticmethod
    def _truncate_after(path: str, step: int) -> float:
        """Drop records with a step past `step`; returns the last kept `elapsed`."""
        if not os.path.isfile(path):
            return 0.0
        kept, elapsed = [], 0.0
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut short by a kill
            if isinstance(rec, dict) and int(rec.get("step", 0)) <= step:
                kept.append(line)
                elapsed = float(rec.get("elapsed", elapsed))
        if len(kept) != len(lines):
            atomic_write_text(path, "".join(f"{line}\n" for line in kept))
        return elapsed

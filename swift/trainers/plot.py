"""Loss curves from `logging.jsonl` as a PNG (matplotlib's Agg canvas, no pyplot global state)."""

from __future__ import annotations

import json
import os

from swift.utils.logging import get_logger

logger = get_logger("swift.trainers.plot")


def read_loss_series(logging_jsonl: str) -> dict[str, list[tuple[int, float]]]:
    """Read (step, value) pairs of `loss` and `eval_loss` from a logging.jsonl file.

    Lines that do not parse are skipped (a line cut by a crash must not break the plot). When a step
    appears twice (a run resumed from an earlier checkpoint), the later record wins.
    """
    series: dict[str, dict[int, float]] = {"loss": {}, "eval_loss": {}}
    with open(logging_jsonl, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if not isinstance(rec, dict) or "step" not in rec:
                continue
            for key, values in series.items():
                value = rec.get(key)
                if isinstance(value, (int, float)):
                    values[int(rec["step"])] = float(value)
    return {key: sorted(values.items()) for key, values in series.items()}


def _smooth(values: list[float], weight: float) -> list[float]:
    """Exponential moving average, as TensorBoard draws it."""
    out, last = [], values[0]
    for v in values:
        last = last * weight + (1 - weight) * v
        out.append(last)
    return out


def plot_loss_curves(logging_jsonl: str, out_png: str) -> str | None:
    """Draw train loss and eval loss against the step.

    Args:
        logging_jsonl: The `logging.jsonl` written by `JsonlLoggerCallback`.
        out_png: Where to write the PNG (written through a temporary file and a rename).

    Returns:
        `out_png`, or None when the file holds no loss values.
    """
    if not os.path.isfile(logging_jsonl):
        return None
    series = read_loss_series(logging_jsonl)
    train, evals = series["loss"], series["eval_loss"]
    if not train and not evals:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if train:
        steps, values = zip(*train)
        if len(values) >= 20:
            ax.plot(steps, values, color="tab:blue", alpha=0.3, linewidth=1)
            ax.plot(steps, _smooth(list(values), 0.9), color="tab:blue", label="train loss (smoothed)")
        else:
            ax.plot(steps, values, color="tab:blue", marker=".", label="train loss")
    if evals:
        steps, values = zip(*evals)
        ax.plot(steps, values, color="tab:orange", marker="o", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    tmp = f"{out_png}.tmp.{os.getpid()}"
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, out_png)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out_png

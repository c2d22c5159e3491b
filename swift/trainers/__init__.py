"""Trainers: SFT over `transformers.Trainer`, callbacks, atomic checkpoints, loss-curve plot.

Names are imported lazily so that `swift.trainers.checkpoint` (no torch) stays cheap to import.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SwiftTrainer": "swift.trainers.sft",
    "token_accuracy_counts": "swift.trainers.sft",
    "SwiftProgressCallback": "swift.trainers.callbacks",
    "JsonlLoggerCallback": "swift.trainers.callbacks",
    "find_latest_checkpoint": "swift.trainers.checkpoint",
    "is_complete_checkpoint": "swift.trainers.checkpoint",
    "remove_stale_temp_checkpoints": "swift.trainers.checkpoint",
    "plot_loss_curves": "swift.trainers.plot",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'swift.trainers' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

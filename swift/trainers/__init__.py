"""Trainers: SFT over `transformers.Trainer`, callbacks, atomic checkpoints, loss-curve plot.

Names are imported lazily so that `swift.trainers.checkpoint` (no torch) stays cheap to import.
"""

from __future__ import annotations

from swift.utils.lazy import lazy_getattr

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


__getattr__ = lazy_getattr(globals(), _EXPORTS)


def __dir__() -> list[str]:
    return sorted(__all__)

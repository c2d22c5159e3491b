"""Tuners: LoRA / QLoRA / DoRA over peft, full and freeze training.

The configs import nothing heavy; `SwiftModel`, `prepare_model` and the optimizer helpers import torch and
are loaded on first use.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from swift.tuners.config import LoRAConfig, QLoRAConfig, SwiftConfig
from swift.utils.lazy import lazy_getattr

if TYPE_CHECKING:  # pragma: no cover - typing only
    from swift.tuners.loraplus import create_loraplus_optimizer, loraplus_param_groups
    from swift.tuners.model import SwiftModel
    from swift.tuners.prepare import count_parameters, is_quantized, parameter_summary, prepare_model

_LAZY = {
    "SwiftModel": "swift.tuners.model",
    "prepare_model": "swift.tuners.prepare",
    "count_parameters": "swift.tuners.prepare",
    "parameter_summary": "swift.tuners.prepare",
    "is_quantized": "swift.tuners.prepare",
    "create_loraplus_optimizer": "swift.tuners.loraplus",
    "loraplus_param_groups": "swift.tuners.loraplus",
}

__all__ = [
    "LoRAConfig", "QLoRAConfig", "SwiftConfig", "SwiftModel", "prepare_model", "count_parameters",
    "parameter_summary", "is_quantized", "create_loraplus_optimizer", "loraplus_param_groups",
]


__getattr__ = lazy_getattr(globals(), _LAZY)

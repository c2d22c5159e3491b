"""SwiftLab: fine-tune, align, quantize and serve large models.

The public API is imported lazily so `import swift` stays fast (no torch until you touch a name)::

    from swift import SwiftModel, SwiftConfig, LoRAConfig, TrainingArguments, Trainer
"""
from __future__ import annotations

import importlib
from typing import Any

from swift.version import __version__

# public name -> (module, attribute)
_LAZY: dict[str, tuple[str, str]] = {
    "SwiftModel": ("swift.tuners", "SwiftModel"),
    "SwiftConfig": ("swift.tuners", "SwiftConfig"),
    "LoRAConfig": ("swift.tuners", "LoRAConfig"),
    "QLoRAConfig": ("swift.tuners", "QLoRAConfig"),
    "QuantizationConfig": ("swift.quant.config", "QuantizationConfig"),
    "prepare_model": ("swift.tuners", "prepare_model"),
    "TrainingArguments": ("transformers", "TrainingArguments"),
    "Trainer": ("swift.trainers", "SwiftTrainer"),
    "SwiftTrainer": ("swift.trainers", "SwiftTrainer"),
    "SftTrainer": ("swift.trainers", "SwiftTrainer"),
    "Seq2SeqTrainer": ("swift.trainers", "SwiftTrainer"),
    "MultiModalTrainer": ("swift.trainers.multimodal", "MultiModalTrainer"),
    **{name: ("swift.trainers.rlhf.api", name) for name in (
        "DPOConfig", "KTOConfig", "CPOConfig", "ORPOConfig", "RewardConfig", "PPOConfig", "GRPOConfig", "GKDConfig",
        "DPOTrainer", "KTOTrainer", "CPOTrainer", "ORPOTrainer", "RewardTrainer", "PPOTrainer", "GRPOTrainer",
        "GKDTrainer")},
    "get_template": ("swift.templates", "get_template"),
    "load_datasets": ("swift.data", "load_datasets"),
    "encode_rows": ("swift.data", "encode_rows"),
    "PtEngine": ("swift.infer.pt", "PtEngine"),
    "InferClient": ("swift.infer.client", "InferClient"),
    "RequestConfig": ("swift.infer.protocol", "RequestConfig"),
    "InferRequest": ("swift.infer.protocol", "InferRequest"),
    "merge_lora": ("swift.export.merge", "merge_lora"),
    "SwiftError": ("swift.utils.errors", "SwiftError"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'swift' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

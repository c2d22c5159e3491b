"""Export: merge LoRA adapters into their base model (quantized and other formats come later).

Names are imported lazily, so `import swift.export` costs no torch import.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"merge_lora": "swift.export.merge"}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'swift.export' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)

"""Quantization: load-time configs (bitsandbytes), export quantizers (GPTQ, AWQ, FP8 as compressed-tensors;
bitsandbytes 4/8-bit) and the perplexity check that guards every export.

Names are imported lazily, so `import swift.quant` costs no torch import.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "QuantizationConfig": "swift.quant.config",
    "bnb_config": "swift.quant.config",
    "quantize_compressed": "swift.quant.compressed",
    "save_compressed": "swift.quant.compressed",
    "perplexity": "swift.quant.perplexity",
    "quantize_model": "swift.quant.export",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'swift.quant' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)

"""Quantization: load-time configs (bitsandbytes), export quantizers (GPTQ, AWQ, FP8 as compressed-tensors;
bitsandbytes 4/8-bit) and the perplexity check that guards every export.

Names are imported lazily, so `import swift.quant` costs no torch import.
"""
from __future__ import annotations

from swift.utils.lazy import lazy_getattr

_EXPORTS = {
    "QuantizationConfig": "swift.quant.config",
    "bnb_config": "swift.quant.config",
    "quantize_compressed": "swift.quant.compressed",
    "save_compressed": "swift.quant.compressed",
    "perplexity": "swift.quant.perplexity",
    "quantize_model": "swift.quant.export",
}

__all__ = list(_EXPORTS)


__getattr__ = lazy_getattr(globals(), _EXPORTS)

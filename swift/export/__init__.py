"""Export: merge LoRA adapters into their base model (quantized and other formats come later).

Names are imported lazily, so `import swift.export` costs no torch import.
"""
from __future__ import annotations

from swift.utils.lazy import lazy_getattr

_EXPORTS = {"merge_lora": "swift.export.merge"}

__all__ = list(_EXPORTS)


__getattr__ = lazy_getattr(globals(), _EXPORTS)

"""Inference: the `Engine` protocol, the PyTorch engine, terminal chat and batch inference.

Names are imported lazily, so `import swift.infer` (and the request types) cost no torch import.
"""
from __future__ import annotations

from swift.utils.lazy import lazy_getattr

_EXPORTS = {
    "RequestConfig": "swift.infer.protocol",
    "InferRequest": "swift.infer.protocol",
    "InferResponse": "swift.infer.protocol",
    "Engine": "swift.infer.protocol",
    "PtEngine": "swift.infer.pt",
    "InferClient": "swift.infer.client",
    "run_chat": "swift.infer.chat",
    "infer_rows": "swift.infer.batch",
    "load_for_inference": "swift.infer.loading",
}

__all__ = list(_EXPORTS)


__getattr__ = lazy_getattr(globals(), _EXPORTS)

"""Models: the catalog (data), the loader, the built-in demo model and tiny test models.

Importing this package is cheap: the catalog is plain data, and the loader, demo and tiny builders (which need
torch/transformers) are imported on first use.
"""
from __future__ import annotations

from swift.models.registry import (
    DEMO_MODEL_TYPE,
    MODELS,
    ModelSpec,
    get_model_spec,
    list_models,
    match_model_spec,
    register_model,
)
from swift.utils.lazy import lazy_getattr

_LAZY = {
    "load_model_and_tokenizer": "swift.models.loader",
    "load_tokenizer": "swift.models.loader",
    "model_info": "swift.models.loader",
    "resolve_model": "swift.models.loader",
    "ensure_pad_token": "swift.models.loader",
    "ensure_demo_model": "swift.models.demo",
    "DEMO_TRAIN_DEFAULTS": "swift.models.demo",
    "make_tiny_model": "swift.models.tiny",
}

__all__ = ["DEMO_MODEL_TYPE", "MODELS", "ModelSpec", "get_model_spec", "list_models", "match_model_spec",
           "register_model", *_LAZY]


__getattr__ = lazy_getattr(globals(), _LAZY)

"""Logging: one 'swift' logger, rich output on a terminal, plain lines otherwise."""
from __future__ import annotations

import logging
import sys

_CONFIGURED = False


def get_logger(name: str = "swift") -> logging.Logger:
    global _CONFIGURED
    if not _CONFIGURED:
        root = logging.getLogger("swift")
        if not root.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("[%(levelname)s:%(name)s] %(message)s"))
            root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False
        _CONFIGURED = True
    return logging.getLogger(name if name.startswith("swift") else f"swift.{name}")


def quiet_library_warnings() -> None:
    """Hide notices that libraries address to each other, not to our users (peft still calls transformers'
    deprecated `is_gradient_checkpointing`; transformers warns when we ask a quantized folder to load dequantized,
    which is the documented way to do it)."""
    import warnings

    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*already has a `quantization_config` attribute.*", category=UserWarning)

"""The OpenAI-compatible server behind `swift deploy` (needs the `serve` extra: fastapi, uvicorn)."""
from __future__ import annotations

from typing import Any

__all__ = ["build_app"]


def __getattr__(name: str) -> Any:
    if name == "build_app":
        from swift.serve.app import build_app

        return build_app
    raise AttributeError(f"module 'swift.serve' has no attribute '{name}'")

"""Names users give dtypes (bf16, fp16, half, ...) -> torch's names. Plain data: no torch import."""
from __future__ import annotations

DTYPE_NAMES: dict[str, str] = {
    "bf16": "bfloat16", "bfloat16": "bfloat16",
    "fp16": "float16", "float16": "float16", "half": "float16",
    "fp32": "float32", "float32": "float32", "float": "float32",
}

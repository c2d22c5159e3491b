"""Quantization flags -> a load-time config (training and inference); see export_quant.py for `swift export`."""
from __future__ import annotations

from typing import Any

from swift.pipelines.arguments import ParsedArgs
from swift.utils.errors import ArgumentError
from swift.utils.logging import get_logger

logger = get_logger("swift.pipelines")


def load_time_quantization(args: ParsedArgs) -> Any:
    """The transformers quantization config for `--quant_method bnb ...`, or None.

    gptq/awq/fp8 are export methods: training or chatting with such a model means loading the folder
    `swift export` wrote, which says itself how it is quantized.
    """
    q = args.groups.get("QuantArguments")
    if q is None or q.quant_method is None:
        return None
    if q.quant_method != "bnb":
        raise ArgumentError(
            "quant_method", f"{q.quant_method} is applied by `swift export --quant_method {q.quant_method}`, not "
            "while loading. Quantize once, then pass the folder it writes as --model (no --quant_method needed); "
            "to load in 4/8-bit now use --quant_method bnb")
    from swift.quant.config import bnb_config

    compute = q.bnb_4bit_compute_dtype
    dtype = args.groups["ModelArguments"].torch_dtype
    if compute is None and dtype in ("bfloat16", "float16"):
        compute = dtype
    config = bnb_config(q.quant_bits, quant_type=q.bnb_4bit_quant_type, double_quant=q.bnb_4bit_use_double_quant,
                        compute_dtype=compute, quant_storage=q.bnb_4bit_quant_storage)
    if q.quant_bits == 4:
        logger.info("loading in 4-bit %s with bitsandbytes (double quant %s, compute %s)", q.bnb_4bit_quant_type,
                    q.bnb_4bit_use_double_quant, str(config.bnb_4bit_compute_dtype).replace("torch.", ""))
    else:
        logger.info("loading in 8-bit (LLM.int8) with bitsandbytes")
    return config


def is_bnb(args: ParsedArgs) -> bool:
    q = args.groups.get("QuantArguments")
    return q is not None and q.quant_method == "bnb"

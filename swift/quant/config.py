"""Load-time quantization: the seed's `QuantizationConfig` and the bitsandbytes config behind it.

    quant_config = QuantizationConfig(quant_method="bitsandbytes", load_in_4bit=True,
                                      bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
    model = SwiftModel.from_pretrained("Qwen/Qwen2.5-7B-Instruct", quantization_config=quant_config)

bitsandbytes is the optional extra `quant`; it is imported only when a config is turned into a transformers one.
GPTQ, AWQ and FP8 are not load-time methods here: `swift export --quant_method gptq|awq|fp8` writes a quantized
folder once, and that folder then loads (and trains LoRA) with no quantization config at all.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from swift.utils.dtypes import DTYPE_NAMES
from swift.utils.errors import ArgumentError, MissingExtraError

BNB_NAMES = ("bitsandbytes", "bnb")
EXPORT_METHODS = ("gptq", "awq", "fp8")
QUANT_TYPES = ("nf4", "fp4")
COMPUTE_DTYPES = ("bfloat16", "float16", "float32")


def dtype_name(value: Any, flag: str = "bnb_4bit_compute_dtype") -> str | None:
    """"bfloat16" / "float16" / "float32" for a torch dtype or its name (bf16, torch.bfloat16, ...); None stays None."""
    if value is None:
        return None
    name = str(value).replace("torch.", "").lower()
    name = DTYPE_NAMES.get(name, name)
    if name not in COMPUTE_DTYPES:
        raise ArgumentError(flag, f"must be one of {', '.join(COMPUTE_DTYPES)} (or bf16/fp16/fp32); got {value!r}")
    return name


def default_compute_dtype() -> str:
    """bfloat16 on a GPU that has it, float16 on older GPUs, float32 on CPU (bf16 matmuls are slow there)."""
    import torch

    if torch.cuda.is_available():
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"


def bnb_config(bits: int = 4, *, quant_type: str = "nf4", double_quant: bool = True,
               compute_dtype: Any = None, quant_storage: Any = None,
               skip_modules: list[str] | None = None) -> Any:
    """A `transformers.BitsAndBytesConfig` (4-bit NF4/FP4 or 8-bit LLM.int8).

    Args:
        bits: 4 or 8.
        quant_type: 4-bit data type, "nf4" or "fp4".
        double_quant: Quantize the 4-bit quantization constants too (~0.4 bit per parameter saved).
        compute_dtype: dtype of the 4-bit matmuls (name or torch dtype); None picks by hardware
            (`default_compute_dtype`).
        quant_storage: dtype that stores the packed 4-bit weights (FSDP/ZeRO-3 need it to equal the model dtype).
        skip_modules: Module names left unquantized (transformers always keeps the output head).

    Raises:
        MissingExtraError: bitsandbytes is not installed (pip extra `quant`).
        ArgumentError: bad bits, quant_type or dtype.
    """
    if bits not in (4, 8):
        raise ArgumentError("quant_bits", f"bitsandbytes quantizes to 4 or 8 bits, got {bits!r}")
    if quant_type not in QUANT_TYPES:
        raise ArgumentError("bnb_4bit_quant_type", f"must be one of {', '.join(QUANT_TYPES)}; got {quant_type!r}")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        raise MissingExtraError("bitsandbytes", "quant", "bitsandbytes quantization (QLoRA)") from e
    import torch
    from transformers import BitsAndBytesConfig

    extra: dict[str, Any] = {}
    if skip_modules:
        extra["llm_int8_skip_modules"] = list(skip_modules)
    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, **extra)
    if quant_storage is not None:
        extra["bnb_4bit_quant_storage"] = getattr(torch, dtype_name(quant_storage, "bnb_4bit_quant_storage"))
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type=quant_type, bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=getattr(torch, dtype_name(compute_dtype) or default_compute_dtype()), **extra)


@dataclass
class QuantizationConfig:
    """How `SwiftModel.from_pretrained(..., quantization_config=...)` quantizes a model while loading it.

    Field names are transformers' `BitsAndBytesConfig` names, so configs written for transformers carry over.
    With neither `load_in_4bit` nor `load_in_8bit` set, bitsandbytes loads in 4-bit (the QLoRA setting).
    """

    quant_method: str = "bitsandbytes"
    """"bitsandbytes" (alias "bnb"). GPTQ/AWQ/FP8 models are made once with `swift export` and then loaded
    as they are (their folder says how they are quantized)."""
    load_in_4bit: bool = False
    """4-bit NF4/FP4 weights (QLoRA)."""
    load_in_8bit: bool = False
    """8-bit LLM.int8 weights."""
    bnb_4bit_quant_type: str = "nf4"
    """4-bit data type: "nf4" (normal-float, the QLoRA paper's) or "fp4"."""
    bnb_4bit_compute_dtype: Any = None
    """dtype of the matmuls (torch dtype or name). None: bfloat16 on recent GPUs, float16 on older ones, float32
    on CPU."""
    bnb_4bit_use_double_quant: bool = True
    """Quantize the quantization constants too (saves ~0.4 bit per parameter, as in the QLoRA paper)."""
    bnb_4bit_quant_storage: Any = None
    """Storage dtype of packed 4-bit weights; set it to the model dtype for FSDP / DeepSpeed ZeRO-3."""
    llm_int8_skip_modules: list[str] | None = field(default=None)
    """Modules kept in full precision (the output head always is)."""

    def __post_init__(self) -> None:
        method = str(self.quant_method).lower()
        if method in EXPORT_METHODS:
            raise ArgumentError(
                "quant_method", f"{method} is not applied while loading: quantize once with `swift export "
                f"--model <folder> --quant_method {method} --output_dir <out>`, then load <out> with no "
                "quantization_config (its config.json says how it is quantized)")
        if method not in BNB_NAMES:
            raise ArgumentError("quant_method", f"expected 'bitsandbytes' (or 'bnb'), got {self.quant_method!r}")
        self.quant_method = "bitsandbytes"
        if self.load_in_4bit and self.load_in_8bit:
            raise ArgumentError("load_in_8bit", "choose one of load_in_4bit and load_in_8bit")
        if self.bnb_4bit_quant_type not in QUANT_TYPES:
            raise ArgumentError("bnb_4bit_quant_type",
                                f"must be one of {', '.join(QUANT_TYPES)}; got {self.bnb_4bit_quant_type!r}")
        dtype_name(self.bnb_4bit_compute_dtype)  # validate early

    @property
    def bits(self) -> int:
        """8 with `load_in_8bit`, else 4."""
        return 8 if self.load_in_8bit else 4

    def to_transformers(self) -> Any:
        """The equivalent `transformers.BitsAndBytesConfig` (needs the `quant` extra)."""
        return bnb_config(self.bits, quant_type=self.bnb_4bit_quant_type,
                          double_quant=self.bnb_4bit_use_double_quant, compute_dtype=self.bnb_4bit_compute_dtype,
                          quant_storage=self.bnb_4bit_quant_storage, skip_modules=self.llm_int8_skip_modules)


def to_transformers_config(quantization_config: Any) -> Any:
    """Accept our `QuantizationConfig` or any transformers quantization config; return the transformers one."""
    if isinstance(quantization_config, QuantizationConfig):
        return quantization_config.to_transformers()
    return quantization_config

"""Tuner configurations: what to train and how.

These dataclasses are plain data: importing this module does not import torch, transformers or peft (the
CLI builds them to validate flags before any heavy import). `LoRAConfig.to_peft_config` and
`QLoRAConfig.to_quantization_config` import their libraries when called.
"""
from __future__ import annotations

import re
from dataclasses import InitVar, dataclass, field
from typing import TYPE_CHECKING, Any

from swift.quant.config import COMPUTE_DTYPES, QUANT_TYPES
from swift.utils.errors import ArgumentError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import peft
    import transformers

TUNER_TYPES = ("lora", "full", "freeze")
LORA_BIAS = ("none", "all", "lora_only")
# peft's `init_lora_weights` values that need no extra data (eva, corda and loftq need their own configs).
LORA_INIT_STRINGS = ("gaussian", "pissa", "olora", "orthogonal")
_PISSA_NITER = re.compile(r"pissa_niter_\d+")
_BOOL_STRINGS = {"true": True, "false": False}


@dataclass
class LoRAConfig:
    """Low-rank adapters (LoRA, DoRA, rsLoRA, PiSSA/OLoRA init, LoRA+) on top of a frozen model, via peft.

    `lora_alpha=` and `lora_dropout=` are accepted as aliases of `alpha` and `dropout` (peft's and ms-swift's
    names), and read back as properties.
    """

    r: int = 8
    """Rank of the adapter matrices (ms-swift flag: --lora_rank)."""
    alpha: float = 16
    """Scaling numerator: the update is scaled by alpha / r (alpha / sqrt(r) with rsLoRA)."""
    dropout: float = 0.05
    """Dropout on the adapter input, in [0, 1)."""
    target_modules: str | list[str] = "all-linear"
    """Module names (suffixes) to adapt, a regex string, or "all-linear": every nn.Linear of the language model
    except the output head (for multimodal models the vision tower and projector are left out)."""
    use_dora: bool = False
    """Weight-decomposed LoRA (DoRA): also learns a per-output magnitude vector."""
    use_rslora: bool = False
    """Rank-stabilised scaling alpha / sqrt(r)."""
    init_weights: bool | str = True
    """peft's init_lora_weights: True (B = 0), False (random, for tests), "gaussian", "pissa",
    "pissa_niter_<n>", "olora" or "orthogonal". PiSSA and OLoRA rewrite the base weights; see SwiftModel."""
    bias: str = "none"
    """Which biases train: "none", "all" or "lora_only"."""
    modules_to_save: list[str] | None = None
    """Modules trained fully and saved beside the adapter (e.g. ["embed_tokens", "lm_head"])."""
    lorap_lr_ratio: float | None = None
    """LoRA+: the B matrices learn at lr * lorap_lr_ratio (the paper suggests 16). None turns LoRA+ off."""
    lora_alpha: InitVar[float | None] = None
    lora_dropout: InitVar[float | None] = None

    def __post_init__(self, lora_alpha: float | None, lora_dropout: float | None) -> None:
        # The aliases are class-level properties; a dataclass InitVar default would otherwise shadow them.
        if isinstance(lora_alpha, property):
            lora_alpha = None
        if isinstance(lora_dropout, property):
            lora_dropout = None
        if lora_alpha is not None:
            self.alpha = lora_alpha
        if lora_dropout is not None:
            self.dropout = lora_dropout
        self._check_lora()

    def _check_lora(self) -> None:
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r <= 0:
            raise ArgumentError("r", f"the LoRA rank must be a positive integer, got {self.r!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or self.alpha <= 0:
            raise ArgumentError("alpha", f"lora alpha must be a positive number, got {self.alpha!r}")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ArgumentError("dropout", f"lora dropout must be in [0, 1), got {self.dropout!r}")
        self.target_modules = _normalise_targets(self.target_modules)
        self.init_weights = _normalise_init(self.init_weights)
        if self.bias not in LORA_BIAS:
            raise ArgumentError("bias", f"must be one of {', '.join(LORA_BIAS)}; got {self.bias!r}")
        if self.modules_to_save is not None:
            if isinstance(self.modules_to_save, str):
                self.modules_to_save = [self.modules_to_save]
            self.modules_to_save = list(self.modules_to_save)
            if not all(isinstance(m, str) and m for m in self.modules_to_save):
                raise ArgumentError("modules_to_save", f"expected module names, got {self.modules_to_save!r}")
        if self.lorap_lr_ratio is not None and (
            not isinstance(self.lorap_lr_ratio, (int, float)) or self.lorap_lr_ratio <= 0
        ):
            raise ArgumentError(
                "lorap_lr_ratio", f"the LoRA+ ratio must be a positive number (16 is typical), got "
                f"{self.lorap_lr_ratio!r}; leave it unset to turn LoRA+ off")

    @property
    def modifies_base_weights(self) -> bool:
        """True for PiSSA/OLoRA-style inits, which subtract the initial adapter from the base weights."""
        init = self.init_weights
        return isinstance(init, str) and (init in ("pissa", "olora") or bool(_PISSA_NITER.fullmatch(init)))

    def to_peft_config(self, task_type: str | None = "CAUSAL_LM", *,
                       exclude_modules: str | list[str] | None = None) -> peft.LoraConfig:
        """Build the equivalent `peft.LoraConfig`.

        Args:
            task_type: peft task type ("CAUSAL_LM", "SEQ_CLS", ...); None for a bare model.
            exclude_modules: module names or a regex that must not be adapted (used to keep multimodal
                towers out of "all-linear").
        """
        import peft

        return peft.LoraConfig(
            task_type=task_type,
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=float(self.dropout),
            target_modules=self.target_modules,
            exclude_modules=exclude_modules,
            use_dora=self.use_dora,
            use_rslora=self.use_rslora,
            init_lora_weights=self.init_weights,
            bias=self.bias,
            modules_to_save=list(self.modules_to_save) if self.modules_to_save else None,
        )


# Read-back aliases (`cfg.lora_alpha`): installed after the dataclass is built so they do not become fields.
LoRAConfig.lora_alpha = property(lambda self: self.alpha, doc="Alias of `alpha` (peft's name).")
LoRAConfig.lora_dropout = property(lambda self: self.dropout, doc="Alias of `dropout` (peft's name).")


@dataclass
class QLoRAConfig(LoRAConfig):
    """LoRA on a model loaded in 4-bit (or 8-bit) with bitsandbytes.

    Pass it to `SwiftModel.from_pretrained(path, config=SwiftConfig(lora=QLoRAConfig()))`, which loads the
    model quantized and then adds the adapters. bitsandbytes is the optional extra `quant`.
    """

    bits: int = 4
    """4 (NF4/FP4) or 8 (LLM.int8)."""
    quant_type: str = "nf4"
    """4-bit data type: "nf4" or "fp4"."""
    double_quant: bool = True
    """Quantize the quantization constants too (saves ~0.4 bit per parameter)."""
    compute_dtype: str = "bfloat16"
    """dtype of the matmuls: "bfloat16", "float16" or "float32"."""

    def __post_init__(self, lora_alpha: float | None, lora_dropout: float | None) -> None:
        super().__post_init__(lora_alpha, lora_dropout)
        if self.bits not in (4, 8):
            raise ArgumentError("bits", f"QLoRA quantizes to 4 or 8 bits, got {self.bits!r}")
        if self.quant_type not in QUANT_TYPES:
            raise ArgumentError("quant_type", f"must be one of {', '.join(QUANT_TYPES)}; got {self.quant_type!r}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ArgumentError(
                "compute_dtype", f"must be one of {', '.join(COMPUTE_DTYPES)}; got {self.compute_dtype!r}")
        if self.modifies_base_weights:
            raise ArgumentError(
                "init_weights", f"{self.init_weights!r} rewrites the base weights, which a quantized model "
                "cannot hold exactly; use the default init with QLoRA")

    def to_quantization_config(self) -> transformers.BitsAndBytesConfig:
        """The `transformers.BitsAndBytesConfig` that loads a model for this QLoRA setup.

        Raises:
            MissingExtraError: bitsandbytes is not installed (pip extra `quant`).
        """
        from swift.quant.config import bnb_config

        return bnb_config(self.bits, quant_type=self.quant_type, double_quant=self.double_quant,
                          compute_dtype=self.compute_dtype)


@dataclass
class SwiftConfig:
    """How `SwiftModel` prepares a model for training.

    `SwiftConfig(lora=LoRAConfig(...))` trains adapters; `SwiftConfig(tuner_type="full")` trains every weight;
    `SwiftConfig(tuner_type="freeze", freeze_parameters_ratio=0.5)` trains only the last half.
    """

    lora: LoRAConfig | None = None
    """Adapter settings; given alone it implies tuner_type "lora"."""
    tuner_type: str | None = None
    """"lora", "full" or "freeze". Defaults to "lora" when `lora` is given, else "full"."""
    freeze_parameters_ratio: float = 0.0
    """full/freeze: freeze this fraction of the parameters, counted in order from the embeddings."""
    freeze_parameters: list[str] = field(default_factory=list)
    """full/freeze: freeze parameters whose names start with one of these prefixes."""
    trainable_parameters: list[str] = field(default_factory=list)
    """full/freeze: unfreeze parameters whose names start with one of these prefixes (applied last)."""

    def __post_init__(self) -> None:
        if self.lora is not None and not isinstance(self.lora, LoRAConfig):
            raise ArgumentError("lora", f"expected a LoRAConfig, got {type(self.lora).__name__}")
        if self.tuner_type is None:
            self.tuner_type = "lora" if self.lora is not None else "full"
        if self.tuner_type not in TUNER_TYPES:
            raise ArgumentError(
                "tuner_type", f"must be one of {', '.join(TUNER_TYPES)}; got {self.tuner_type!r}")
        if self.tuner_type == "lora" and self.lora is None:
            self.lora = LoRAConfig()
        if self.tuner_type != "lora" and self.lora is not None:
            raise ArgumentError(
                "tuner_type", f"a LoRA config was given but tuner_type is {self.tuner_type!r}; "
                "drop one of them")
        self.freeze_parameters = _as_str_list(self.freeze_parameters, "freeze_parameters")
        self.trainable_parameters = _as_str_list(self.trainable_parameters, "trainable_parameters")
        check_freeze_args(self.tuner_type, self.freeze_parameters_ratio, self.freeze_parameters,
                          self.trainable_parameters)


def check_freeze_args(tuner_type: str, ratio: float, freeze: list[str] | tuple[str, ...],
                      trainable: list[str] | tuple[str, ...]) -> None:
    """Reject freeze options that do not fit `tuner_type` (shared by SwiftConfig and prepare_model)."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio <= 1.0:
        raise ArgumentError("freeze_parameters_ratio", f"must be in [0, 1], got {ratio!r}")
    if tuner_type == "lora":
        for flag, value in (("freeze_parameters_ratio", ratio), ("freeze_parameters", freeze),
                            ("trainable_parameters", trainable)):
            if value:
                raise ArgumentError(
                    flag, "only applies to tuner_type full/freeze; with LoRA the base model is frozen "
                    "anyway, and extra trained modules go in LoRAConfig.modules_to_save")


def _as_str_list(value: Any, flag: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    out = list(value)
    if not all(isinstance(v, str) and v for v in out):
        raise ArgumentError(flag, f"expected parameter-name prefixes (strings), got {value!r}")
    return out


def _normalise_targets(value: Any) -> str | list[str]:
    if isinstance(value, str):
        if not value.strip():
            raise ArgumentError("target_modules", "must not be empty; use 'all-linear' for every linear layer")
        value = value.strip()
        if value.lower() == "all-linear":
            return "all-linear"
        # Plain names (one, or a comma/space separated list from a flag) are module-name suffixes; only a
        # string with other regex characters is passed to peft as a regex (which peft full-matches).
        if re.fullmatch(r"[\w.\-]+([,\s]+[\w.\-]+)*", value):
            return [v for v in re.split(r"[,\s]+", value) if v]
        return value
    if isinstance(value, (list, tuple, set)):
        out = list(value)
        if not out or not all(isinstance(v, str) and v for v in out):
            raise ArgumentError("target_modules", f"expected module names, got {value!r}")
        if len(out) == 1 and out[0].lower() == "all-linear":
            return "all-linear"
        if any(v.lower() == "all-linear" for v in out):
            raise ArgumentError("target_modules", "'all-linear' cannot be mixed with module names")
        return out
    raise ArgumentError("target_modules", f"expected a string or a list of names, got {value!r}")


def _normalise_init(value: Any) -> bool | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _BOOL_STRINGS:
            return _BOOL_STRINGS[low]
        if low in LORA_INIT_STRINGS or _PISSA_NITER.fullmatch(low):
            return low
    raise ArgumentError(
        "init_weights", f"must be true, false, {', '.join(LORA_INIT_STRINGS)} or pissa_niter_<n>; "
        f"got {value!r}")

"""Turn a loaded model into a trainable one: LoRA (peft), full, or freeze; and count what trains."""
from __future__ import annotations

import bisect
import re
from collections.abc import Sequence

import torch
from torch import nn

from swift.tuners.config import LoRAConfig, check_freeze_args
from swift.tuners.multimodal import apply_freeze, is_multimodal_model, lora_target_regex
from swift.utils.errors import ArgumentError, SwiftError
from swift.utils.logging import get_logger

logger = get_logger("swift.tuners")


def prepare_model(
    model: nn.Module,
    *,
    tuner_type: str = "lora",
    lora: LoRAConfig | None = None,
    freeze_parameters_ratio: float = 0.0,
    freeze_parameters: Sequence[str] = (),
    trainable_parameters: Sequence[str] = (),
    task_type: str | None = "CAUSAL_LM",
    freeze_vit: bool = True,
    freeze_aligner: bool = True,
    freeze_llm: bool = False,
) -> nn.Module:
    """Make `model` ready for training with the chosen tuner.

    Args:
        model: A transformers model (not yet wrapped by peft).
        tuner_type: "lora" wraps the model with peft adapters (base frozen) and returns the `PeftModel`;
            "full" makes every floating-point weight trainable; "freeze" is "full" followed by the freeze
            options below (they are also honoured by "full").
        lora: Adapter settings for "lora" (default `LoRAConfig()`).
        freeze_parameters_ratio: Freeze this fraction of all parameter elements, whole tensors in
            `model.parameters()` order (embeddings first), as ms-swift does: tensors are frozen while the
            running element count stays within `ratio * total`.
        freeze_parameters: Also freeze parameters whose names start with one of these prefixes.
        trainable_parameters: Then unfreeze parameters whose names start with one of these prefixes.
        task_type: peft task type for "lora".
        freeze_vit: Multimodal models: keep the vision/audio tower frozen (full/freeze), or leave its linear
            layers out of "all-linear" LoRA. No effect on text models.
        freeze_aligner: Multimodal models: the same for the aligner (projector / merger).
        freeze_llm: Freeze the language model (full/freeze) or leave it out of "all-linear" LoRA.

    Returns:
        The peft model for "lora", else `model` itself with `requires_grad` set.

    Raises:
        ArgumentError: bad tuner_type, freeze options with LoRA, or a prefix that matches nothing.
        SwiftError: full/freeze training of a quantized model.
    """
    if tuner_type not in ("lora", "full", "freeze"):
        raise ArgumentError("tuner_type", f"must be one of lora, full, freeze; got {tuner_type!r}")
    check_freeze_args(tuner_type, freeze_parameters_ratio, list(freeze_parameters), list(trainable_parameters))
    if tuner_type == "lora":
        return _apply_lora(model, lora or LoRAConfig(), task_type, (freeze_vit, freeze_aligner, freeze_llm))
    if lora is not None:
        raise ArgumentError("tuner_type", f"a LoRA config was given but tuner_type is {tuner_type!r}")
    if is_quantized(model):
        raise SwiftError(
            f"tuner_type {tuner_type!r} trains the base weights, but this model is quantized and its weights "
            "cannot be trained; use LoRA (QLoRA) or load the model without quantization")
    for p in model.parameters():
        p.requires_grad_(p.is_floating_point() or p.is_complex())
    multimodal = is_multimodal_model(model)
    if freeze_llm or multimodal:
        apply_freeze(model, freeze_vit=freeze_vit, freeze_aligner=freeze_aligner, freeze_llm=freeze_llm)
    _freeze_by_ratio(model, freeze_parameters_ratio)
    _set_by_prefix(model, freeze_parameters, False, "freeze_parameters")
    _set_by_prefix(model, trainable_parameters, True, "trainable_parameters")
    if tuner_type == "freeze" and not freeze_parameters_ratio and not freeze_parameters and not multimodal:
        logger.warning("tuner_type 'freeze' without freeze_parameters_ratio or freeze_parameters trains "
                       "every weight, like 'full'")
    logger.info("%s tuning: %s", tuner_type, parameter_summary(model))
    return model


def _apply_lora(model: nn.Module, lora: LoRAConfig, task_type: str | None,
                freeze: tuple[bool, bool, bool] = (True, True, False)) -> nn.Module:
    import peft

    if isinstance(model, peft.PeftModel):
        raise SwiftError("the model already carries peft adapters; pass the base model, or keep training the "
                         "loaded adapter as it is")
    if is_quantized(model):
        prepare_quantized(model)
    regex = exclude = None
    if lora.target_modules == "all-linear":
        # Multimodal: the parts the freeze flags leave trainable; text models keep peft's own all-linear.
        regex = lora_target_regex(model, *freeze)
        exclude = None if regex else language_model_exclude(model)
    peft_config = lora.to_peft_config(task_type, exclude_modules=exclude)
    if regex:
        peft_config.target_modules = regex
    try:
        peft_model = peft.get_peft_model(model, peft_config)
    except ValueError as e:
        if "not found in the base model" in str(e) or "Target modules" in str(e):
            names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
            raise ArgumentError(
                "target_modules", f"{lora.target_modules!r} matches no module of {type(model).__name__}; "
                f"its linear layers are named {', '.join(names)} (or use 'all-linear')") from e
        raise
    logger.info("lora tuning (r=%d, targets %s): %s", lora.r, _describe_targets(peft_model),
                parameter_summary(peft_model))
    return peft_model


def prepare_quantized(model: nn.Module, gradient_checkpointing: bool = True) -> None:
    """What LoRA on a quantized (QLoRA) model needs, without peft's blanket upcast to float32.

    - Gradient checkpointing (non-reentrant) is switched on: QLoRA's memory figures assume it. The embedding
      output requires grad so a reentrant setup, if the user picks one, still has a graph to recompute.
    - fp16 models: normalisation weights and the output head go to float32, since fp16 overflows there. bf16 and
      fp32 models stay as they are: bf16 has fp32's range, and upcasting only the norms would turn the whole
      residual stream into float32 (bitsandbytes returns its input's dtype), doubling activation memory.
      Upcasting embeddings and head too, as `peft.prepare_model_for_kbit_training` does, costs ~2 GB on a 7B
      model with a 152k vocabulary. The loss is computed from float32 logits by transformers in every case.
    """
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    upcast = 0
    if dtype == torch.float16:
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        for module in model.modules():
            if "norm" in type(module).__name__.lower() or module is head:
                for p in module.parameters(recurse=False):
                    if p.dtype == torch.float16:
                        p.data = p.data.float()
                        upcast += 1
    if hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()
    if gradient_checkpointing and hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    logger.info("quantized model: gradient checkpointing %s%s", "on" if gradient_checkpointing else "off",
                f", {upcast} fp16 norm/head weights in float32" if upcast else "")


def _describe_targets(peft_model: nn.Module) -> str:
    from peft.tuners.lora import LoraLayer

    names = sorted({n.rsplit(".", 1)[-1] for n, m in peft_model.named_modules() if isinstance(m, LoraLayer)})
    return ",".join(names)


def language_model_exclude(model: nn.Module) -> str | None:
    """A regex (peft `exclude_modules`) that keeps "all-linear" inside the language model.

    Multimodal models also hold linear layers in their vision/audio towers and projectors; ms-swift trains
    only the language model by default. Returns None when every linear layer besides the output head already
    belongs to the decoder (plain text models), so their adapter configs stay as peft writes them.
    """
    try:
        decoder = model.get_decoder()
    except (AttributeError, NotImplementedError, ValueError):
        return None
    if decoder is None or decoder is model:
        return None
    prefix = next((name for name, m in model.named_modules() if m is decoder), None)
    if not prefix:
        return None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    outside = [
        name for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and m is not head and not name.startswith(prefix + ".")
    ]
    if not outside:
        return None
    logger.info("all-linear: adapting the language model (%s) only; %d linear layers outside it (e.g. %s) stay "
                "frozen", prefix, len(outside), outside[0])
    return rf"(?!{re.escape(prefix)}\.).*"


def is_quantized(model: nn.Module) -> bool:
    """True when the model was loaded quantized (bitsandbytes, GPTQ, AWQ, ...)."""
    if getattr(model, "is_quantized", False) or getattr(model, "hf_quantizer", None) is not None:
        return True
    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
        return True
    config = getattr(model, "config", None)
    return getattr(config, "quantization_config", None) is not None


def _freeze_by_ratio(model: nn.Module, ratio: float) -> None:
    if ratio <= 0:
        return
    params = list(model.parameters())
    cumulative, running = [], 0
    for p in params:
        running += p.numel()
        cumulative.append(running)
    n_frozen = bisect.bisect_right(cumulative, int(running * ratio))
    for p in params[:n_frozen]:
        p.requires_grad_(False)


def _set_by_prefix(model: nn.Module, prefixes: Sequence[str], trainable: bool, flag: str) -> None:
    if not prefixes:
        return
    named = list(model.named_parameters())
    for prefix in prefixes:
        hits = [p for name, p in named if name.startswith(prefix)]
        if not hits:
            examples = ", ".join(name for name, _ in named[:3])
            raise ArgumentError(flag, f"no parameter name starts with {prefix!r}; names look like {examples}")
        for p in hits:
            if trainable and not (p.is_floating_point() or p.is_complex()):
                continue
            p.requires_grad_(trainable)


def _numel(p: torch.Tensor) -> int:
    # bitsandbytes packs two 4-bit values per byte of its storage dtype; count the weights they stand for.
    if type(p).__name__ == "Params4bit":
        storage = getattr(p, "quant_storage", None) or p.dtype
        itemsize = storage.itemsize if isinstance(storage, torch.dtype) else 1
        return p.numel() * 2 * itemsize
    return p.numel()


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; tied weights count once, 4-bit weights by what they encode."""
    trainable = total = 0
    for p in model.parameters():
        n = _numel(p)
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


def _human(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def parameter_summary(model: nn.Module) -> str:
    """One line such as "trainable 1.2M / 494.0M (0.24%)"."""
    trainable, total = count_parameters(model)
    pct = 100.0 * trainable / total if total else 0.0
    return f"trainable {_human(trainable)} / {_human(total)} ({pct:.2f}%)"

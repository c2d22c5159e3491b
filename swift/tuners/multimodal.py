"""The parts of a multimodal model (vision/audio tower, aligner, language model) and what trains in each.

ms-swift's flags carry over: `--freeze_vit` (default true), `--freeze_aligner` (default true), `--freeze_llm`
(default false), `--vit_lr`, `--aligner_lr`. The parts are found from transformers' attribute names, so any
model laid out like Qwen2-VL, Qwen2-Audio, LLaVA(-NeXT) or InternVL works without a per-model table:

    parts = model_parts(model)   # {"vision_tower": ["model.visual.patch_embed", "model.visual.blocks"],
                                 #  "aligner": ["model.visual.merger"],
                                 #  "language_model": ["model.language_model", "lm_head"]}
    apply_freeze(model, freeze_vit=True, freeze_aligner=False, freeze_llm=False)     # full / freeze tuning
    target = lora_target_regex(model, freeze_vit=False)                              # peft target_modules
    groups = multimodal_param_groups(model, lr=1e-5, vit_lr=2e-6, weight_decay=0.1)  # optimizer groups
"""
from __future__ import annotations

import re
from typing import Any

from torch import nn

from swift.utils.errors import ArgumentError
from swift.utils.logging import get_logger

logger = get_logger("swift.tuners")

PARTS = ("vision_tower", "aligner", "language_model")
# Encoders of the non-text modalities (their merger/projector children count as aligner).
VISION_ATTRS = ("visual", "vision_tower", "audio_tower", "vision_model", "vision_encoder", "audio_encoder")
ALIGNER_ATTRS = ("multi_modal_projector", "mm_projector", "merger", "connector", "mlp1", "aligner")
LANGUAGE_ATTRS = ("language_model", "llm", "text_model")
# Parameter names that get no weight decay, as transformers' Trainer.get_decay_parameter_names decides.
NO_DECAY_PATTERNS = (r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)")


def _has_params(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _find_host(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The shallowest module holding a vision/audio encoder as a direct child (e.g. `model` in Qwen2-VL)."""
    for name, module in model.named_modules():
        if any(child in VISION_ATTRS for child, _ in module.named_children()):
            return name, module
    return None


def model_parts(model: nn.Module) -> dict[str, list[str]]:
    """Split a model into vision tower, aligner and language model, as parameter-name prefixes.

    Found by transformers' attribute names: the encoder (`visual`, `vision_tower`, `audio_tower`, ...) is the
    vision tower, except a `merger` inside it (Qwen2-VL) which is the aligner; `multi_modal_projector` (and other
    parameters beside the encoder, e.g. LLaVA-NeXT's `image_newline`) is the aligner; `language_model` and
    everything outside the multimodal block (the output head `lm_head`) is the language model. Works on a peft
    wrapper as well (the prefixes then start with `base_model.model.`).

    Args:
        model: A transformers model, or a peft / SwiftLab wrapper of one.

    Returns:
        {"vision_tower": [...], "aligner": [...], "language_model": [...]}: module (or parameter) name prefixes
        as in `model.named_parameters()`. A text-only model has empty vision_tower and aligner lists.
    """
    parts: dict[str, list[str]] = {p: [] for p in PARTS}
    found = _find_host(model)
    host_name = found[0] if found else None
    if found is not None:
        _, host = found
        for child_name, child in host.named_children():
            full = _join(host_name, child_name)
            if not _has_params(child):
                continue
            if child_name in VISION_ATTRS:
                inner = [(n, m) for n, m in child.named_children() if n in ALIGNER_ATTRS and _has_params(m)]
                if not inner:
                    parts["vision_tower"].append(full)
                    continue
                aligner_names = {n for n, _ in inner}
                parts["aligner"] += [_join(full, n) for n, _ in inner]
                parts["vision_tower"] += [_join(full, n) for n, m in child.named_children()
                                          if n not in aligner_names and _has_params(m)]
                parts["vision_tower"] += [_join(full, n) for n, _ in child.named_parameters(recurse=False)]
            elif child_name in LANGUAGE_ATTRS:
                parts["language_model"].append(full)
            else:  # projectors and other connectors between the encoders and the language model
                parts["aligner"].append(full)
        parts["aligner"] += [_join(host_name, n) for n, _ in host.named_parameters(recurse=False)]
    # Whatever lies outside the multimodal block (output head, a text model's whole body) is language model.
    ancestors = _ancestors(host_name)
    for name, module in model.named_modules():
        if name not in ancestors:
            continue
        for child_name, child in module.named_children():
            full = _join(name, child_name)
            if full not in ancestors and full != host_name and _has_params(child):
                parts["language_model"].append(full)
        parts["language_model"] += [_join(name, n) for n, _ in module.named_parameters(recurse=False)]
    return parts


def _ancestors(host_name: str | None) -> set[str]:
    """The names of the modules on the path from the root to the host, host excluded (root: "")."""
    if host_name is None:
        return {""}
    pieces = host_name.split(".") if host_name else []
    return {".".join(pieces[:i]) for i in range(len(pieces))}


def is_multimodal_model(model: nn.Module) -> bool:
    """True when `model` has a vision or audio tower that `model_parts` recognises."""
    return bool(model_parts(model)["vision_tower"])


def _under(name: str, prefixes: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def part_of(name: str, parts: dict[str, list[str]]) -> str | None:
    """The part ("vision_tower", "aligner", "language_model") that parameter/module `name` belongs to."""
    for part in PARTS:
        if _under(name, parts[part]):
            return part
    return None


def _check_something_trains(freeze_vit: bool, freeze_aligner: bool, freeze_llm: bool, multimodal: bool) -> None:
    if freeze_llm and (not multimodal or (freeze_vit and freeze_aligner)):
        raise ArgumentError("freeze_llm", "with --freeze_llm true and the vision tower and aligner frozen (or a "
                            "text-only model) nothing is left to train; set --freeze_vit false or "
                            "--freeze_aligner false, or --freeze_llm false")


def apply_freeze(model: nn.Module, freeze_vit: bool = True, freeze_aligner: bool = True,
                 freeze_llm: bool = False) -> dict[str, int]:
    """Freeze the parts of a multimodal model that the flags name (full / freeze tuning).

    Parameters of the parts that are not frozen are left as they are (`prepare_model` has made every weight
    trainable before), so this composes with `freeze_parameters` / `trainable_parameters`.

    Args:
        model: The model (every weight trainable for full tuning).
        freeze_vit: Freeze the vision/audio tower.
        freeze_aligner: Freeze the aligner (projector / merger).
        freeze_llm: Freeze the language model and its output head.

    Returns:
        Number of parameter elements frozen per part.

    Raises:
        ArgumentError: The flags leave nothing to train.
    """
    parts = model_parts(model)
    _check_something_trains(freeze_vit, freeze_aligner, freeze_llm, bool(parts["vision_tower"]))
    frozen = {"vision_tower": freeze_vit, "aligner": freeze_aligner, "language_model": freeze_llm}
    counts = dict.fromkeys(PARTS, 0)
    for name, p in model.named_parameters():
        part = part_of(name, parts)
        if part is not None and frozen[part]:
            p.requires_grad_(False)
            counts[part] += p.numel()
    if parts["vision_tower"]:
        logger.info("multimodal parts: vision tower %s, aligner %s, language model %s",
                    *("frozen" if frozen[p] else "trained" for p in PARTS))
    return counts


def _output_head(model: nn.Module) -> nn.Module | None:
    try:
        return model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    except (AttributeError, NotImplementedError):
        return None


def lora_target_regex(model: nn.Module, freeze_vit: bool = True, freeze_aligner: bool = True,
                      freeze_llm: bool = False) -> str | None:
    """peft `target_modules` (a regex) for "all-linear" on a multimodal model.

    The language model's linear layers unless `freeze_llm`; the vision tower's when `freeze_vit` is false; the
    aligner's when `freeze_aligner` is false; never the output head. The regex matches exactly those modules
    (layer indices generalised as `\\d+`), so it stays short in adapter_config.json.

    Args:
        model: The model about to be wrapped by peft (a peft model's base model is used).
        freeze_vit / freeze_aligner / freeze_llm: As for `apply_freeze`.

    Returns:
        The regex, or None for a text-only model (peft's own "all-linear" applies).

    Raises:
        ArgumentError: The flags leave no linear layer to adapt.
    """
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    parts = model_parts(model)
    if not parts["vision_tower"]:
        return None
    _check_something_trains(freeze_vit, freeze_aligner, freeze_llm, True)
    chosen = [p for part, frozen in (("language_model", freeze_llm), ("vision_tower", freeze_vit),
                                     ("aligner", freeze_aligner)) if not frozen for p in parts[part]]
    head = _output_head(model)
    targets = [n for n, m in model.named_modules()
               if isinstance(m, nn.Linear) and m is not head and _under(n, chosen)]
    if not targets:
        raise ArgumentError("target_modules", "all-linear found no linear layer in the parts that train "
                            f"({', '.join(chosen)}); set --freeze_vit / --freeze_aligner / --freeze_llm differently")
    patterns = list(dict.fromkeys(re.sub(r"\\\.\d+\\\.", r"\\.\\d+\\.", re.escape(n)) for n in targets))
    # re.escape leaves digits alone; the substitution above turns ".<index>." into ".\d+." - unless the
    # generalised pattern would catch other modules (e.g. nn.Sequential children of other types).
    regex = "^(?:" + "|".join(patterns) + ")$"
    names = [n for n, _ in model.named_modules()]
    if {n for n in names if re.fullmatch(regex, n)} != set(targets):
        regex = "^(?:" + "|".join(re.escape(n) for n in targets) + ")$"
    logger.info("all-linear on %s: %d linear layers adapted in %s", type(model).__name__, len(targets),
                ", ".join(p for p, frozen in (("language model", freeze_llm), ("vision tower", freeze_vit),
                                              ("aligner", freeze_aligner)) if not frozen))
    return regex


def decay_parameter_names(model: nn.Module) -> set[str]:
    """Names of the parameters that get weight decay (not biases, not norm weights), as transformers decides."""
    from transformers.trainer_pt_utils import get_parameter_names

    return set(get_parameter_names(model, [nn.LayerNorm], list(NO_DECAY_PATTERNS)))


def multimodal_param_groups(model: nn.Module, lr: float, vit_lr: float | None = None,
                            aligner_lr: float | None = None, weight_decay: float = 0.0) -> list[dict[str, Any]]:
    """Optimizer parameter groups with their own learning rate for the vision tower and the aligner.

    Args:
        model: The model being trained (only parameters with requires_grad are grouped).
        lr: Learning rate of the language model (and of any part without its own rate).
        vit_lr: Learning rate of the vision/audio tower; None: `lr`.
        aligner_lr: Learning rate of the aligner; None: `lr`.
        weight_decay: Weight decay, not applied to biases and norm weights.

    Returns:
        A list of {"params", "lr", "weight_decay"} dicts for a torch optimizer; empty groups are left out.
    """
    parts = model_parts(model)
    rates = {"vision_tower": lr if vit_lr is None else vit_lr, "aligner": lr if aligner_lr is None else aligner_lr,
             "language_model": lr}
    decay = decay_parameter_names(model)
    buckets: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        part = part_of(name, parts) or "language_model"
        buckets.setdefault((part, name in decay), []).append(p)
    groups = []
    for part in PARTS:
        for decays in (True, False):
            params = buckets.get((part, decays))
            if params:
                groups.append({"params": params, "lr": rates[part], "weight_decay": weight_decay if decays else 0.0})
    return groups

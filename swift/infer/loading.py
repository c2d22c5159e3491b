"""Load a model (plus peft adapters) and its tokenizer for inference."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from swift.utils.errors import SwiftError
from swift.utils.io import read_json
from swift.utils.logging import get_logger

logger = get_logger(__name__)

_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "tokenizer.model", "vocab.json")


def base_model_of(adapter_dir: str | os.PathLike) -> str:
    """The base model an adapter was trained on, as recorded in its `adapter_config.json`."""
    config = _adapter_config(adapter_dir)
    base = config.get("base_model_name_or_path")
    if not base:
        raise SwiftError(f"{Path(adapter_dir) / 'adapter_config.json'} does not name its base model "
                         "(base_model_name_or_path); pass the model folder explicitly.")
    return str(base)


def load_for_inference(model_dir: str | os.PathLike | None, *, adapters: Sequence[str | os.PathLike] = (),
                       merge_lora: bool = False, torch_dtype: Any = None, attn_impl: str | None = None,
                       device_map: Any = None, trust_remote_code: bool = False,
                       quantization_config: Any = None) -> tuple[Any, Any]:
    """Load a causal LM and tokenizer, apply peft adapters, and put the model in eval mode.

    Several adapters stack: without `merge_lora` they are all active at once (LoRA deltas add up), with
    it each is merged into the weights in turn and the result is a plain `transformers` model. The
    tokenizer of the last adapter folder that has tokenizer files wins over the base model's.

    Args:
        model_dir: A local Hugging Face folder, a registry name or a hub id (see
            `swift.models.load_model_and_tokenizer`). None takes the base model named in the first
            adapter's `adapter_config.json`.
        adapters: peft adapter folders.
        merge_lora: Merge the adapters into the weights (`merge_and_unload`).
        torch_dtype: A `torch.dtype` or its name ("bf16", "fp16", "fp32", "auto"); None = the config's.
        attn_impl: Attention implementation ("sdpa", "eager", "flash_attn", ...).
        device_map: Passed to `from_pretrained`; None puts the model on the first GPU when there is one.
        trust_remote_code: Allow Python code shipped with the model.
        quantization_config: Load-time quantization (e.g. bitsandbytes 4-bit for a QLoRA adapter's base).

    Returns:
        (model, tokenizer); for a multimodal model the tokenizer is its processor.
    """
    import torch

    from swift.models.loader import load_model_and_tokenizer

    adapters = [str(a) for a in adapters]
    for a in adapters:
        _adapter_config(a)  # fail early, with a clear message, on a folder that is no adapter
    if model_dir is None:
        if not adapters:
            raise SwiftError("Give a model folder or at least one adapter folder to load.")
        model_dir = base_model_of(adapters[0])
        logger.info("Using base model %s named by adapter %s", model_dir, adapters[0])
    if device_map is None and torch.cuda.is_available():
        device_map = "cuda:0"
    model, tokenizer, resolved_dir = load_model_and_tokenizer(
        str(model_dir), torch_dtype=torch_dtype, device_map=device_map, attn_impl=attn_impl,
        trust_remote_code=trust_remote_code, task=_task(model_dir, adapters), quantization_config=quantization_config,
        dequantize=bool(adapters))
    model = _apply_adapters(model, adapters, merge_lora)
    model.eval()
    tokenizer = _adapter_tokenizer(adapters, resolved_dir, trust_remote_code) or tokenizer
    return model, tokenizer


def is_reward_model(model: Any) -> bool:
    """True for a sequence-classification model (a reward model from `swift rlhf --rlhf_type rm`)."""
    archs = getattr(getattr(model, "config", None), "architectures", None) or []
    return type(model).__name__.endswith("ForSequenceClassification") or any(
        str(a).endswith("ForSequenceClassification") for a in archs)


def _task(model_dir: str | os.PathLike, adapters: list[str]) -> str:
    """"seq_cls" for a reward model (its config, or a SEQ_CLS adapter over a causal base), else "causal_lm"."""
    if adapters and str(_adapter_config(adapters[0]).get("task_type", "")).upper() == "SEQ_CLS":
        return "seq_cls"
    config = Path(model_dir) / "config.json"
    if config.is_file():
        archs = read_json(config).get("architectures") or []
        if any(str(a).endswith("ForSequenceClassification") for a in archs):
            return "seq_cls"
    return "causal_lm"


def _apply_adapters(model: Any, adapters: list[str], merge: bool) -> Any:
    if not adapters:
        return model
    from peft import PeftModel

    if merge:
        for path in adapters:
            model = PeftModel.from_pretrained(model, path).merge_and_unload()
        return model
    names = [f"adapter_{i}" if i else "default" for i in range(len(adapters))]
    model = PeftModel.from_pretrained(model, adapters[0], adapter_name=names[0])
    for name, path in zip(names[1:], adapters[1:]):
        model.load_adapter(path, adapter_name=name)
    if len(names) > 1:
        model.base_model.set_adapter(names)  # all active: their deltas add up, as when merged in turn
    return model


def _adapter_tokenizer(adapters: list[str], model_dir: str, trust_remote_code: bool) -> Any:
    """The tokenizer of the last adapter folder that has tokenizer files, or None."""
    source = next((p for p in reversed(adapters) if any((Path(p) / f).is_file() for f in _TOKENIZER_FILES)), None)
    if source is None:
        return None
    from swift.models.loader import load_tokenizer, model_info

    return load_tokenizer(source, trust_remote_code=trust_remote_code,
                          is_multimodal=model_info(model_dir)["is_multimodal"])


def _adapter_config(adapter_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(adapter_dir) / "adapter_config.json"
    if not path.is_file():
        found = "is missing" if Path(adapter_dir).is_dir() else "cannot be read: the folder does not exist"
        raise SwiftError(f"'{adapter_dir}' is not a peft adapter folder: {path.name} {found}. Give a folder "
                         "with adapter_config.json, such as a checkpoint-* folder of a LoRA run.")
    return read_json(path)

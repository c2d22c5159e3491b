"""Load a model and its tokenizer (or processor) from a folder, a registry name or a hub id.

    model, tokenizer, model_dir = load_model_and_tokenizer("swift-demo")
    model, tokenizer, model_dir = load_model_and_tokenizer("Qwen/Qwen2.5-0.5B-Instruct", torch_dtype="bf16")

`model_info` reads a folder's config without importing torch, for quick checks and the CLI.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from swift.hub import is_hub_id, looks_like_path, resolve_model_dir
from swift.models.registry import DEMO_MODEL_TYPE, get_model_spec, suggest_models
from swift.utils import env
from swift.utils.dtypes import DTYPE_NAMES
from swift.utils.errors import ArgumentError, MissingExtraError, SwiftError
from swift.utils.logging import get_logger

logger = get_logger("swift.models")

_DTYPE_NAMES = DTYPE_NAMES
_ATTN_NAMES = {
    "sdpa": "sdpa", "eager": "eager", "flash_attn": "flash_attention_2", "flash_attention_2": "flash_attention_2",
    "flash_attn_3": "flash_attention_3", "flash_attention_3": "flash_attention_3", "flex_attention": "flex_attention",
}
_MM_CONFIG_KEYS = ("vision_config", "audio_config", "visual", "vision_tower", "mm_vision_tower", "image_token_id",
                   "image_token_index", "video_token_id", "audio_token_id")
_PAD_CANDIDATES = ("<|finetune_right_pad_id|>", "<pad>", "[PAD]", "<|pad|>", "<|endoftext|>")


def _read_config(model_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        hint = (" It holds adapter_config.json: it is an adapter, pass it to --adapters and the base model to "
                "--model." if (Path(model_dir) / "adapter_config.json").is_file() else "")
        raise SwiftError(f"'{model_dir}' has no config.json, so it is not a model folder.{hint}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise SwiftError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}).") from e


def model_info(model_dir: str | os.PathLike) -> dict[str, Any]:
    """Describe a local model folder from its config files, without importing torch.

    Returns:
        A dict with model_dir, model_type, architectures, torch_dtype (a string or None),
        max_position_embeddings, vocab_size, hidden_size, num_hidden_layers, has_chat_template, is_multimodal,
        has_remote_code (config.json has an `auto_map`) and quant_method (None when not quantized).

    Raises:
        SwiftError: The folder has no (valid) config.json.
    """
    cfg = _read_config(model_dir)
    text = cfg.get("text_config") or cfg.get("llm_config") or {}
    folder = Path(model_dir)

    def pick(key: str) -> Any:
        return cfg[key] if cfg.get(key) is not None else text.get(key)

    dtype = pick("torch_dtype") or pick("dtype")
    return {
        "model_dir": str(folder.resolve()),
        "model_type": cfg.get("model_type"),
        "architectures": list(cfg.get("architectures") or []),
        "torch_dtype": str(dtype) if dtype is not None else None,
        "max_position_embeddings": pick("max_position_embeddings"),
        "vocab_size": pick("vocab_size"),
        "hidden_size": pick("hidden_size"),
        "num_hidden_layers": pick("num_hidden_layers"),
        "has_chat_template": _has_chat_template(folder),
        "is_multimodal": any(k in cfg for k in _MM_CONFIG_KEYS) or (folder / "preprocessor_config.json").is_file()
        or (folder / "processor_config.json").is_file(),
        "has_remote_code": bool(cfg.get("auto_map")),
        "quant_method": (cfg.get("quantization_config") or {}).get("quant_method"),
    }


def _has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    tok_cfg = folder / "tokenizer_config.json"
    if tok_cfg.is_file():
        try:
            return bool(json.loads(tok_cfg.read_text(encoding="utf-8")).get("chat_template"))
        except json.JSONDecodeError:
            return False
    return False


def resolve_model(model: str | None, *, model_type: str | None = None, use_hf: bool | None = None,
                  revision: str | None = None, token: str | None = None) -> str:
    """Turn a folder, a registry name or a hub id into a local folder (building or downloading if needed).

    Args:
        model: A local folder, a registry name ("qwen2.5-0.5b-instruct", "swift-demo") or a hub id. None: use
            `model_type`.
        model_type: A registry name, used when `model` is not given.
        use_hf: Hugging Face (True) or ModelScope (False); None: env `USE_HF`, else ModelScope. A registry entry
            uses its id on the chosen hub, so `Qwen/...` ids work on both.
        revision: Hub revision. token: Hub token (never logged).

    Returns:
        The local model folder.

    Raises:
        SwiftError: Unknown name, missing folder, or a failed download.
    """
    if not model:
        if not model_type:
            raise ArgumentError("model", "no model given: pass --model (a folder, a hub id or a registry name "
                                "such as swift-demo) or --model_type.")
        model = model_type
    model = str(model).strip()
    if looks_like_path(model):
        return resolve_model_dir(model)
    spec = get_model_spec(model)
    if spec is not None and spec.model_type == DEMO_MODEL_TYPE:
        from swift.models.demo import ensure_demo_model

        return ensure_demo_model()
    if use_hf is None:
        use_hf = bool(env.use_hf_default())
    if spec is not None:
        hub_id = spec.hub_id(use_hf)
        if hub_id is None:
            raise SwiftError(f"Registry model '{spec.model_type}' has no hub id to download it from.")
        return resolve_model_dir(hub_id, use_hf=use_hf, revision=revision, token=token)
    if is_hub_id(model):
        return resolve_model_dir(model, use_hf=use_hf, revision=revision, token=token)
    close = suggest_models(model)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise SwiftError(f"Unknown model '{model}': not a folder, not a registered name, not a hub id "
                     f"('owner/name').{hint} The registered names are listed by swift.models.list_models().")


def resolve_torch_dtype(torch_dtype: str | Any | None, config_dtype: str | None) -> Any:
    """Map "bf16"/"fp16"/"fp32"/"auto"/None (or a torch.dtype) to a torch.dtype.

    "auto" and None take the dtype of the model's config (float32 when it names none). What the user asks is
    kept as is on every device: bf16 and fp16 also run on CPU.
    """
    import torch

    if isinstance(torch_dtype, torch.dtype):
        return torch_dtype
    name = str(torch_dtype).lower().replace("torch.", "") if torch_dtype is not None else "auto"
    if name == "auto":
        name = _DTYPE_NAMES.get(str(config_dtype).lower().replace("torch.", ""), "float32")
    if name not in _DTYPE_NAMES:
        raise ArgumentError("torch_dtype", f"unknown dtype '{torch_dtype}'; use one of bf16, fp16, fp32, auto.")
    return getattr(torch, _DTYPE_NAMES[name])


def load_model_and_tokenizer(model: str | None, *, torch_dtype: str | None = None, device_map: Any = None,
                             attn_impl: str | None = None, quantization_config: Any = None,
                             trust_remote_code: bool = False, use_hf: bool | None = None,
                             model_type: str | None = None, model_kwargs: dict[str, Any] | None = None,
                             revision: str | None = None, token: str | None = None,
                             task: str = "causal_lm", dequantize: bool = False) -> tuple[Any, Any, str]:
    """Load a model and its tokenizer.

    Args:
        model: A local folder, a registry name or a hub id; None to use `model_type`.
        torch_dtype: "bf16", "fp16", "fp32" or "auto"/None (the config's dtype).
        device_map: Passed to `from_pretrained` ("auto", "cpu", a dict, ...); None loads on CPU.
        attn_impl: "sdpa", "eager", "flash_attn" (= flash_attention_2), ...; None: transformers' default.
        quantization_config: A transformers quantization config (e.g. `BitsAndBytesConfig`), or None.
        trust_remote_code: Allow running Python code shipped with the model. Off unless asked for.
        use_hf: Hub choice, see `resolve_model`.
        model_type: Registry name, used when `model` is None.
        model_kwargs: Extra keyword arguments for `from_pretrained`; they win over the ones above.
        revision: Hub revision to download. token: Hub access token (never logged).
        task: "causal_lm" (the default: a generative model) or "seq_cls" (a reward model: the same backbone
            with a one-output score head, `AutoModelForSequenceClassification`, num_labels=1).
        dequantize: A folder already quantized as compressed-tensors (GPTQ/AWQ/FP8 from `swift export`) is
            unpacked to dense weights at load time (what training and LoRA adapters need); without it the weights
            stay packed until the first forward pass.

    Returns:
        (model, tokenizer, model_dir). For multimodal models the second item is the processor (its
        `.tokenizer` is the text tokenizer). The tokenizer always has a pad token.

    Raises:
        SwiftError: Unknown model, missing files, remote code without `trust_remote_code`.
        ArgumentError: A bad dtype or attention implementation.
    """
    model_dir = resolve_model(model, model_type=model_type, use_hf=use_hf, revision=revision, token=token)
    info = model_info(model_dir)
    _check_remote_code(info, trust_remote_code)
    dtype = resolve_torch_dtype(torch_dtype, info["torch_dtype"])
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": trust_remote_code}
    if device_map is not None:
        kwargs["device_map"] = device_map
    if attn_impl:
        if attn_impl not in _ATTN_NAMES:
            raise ArgumentError("attn_impl", f"unknown attention implementation '{attn_impl}'; use one of "
                                f"{', '.join(sorted(_ATTN_NAMES))}.")
        kwargs["attn_implementation"] = _ATTN_NAMES[attn_impl]
    if quantization_config is not None:
        if info["quant_method"]:
            raise ArgumentError("quant_method", f"{model_dir} is already quantized ({info['quant_method']}); load "
                                "it without --quant_method / quantization_config")
        kwargs["quantization_config"] = quantization_config
    elif info["quant_method"]:
        kwargs.update(_prequantized_kwargs(model_dir, info["quant_method"], dequantize))
    kwargs.update(model_kwargs or {})

    if task == "seq_cls":
        from transformers import AutoModelForSequenceClassification

        auto_cls = AutoModelForSequenceClassification
        kwargs.setdefault("num_labels", 1)
    elif task == "causal_lm":
        auto_cls = _auto_model_class(info)
    else:
        raise ArgumentError("task", f"expected causal_lm or seq_cls, got {task!r}")
    tokenizer = load_tokenizer(model_dir, trust_remote_code=trust_remote_code, is_multimodal=info["is_multimodal"])
    try:
        loaded = auto_cls.from_pretrained(model_dir, **kwargs)
    except ValueError as e:
        if "trust_remote_code" in str(e):
            raise SwiftError(_remote_code_message(model_dir, info)) from e
        if info["quant_method"]:
            raise SwiftError(f"{model_dir} is quantized with {info['quant_method']} and transformers cannot load it "
                             f"here: {e}. {_PREQUANTIZED_HINT}") from e
        raise
    except ImportError as e:
        if info["quant_method"]:
            raise SwiftError(f"{model_dir} is quantized with {info['quant_method']}, which needs a package that is "
                             f"not installed: {e}. {_PREQUANTIZED_HINT}") from e
        raise
    _sync_pad_token(loaded, getattr(tokenizer, "tokenizer", tokenizer))
    n_params = sum(p.numel() for p in loaded.parameters())
    logger.info("Loaded %s from %s: %.2fM parameters, dtype %s", type(loaded).__name__, model_dir, n_params / 1e6,
                str(dtype).replace("torch.", ""))
    return loaded, tokenizer, model_dir


_PREQUANTIZED_HINT = (
    "GPTQ/AWQ/FP8 folders made by other tools run on their GPU kernels (gptqmodel + optimum, autoawq, a GPU with "
    "FP8 support). Anywhere, CPU included: quantize the original model with `swift export --model <folder> "
    "--quant_method gptq|awq|fp8`, whose compressed-tensors folder loads with the `quant` extra and serves on vLLM")


def _prequantized_kwargs(model_dir: str, quant_method: str, dequantize: bool) -> dict[str, Any]:
    """from_pretrained kwargs for a folder that is already quantized."""
    if quant_method != "compressed-tensors":
        return {}  # gptq/awq/fp8/bnb folders from other tools: transformers reads their config itself
    try:
        import compressed_tensors  # noqa: F401
    except ImportError as e:
        raise MissingExtraError("compressed-tensors", "quant", f"loading the quantized model {model_dir}") from e
    if not dequantize:
        return {}
    from transformers import CompressedTensorsConfig

    return {"quantization_config": CompressedTensorsConfig(dequantize=True)}


def load_tokenizer(model_dir: str, *, trust_remote_code: bool = False, is_multimodal: bool | None = None) -> Any:
    """Load the tokenizer (or, for a multimodal model, the processor) of a local folder, with a pad token.

    Multimodal folders go through `swift.models.processor.load_processor`: the official processor, or a
    `SwiftProcessor` where transformers cannot build it (Qwen2-VL without torchvision).
    """
    from transformers import AutoTokenizer

    from swift.models.processor import load_processor

    if is_multimodal is None:
        is_multimodal = model_info(model_dir)["is_multimodal"]
    try:
        if is_multimodal:
            tok = load_processor(model_dir, trust_remote_code=trust_remote_code)
        else:
            tok = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    except ValueError as e:
        if "trust_remote_code" in str(e):
            raise SwiftError(_remote_code_message(model_dir, None)) from e
        raise
    ensure_pad_token(getattr(tok, "tokenizer", tok))
    return tok


def ensure_pad_token(tokenizer: Any) -> str | None:
    """Give `tokenizer` a pad token when it has none (a dedicated pad token if its vocabulary has one, else eos).

    Returns:
        The pad token that was set, or None when it already had one.
    """
    if tokenizer.pad_token is not None:
        return None
    vocab = tokenizer.get_vocab()
    pad = next((t for t in _PAD_CANDIDATES if t in vocab), None) or tokenizer.eos_token or tokenizer.unk_token
    if pad is None:
        logger.warning("The tokenizer has no pad, eos or unk token; batches with padding will fail.")
        return None
    tokenizer.pad_token = pad
    logger.info("The tokenizer had no pad token; using %r (id %s).", pad, tokenizer.pad_token_id)
    return pad


def _sync_pad_token(model: Any, tokenizer: Any) -> None:
    pad_id = tokenizer.pad_token_id
    for cfg in (getattr(model, "config", None), getattr(model, "generation_config", None)):
        if cfg is not None and getattr(cfg, "pad_token_id", None) is None and pad_id is not None:
            cfg.pad_token_id = pad_id


def _auto_model_class(info: dict[str, Any]) -> Any:
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoModelForMultimodalLM
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
        MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES,
    )

    if info["is_multimodal"] and info["model_type"] in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        return AutoModelForImageTextToText
    if info["is_multimodal"] and info["model_type"] in MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES:
        return AutoModelForMultimodalLM  # audio-text models such as Qwen2-Audio
    return AutoModelForCausalLM


def _check_remote_code(info: dict[str, Any], trust_remote_code: bool) -> None:
    if trust_remote_code or not info["has_remote_code"]:
        return
    from transformers import CONFIG_MAPPING

    if info["model_type"] not in CONFIG_MAPPING:
        raise SwiftError(_remote_code_message(info["model_dir"], info))


def _remote_code_message(model_dir: str, info: dict[str, Any] | None) -> str:
    import transformers

    what = f"model_type '{info['model_type']}', " if info else ""
    return (f"The model in '{model_dir}' needs Python code shipped with it ({what}not built into transformers "
            f"{transformers.__version__}). Loading it runs that code: if you trust its source, pass "
            f"--trust_remote_code true (Python: trust_remote_code=True).")

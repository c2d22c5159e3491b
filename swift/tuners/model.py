"""SwiftModel: one object for a model being tuned (LoRA through peft, full, or freeze)."""
from __future__ import annotations

import collections
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import _IncompatibleKeys

from swift.tuners.config import QLoRAConfig, SwiftConfig
from swift.tuners.prepare import is_quantized, parameter_summary, prepare_model
from swift.utils.errors import SwiftError
from swift.utils.io import read_json
from swift.utils.logging import get_logger

logger = get_logger("swift.tuners")

# Files of a peft adapter folder (peft's own names).
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# Substrings of state-dict keys that belong to peft adapters whatever their requires_grad.
_ADAPTER_MARKERS = ("lora_", ".modules_to_save.", "trainable_tokens_")


class SwiftModel(nn.Module):
    """A model prepared for training, usable wherever an `nn.Module` or a transformers model is.

    `SwiftModel(model, config=SwiftConfig(lora=LoRAConfig(...)))` wraps `model` with peft LoRA adapters and
    freezes the base; `tuner_type="full"`/`"freeze"` set `requires_grad` instead. Any attribute it does not
    define (`config`, `device`, `merge_and_unload`, `gradient_checkpointing_enable`, ...) is read from the
    wrapped model; `unwrap()` returns that model (a `peft.PeftModel` with LoRA).

    With `transformers.Trainer`: pass it as `model=`. Training works as with the wrapped model, and the
    Trainer's checkpoints (which save `state_dict()` for models it does not know) hold only the adapter
    tensors in LoRA mode; see `state_dict`. `save_pretrained` writes a plain peft adapter folder. The forward
    signature names the usual text and Qwen-VL inputs; for other pre-encoded columns set
    `remove_unused_columns=False`, or pass `unwrap()` to the Trainer.

    PiSSA / OLoRA (`init_weights="pissa"|"olora"`) subtract the initial adapter from the base weights in
    memory. The choice made here: `save_pretrained` converts the adapter (peft's
    `path_initial_model_for_weight_conversion`, from a copy of the initial adapter kept in memory) so the
    saved folder applies to the ORIGINAL, unmodified base model — it loads with plain peft and vLLM, and
    merging it into the original base gives the trained model. The converted adapter has rank 2r. Pass
    `convert_initial=False` to save the raw adapter, which is only correct on the modified base.

    Attributes:
        tokenizer: The tokenizer/processor loaded with the model by `from_pretrained` (None otherwise).
        model_dir: The local folder the base model was loaded from (None for an in-memory model).
        swift_config: The config applied to the model (None when none was).
    """

    def __init__(self, model: nn.Module, config: SwiftConfig | None = None, *, tokenizer: Any = None,
                 model_dir: str | None = None):
        super().__init__()
        if isinstance(model, SwiftModel):
            tokenizer = tokenizer if tokenizer is not None else model.tokenizer
            model_dir = model_dir or model.model_dir
            initial, previous = model._initial_adapter, model.swift_config
            model = model.unwrap()
        else:
            initial = previous = None
        self.tokenizer = tokenizer
        self.model_dir = model_dir
        self.swift_config = config if config is not None else previous
        self._initial_adapter: dict[str, bytes] | None = initial
        if config is not None:
            model = self._prepare(model, config)
        self.model = model

    def _prepare(self, model: nn.Module, config: SwiftConfig) -> nn.Module:
        lora = config.lora
        if isinstance(lora, QLoRAConfig) and not is_quantized(model):
            raise SwiftError(
                "QLoRAConfig needs a quantized model, but this one was loaded in full precision. Load it "
                "quantized with SwiftModel.from_pretrained(path, config=SwiftConfig(lora=QLoRAConfig(...))), "
                "or SwiftModel.from_pretrained(path, quantization_config=QLoRAConfig().to_quantization_config()) "
                "and then apply the config; or use LoRAConfig for plain LoRA")
        if _is_peft(model) and config.tuner_type == "lora":
            raise SwiftError("this model already carries LoRA adapters; wrap the base model instead, or keep "
                             "training the loaded adapter with SwiftModel(model) and no config")
        model = prepare_model(
            model, tuner_type=config.tuner_type, lora=lora,
            freeze_parameters_ratio=config.freeze_parameters_ratio,
            freeze_parameters=config.freeze_parameters, trainable_parameters=config.trainable_parameters)
        if lora is not None and lora.modifies_base_weights:
            self._initial_adapter = snapshot_adapter(model)
        return model

    # ----- delegation -------------------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self.__dict__.get("_modules", {}).get("model")
            if inner is None or name.startswith("__"):
                raise
            return getattr(inner, name)

    def unwrap(self) -> nn.Module:
        """The wrapped model: a `peft.PeftModel` in LoRA mode, else the transformers model."""
        return self._modules["model"]

    @property
    def is_peft(self) -> bool:
        """True when the wrapped model carries peft adapters."""
        return _is_peft(self.unwrap())

    @property
    def _hf_peft_config_loaded(self) -> bool:
        # transformers' Trainer refuses a quantized model unless adapters are attached, and detects them
        # on the object it is given; this is how a SwiftModel says it has them.
        return self.is_peft

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, pixel_values: torch.Tensor | None = None,
                image_grid_thw: torch.Tensor | None = None, pixel_values_videos: torch.Tensor | None = None,
                video_grid_thw: torch.Tensor | None = None, **kwargs: Any) -> Any:
        """Run the wrapped model. Named inputs that are None are not passed on."""
        named = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids,
                 "inputs_embeds": inputs_embeds, "labels": labels, "pixel_values": pixel_values,
                 "image_grid_thw": image_grid_thw, "pixel_values_videos": pixel_values_videos,
                 "video_grid_thw": video_grid_thw}
        kwargs.update({k: v for k, v in named.items() if v is not None})
        return self.unwrap()(**kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """`generate` of the wrapped model (adapters active)."""
        return self.unwrap().generate(*args, **kwargs)

    def print_trainable_parameters(self) -> None:
        """Print e.g. "trainable 1.2M / 494.0M (0.24%)"."""
        print(parameter_summary(self))

    # ----- state ------------------------------------------------------------------------------------

    def state_dict(self, *args: Any, destination: dict | None = None, prefix: str = "",
                   keep_vars: bool = False) -> dict[str, Any]:
        """The tensors worth saving.

        LoRA mode: only adapter tensors (LoRA matrices, DoRA magnitudes, modules_to_save and anything
        trainable), so checkpoints are small. Otherwise every tensor, with tied weights (the same tensor
        under two names, e.g. embed_tokens / lm_head) kept once, so safetensors can save it.
        `load_state_dict` accepts exactly these dicts; `unwrap().state_dict()` gives everything.
        """
        full = super().state_dict(*args, prefix=prefix, keep_vars=keep_vars)
        if self.is_peft:
            trainable = {prefix + n for n, p in self.named_parameters() if p.requires_grad}
            keep = [k for k in full if k in trainable or any(m in k for m in _ADAPTER_MARKERS)]
        else:
            keep, seen = [], set()
            for k, v in full.items():
                ident = _alias_key(v)
                if ident is not None and ident in seen:
                    continue
                if ident is not None:
                    seen.add(ident)
                keep.append(k)
        out = collections.OrderedDict((k, full[k]) for k in keep)
        if hasattr(full, "_metadata"):
            out._metadata = full._metadata
        if destination is not None:
            destination.update(out)
            return destination
        return out

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True, assign: bool = False):
        """Load a dict like `state_dict()` returns; `strict` checks the keys `state_dict()` would hold."""
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        expected = set(self.state_dict().keys())
        missing = [k for k in result.missing_keys if k in expected]
        unexpected = list(result.unexpected_keys)
        if strict and (missing or unexpected):
            raise RuntimeError(
                f"Error(s) in loading state_dict for SwiftModel: missing keys {missing[:5]}"
                f"{' ...' if len(missing) > 5 else ''}, unexpected keys {unexpected[:5]}"
                f"{' ...' if len(unexpected) > 5 else ''}")
        return _IncompatibleKeys(missing, unexpected)

    def save_pretrained(self, save_directory: str | os.PathLike, *, save_tokenizer: bool = True,
                        convert_initial: bool = True, **kwargs: Any) -> None:
        """Save a peft adapter folder (LoRA) or a full model folder, plus the tokenizer when there is one.

        Args:
            save_directory: Output folder (created).
            save_tokenizer: Also save `self.tokenizer` there.
            convert_initial: For PiSSA/OLoRA, save the adapter converted to apply to the original base
                (see the class docstring).
            **kwargs: Passed to the wrapped model's `save_pretrained` (`safe_serialization`, ...).
        """
        save_directory = str(save_directory)
        inner = self.unwrap()
        if self._initial_adapter and convert_initial and self.is_peft:
            save_converted_adapter(inner, self._initial_adapter, save_directory, **kwargs)
        else:
            inner.save_pretrained(save_directory, **kwargs)
        if save_tokenizer and self.tokenizer is not None and hasattr(self.tokenizer, "save_pretrained"):
            self.tokenizer.save_pretrained(save_directory)

    # ----- loading ----------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, model_id_or_path: str | os.PathLike, *, quantization_config: Any = None,
                        config: SwiftConfig | None = None, torch_dtype: Any = None, device_map: Any = None,
                        trust_remote_code: bool = False, use_hf: bool | None = None,
                        **kwargs: Any) -> SwiftModel:
        """Load a model (or a base model plus a saved adapter) and prepare it for training.

        Args:
            model_id_or_path: A hub id, a local model folder, or a peft adapter folder (one holding
                adapter_config.json: its base model is loaded, then the adapter).
            quantization_config: A `swift.QuantizationConfig` or a transformers quantization config (e.g.
                `BitsAndBytesConfig`). When None and `config.lora` is a `QLoRAConfig`, that config's
                `to_quantization_config()` is used. A folder that is already quantized needs none.
            config: Tuner settings applied after loading (None: no tuner, the model as loaded).
            torch_dtype: dtype of the weights: "bf16", "fp16", "fp32", "auto" (the config's) or a torch.dtype.
            device_map: Passed to the loader ("auto", "cpu", a dict, ...).
            trust_remote_code: Allow model code from the model folder.
            use_hf: Hub choice (None: the USE_HF environment default).
            **kwargs: `base_model=` overrides the base of an adapter folder; `is_trainable=` (default
                False, as in peft) keeps a loaded adapter trainable; the rest goes to
                `swift.models.loader.load_model_and_tokenizer` (`attn_impl`, `model_kwargs`, `revision`, ...).
        """
        path = Path(model_id_or_path)
        base_override = kwargs.pop("base_model", None)
        is_trainable = kwargs.pop("is_trainable", False)
        if quantization_config is None and config is not None and isinstance(config.lora, QLoRAConfig):
            quantization_config = config.lora.to_quantization_config()  # fails early without bitsandbytes
        from swift.quant.config import to_transformers_config

        quantization_config = to_transformers_config(quantization_config)

        from swift.models.loader import load_model_and_tokenizer

        # A compressed-tensors folder (GPTQ/AWQ/FP8) is unpacked when something will train or wrap its layers.
        kwargs.setdefault("dequantize", config is not None or (path / ADAPTER_CONFIG).is_file())
        load = dict(torch_dtype=torch_dtype, device_map=device_map, quantization_config=quantization_config,
                    trust_remote_code=trust_remote_code, use_hf=use_hf, **kwargs)
        if not (path.is_dir() and (path / ADAPTER_CONFIG).is_file()):
            model, tokenizer, model_dir = load_model_and_tokenizer(str(model_id_or_path), **load)
            return cls(model, config, tokenizer=tokenizer, model_dir=model_dir)

        import peft

        if config is not None and config.tuner_type != "lora":
            raise SwiftError(f"{path} is a LoRA adapter folder; tuner_type {config.tuner_type!r} does not apply")
        if config is not None and config.lora is not None and not isinstance(config.lora, QLoRAConfig):
            logger.warning("%s already holds LoRA settings; the LoRAConfig passed is ignored", path)
        base = base_override or read_json(path / ADAPTER_CONFIG).get("base_model_name_or_path")
        if not base:
            raise SwiftError(f"{path / ADAPTER_CONFIG} does not name its base model (base_model_name_or_path); "
                             "pass SwiftModel.from_pretrained(adapter_dir, base_model=<model id or folder>)")
        model, tokenizer, model_dir = load_model_and_tokenizer(str(base), **load)
        peft_model = peft.PeftModel.from_pretrained(model, str(path), is_trainable=is_trainable)
        logger.info("loaded adapter %s onto %s (%s)", path, base, "trainable" if is_trainable else "frozen")
        return cls(peft_model, None, tokenizer=tokenizer, model_dir=model_dir)


def _is_peft(model: nn.Module) -> bool:
    import peft

    return isinstance(model, (peft.PeftModel, peft.PeftMixedModel))


def _alias_key(t: Any) -> tuple | None:
    """Identity of a tensor's exact view, to spot the same weight stored under two names."""
    if not isinstance(t, torch.Tensor) or t.device.type == "meta" or t.numel() == 0:
        return None
    return (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)


def save_converted_adapter(peft_model: nn.Module, initial_adapter: dict[str, bytes], save_directory: str,
                           **kwargs: Any) -> None:
    """Save a PiSSA/OLoRA adapter converted to apply to the ORIGINAL base weights (plain LoRA of rank 2r).

    `initial_adapter` is what `snapshot_adapter` returned right after the adapter was initialised."""
    with tempfile.TemporaryDirectory(prefix="swift_initial_adapter_") as tmp:
        for name, data in initial_adapter.items():
            Path(tmp, name).write_bytes(data)
        kwargs.setdefault("path_initial_model_for_weight_conversion", tmp)
        peft_model.save_pretrained(str(save_directory), **kwargs)


def snapshot_adapter(peft_model: nn.Module) -> dict[str, bytes]:
    """The freshly initialised adapter's files, kept in memory for PiSSA/OLoRA conversion on save."""
    import copy

    adapter = peft_model.active_adapter
    original = peft_model.peft_config[adapter]
    # peft expects the initial adapter saved as if it were a default-initialised one.
    peft_model.peft_config[adapter] = copy.deepcopy(original)
    peft_model.peft_config[adapter].init_lora_weights = True
    try:
        with tempfile.TemporaryDirectory(prefix="swift_initial_adapter_") as tmp:
            peft_model.save_pretrained(tmp)
            return {f.name: f.read_bytes() for f in Path(tmp).iterdir() if f.is_file()}
    finally:
        peft_model.peft_config[adapter] = original

"""Export quantizers writing compressed-tensors checkpoints: GPTQ, AWQ, FP8 (`swift export --quant_method`).

    report = quantize_compressed(model, method="gptq", bits=4, group_size=128, calibration=samples)
    save_compressed(model, "out/")  # safetensors + config.json with compressed-tensors' quantization_config

The algorithms are ours (`swift.quant.gptq`, `swift.quant.awq`, FP8 round-to-nearest); the checkpoint format,
packing and loading are the `compressed-tensors` library's, so vLLM serves the folder and transformers loads
it on CPU with that package installed.

GPTQ and AWQ calibrate layer by layer, which bounds memory by one decoder layer's activations: the inputs of
the first decoder layer are captured for every calibration sample (a pre-hook stops the model there), then
each layer in turn collects statistics on its Linears, is quantized, and is re-run with its quantized weights
to give the next layer's inputs. Quantized weights are written back as their dequantized values (exactly on
the integer grid), so the compressor's rounding reproduces the solver's integer choices and the in-memory
model's compressed-tensors fake-quant forward is idempotent: every weight is quantized once.
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from swift.quant.awq import awq_search_scale, find_awq_mappings, fold_awq_scale
from swift.quant.gptq import CholeskyError, gptq_quantize_weight, rtn_quantize_weight
from swift.utils.errors import ArgumentError, MissingExtraError, SwiftError

__all__ = ["quantize_compressed", "save_compressed", "METHOD_BITS"]

METHOD_BITS: dict[str, tuple[int, ...]] = {"gptq": (4, 8), "awq": (4,), "fp8": (8,)}
FP8_MAX = 448.0  # largest finite float8_e4m3fn


class _StopForward(Exception):
    """Raised by the capture hook to stop the model after the first decoder layer's inputs are recorded."""


def _require_compressed_tensors() -> None:
    try:
        import compressed_tensors  # noqa: F401
    except ImportError as e:
        raise MissingExtraError("compressed-tensors", "quant", "quantized export") from e


def _validate(method: str, bits: int, group_size: int | None, calibration: Sequence[torch.Tensor],
              sym: bool | None) -> tuple[str, bool]:
    method = str(method).lower()
    if method not in METHOD_BITS:
        raise ArgumentError("quant_method",
                            f"unknown method '{method}'; choose one of {', '.join(METHOD_BITS)}.")
    if bits not in METHOD_BITS[method]:
        allowed = " or ".join(str(b) for b in METHOD_BITS[method])
        raise ArgumentError("quant_bits", f"{method} supports {allowed} bits, got {bits}.")
    if method != "fp8" and group_size is not None and (group_size == 0 or group_size < -1):
        raise ArgumentError("group_size", f"must be a positive number of columns or -1 (per channel), "
                                          f"got {group_size}.")
    if method in ("gptq", "awq") and len(calibration) == 0:
        raise ArgumentError("dataset", f"{method} needs calibration samples (tokenized input_ids); pass a "
                                       f"calibration dataset, or use --quant_method fp8 which needs none.")
    if sym is None:
        sym = method != "awq"
    return method, bool(sym)


def _matches(name: str, pattern: str) -> bool:
    """`pattern` is a module name, a dotted suffix of one ("lm_head", "mlp.down_proj") or "re:<regex>"."""
    if pattern.startswith("re:"):
        return re.match(pattern[3:], name) is not None
    return name == pattern or name.endswith("." + pattern)


def _select_linears(model: nn.Module, method: str, group_size: int | None,
                    ignore: Sequence[str]) -> tuple[dict[str, nn.Linear], dict[str, str]]:
    """The Linears to quantize, and the ones kept in full precision for a reason the user should see."""
    targets: dict[str, nn.Linear] = {}
    skipped: dict[str, str] = {}
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    embed_weight = getattr(embed, "weight", None)
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Linear):
            continue
        if any(_matches(name, p) for p in ignore):
            continue
        if embed_weight is not None and mod.weight is embed_weight:
            skipped[name] = "its weight is tied to the input embeddings"
        elif method != "fp8" and group_size and group_size > 0 and mod.in_features % group_size:
            skipped[name] = (f"in_features {mod.in_features} is not divisible by group_size {group_size}; "
                             f"kept in full precision")
        else:
            targets[name] = mod
    return targets, skipped


def _find_decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """The first nn.ModuleList whose length is the config's num_hidden_layers."""
    config = getattr(model, "config", None)
    n = getattr(config, "num_hidden_layers", None)
    if n is None and hasattr(config, "get_text_config"):
        n = getattr(config.get_text_config(), "num_hidden_layers", None)
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) == n and n:
            return name, mod
    return None


def _as_batch(ids: torch.Tensor, device: torch.device) -> torch.Tensor:
    ids = torch.as_tensor(ids)
    if ids.dim() == 1:
        ids = ids[None]
    if ids.dim() != 2 or ids.shape[0] != 1 or ids.shape[1] == 0:
        raise ArgumentError("dataset", f"each calibration sample must be a non-empty 1-D or [1, L] tensor of "
                                       f"input_ids, got shape {tuple(ids.shape)}.")
    return ids.long().to(device)


def _capture_layer_inputs(model: nn.Module, first_layer: nn.Module,
                          calibration: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, tuple, dict]]:
    """Run the model up to its first decoder layer for each sample; return (hidden, args, kwargs) per sample.

    The kwargs carry what the layer needs and the model computes once (attention mask, position ids,
    position_embeddings from the rotary module), so later layers can be run on their own.
    """
    captured: list[tuple[torch.Tensor, tuple, dict]] = []

    def hook(_mod: nn.Module, args: tuple, kwargs: dict) -> None:
        kwargs = dict(kwargs)
        hidden = args[0] if args else kwargs.pop("hidden_states")
        captured.append((hidden.detach(), tuple(args[1:]), kwargs))
        raise _StopForward

    device = next(model.parameters()).device
    handle = first_layer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for ids in calibration:
            try:
                model(input_ids=_as_batch(ids, device), use_cache=False)
            except _StopForward:
                pass
    finally:
        handle.remove()
    return captured


def _run_layer(layer: nn.Module, inputs: list[tuple[torch.Tensor, tuple, dict]]) -> list[torch.Tensor]:
    outs = []
    for hidden, args, kwargs in inputs:
        out = layer(hidden, *args, **kwargs)
        outs.append((out[0] if isinstance(out, tuple) else out).detach())
    return outs


class _InputStats:
    """Forward-hook statistics of a Linear's inputs: Σ x xᵀ (GPTQ's Hessian, AWQ's Gram matrix) and Σ |x|."""

    def __init__(self, with_abs: bool):
        self.with_abs = with_abs
        self.n = 0
        self.xxt: torch.Tensor | None = None
        self.abs_sum: torch.Tensor | None = None

    def __call__(self, _mod: nn.Module, inputs: tuple, _output: Any) -> None:
        x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).float()
        self.n += x.shape[0]
        self.xxt = x.T @ x if self.xxt is None else self.xxt.addmm_(x.T, x)
        if self.with_abs:
            self.abs_sum = x.abs().sum(0) if self.abs_sum is None else self.abs_sum + x.abs().sum(0)


def _collect(layer: nn.Module, linears: dict[str, nn.Linear], inputs: list,
             with_abs: bool = False) -> dict[str, _InputStats]:
    stats = {name: _InputStats(with_abs) for name in linears}
    handles = [lin.register_forward_hook(stats[name]) for name, lin in linears.items()]
    try:
        _run_layer(layer, inputs)
    finally:
        for h in handles:
            h.remove()
    return stats


def _gptq_layer(layer: nn.Module, linears: dict[str, nn.Linear], inputs: list, *, bits: int, group_size: int,
                sym: bool, qparams: dict, fallback: dict[str, str]) -> None:
    stats = _collect(layer, linears, inputs)
    for name, lin in linears.items():
        scale_dtype = lin.weight.dtype
        try:
            hessian = stats[name].xxt * (2.0 / stats[name].n)
            deq, scale, zero = gptq_quantize_weight(lin.weight, hessian, bits=bits, group_size=group_size,
                                                    sym=sym, scale_dtype=scale_dtype)
        except CholeskyError as e:
            fallback[name] = f"GPTQ failed ({e}); quantized with round-to-nearest"
            deq, scale, zero = rtn_quantize_weight(lin.weight, bits=bits, group_size=group_size, sym=sym,
                                                   scale_dtype=scale_dtype)
        lin.weight.data.copy_(deq.to(lin.weight.dtype))
        qparams[name] = (scale, zero)
        del stats[name]


def _awq_layer(layer: nn.Module, prefix: str, linears: dict[str, nn.Linear], inputs: list, *, bits: int,
               group_size: int, sym: bool, qparams: dict, awq_log: dict) -> None:
    mappings = [m for m in find_awq_mappings(layer, prefix) if all(n in linears for n in m.names)]
    heads = {m.names[0]: m.linears[0] for m in mappings}
    stats = _collect(layer, heads, inputs, with_abs=True)
    for m in mappings:
        st = stats[m.names[0]]
        s, alpha, err, rtn_err = awq_search_scale(st.xxt / st.n, st.abs_sum / st.n,
                                                  [lin.weight for lin in m.linears], bits=bits,
                                                  group_size=group_size)
        fold_awq_scale(m.prev, m.linears, s)
        awq_log[m.prev_name] = {"alpha": alpha, "mse": err, "rtn_mse": rtn_err}
    del stats
    for name, lin in linears.items():
        _rtn_into(lin, name, bits=bits, group_size=group_size, sym=sym, qparams=qparams)


def _rtn_into(lin: nn.Linear, name: str, *, bits: int, group_size: int, sym: bool, qparams: dict) -> None:
    deq, scale, zero = rtn_quantize_weight(lin.weight, bits=bits, group_size=group_size, sym=sym,
                                           scale_dtype=lin.weight.dtype)
    lin.weight.data.copy_(deq.to(lin.weight.dtype))
    qparams[name] = (scale, zero)


def _fp8_into(lin: nn.Linear, name: str, qparams: dict) -> None:
    w = lin.weight.detach().float()
    scale = w.abs().amax(dim=1, keepdim=True) / FP8_MAX
    scale = torch.where(scale > 0, scale, torch.ones_like(scale)).to(lin.weight.dtype).float()
    deq = (w / scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn).float() * scale
    lin.weight.data.copy_(deq.to(lin.weight.dtype))
    qparams[name] = (scale, torch.zeros_like(scale))


def _calibrate(model: nn.Module, method: str, targets: dict[str, nn.Linear],
               calibration: Sequence[torch.Tensor], *, bits: int, group_size: int, sym: bool,
               progress: bool, qparams: dict, fallback: dict[str, str], awq_log: dict) -> None:
    """Layer-wise sequential GPTQ / AWQ over the decoder layers; Linears outside them get RTN."""
    from tqdm.auto import tqdm

    found = _find_decoder_layers(model)
    if found is None:
        raise SwiftError(f"{method} could not find the decoder layers of {type(model).__name__} (an "
                         f"nn.ModuleList of config.num_hidden_layers modules); use --quant_method fp8.")
    layers_name, layers = found
    inputs = _capture_layer_inputs(model, layers[0], calibration)
    if len(inputs) != len(calibration):
        raise SwiftError(f"{method}: the model did not reach its first decoder layer for every calibration "
                         f"sample ({len(inputs)} of {len(calibration)}).")
    done: set[str] = set()
    for i, layer in enumerate(tqdm(layers, desc=f"{method.upper()} layers", disable=not progress)):
        prefix = f"{layers_name}.{i}." if layers_name else f"{i}."
        lin = {prefix + n: m for n, m in layer.named_modules() if prefix + n in targets}
        kwargs = dict(bits=bits, group_size=group_size, sym=sym, qparams=qparams)
        if method == "gptq":
            _gptq_layer(layer, lin, inputs, fallback=fallback, **kwargs)
        else:
            _awq_layer(layer, prefix, lin, inputs, awq_log=awq_log, **kwargs)
        done.update(lin)
        if i + 1 < len(layers):
            outs = _run_layer(layer, inputs)
            inputs = [(h, a, k) for h, (_, a, k) in zip(outs, inputs, strict=True)]
    for name, mod in targets.items():
        if name not in done:
            fallback[name] = "outside the decoder layers (no calibration statistics); round-to-nearest"
            _rtn_into(mod, name, bits=bits, group_size=group_size, sym=sym, qparams=qparams)


def _attach_scheme(model: nn.Module, method: str, bits: int, group_size: int, sym: bool,
                   targets: dict[str, nn.Linear], qparams: dict) -> None:
    """Apply the compressed-tensors scheme to exactly `targets` and store our scales / zero points in it."""
    from compressed_tensors.quantization import (
        QuantizationArgs,
        QuantizationConfig,
        QuantizationScheme,
        QuantizationStatus,
        apply_quantization_config,
        preset_name_to_scheme,
    )

    if method == "fp8":
        scheme = preset_name_to_scheme("FP8_DYNAMIC", ["Linear"])
    else:
        weights = QuantizationArgs(num_bits=bits, type="int", symmetric=sym,
                                   group_size=group_size if group_size and group_size > 0 else -1)
        scheme = QuantizationScheme(targets=["Linear"], weights=weights)
    ignore = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n not in targets]
    config = QuantizationConfig(config_groups={"group_0": scheme}, ignore=ignore)
    apply_quantization_config(model, config, show_progress=False)
    for name, mod in targets.items():
        scale, zero = qparams[name]
        if tuple(mod.weight_scale.shape) != tuple(scale.shape):
            raise RuntimeError(f"{name}: scale shape {tuple(scale.shape)} does not match compressed-tensors' "
                               f"{tuple(mod.weight_scale.shape)}")
        mod.weight_scale.data.copy_(scale.to(mod.weight_scale.dtype))
        zp = getattr(mod, "weight_zero_point", None)
        if zp is not None:
            zp.data.copy_(zero.to(zp.dtype))
        mod.quantization_status = QuantizationStatus.FROZEN


@torch.no_grad()
def quantize_compressed(model: nn.Module, *, method: str, bits: int = 4, group_size: int = 128,
                        calibration: Sequence[torch.Tensor] = (), sym: bool | None = None,
                        ignore: Sequence[str] = ("lm_head",), progress: bool = True) -> dict[str, Any]:
    """Quantize a causal LM in place and leave it ready for `save_compressed`.

    Args:
        model: A transformers causal LM (Llama / Qwen2 / Mistral-style decoder layers for gptq and awq).
        method: "gptq" (int4/int8 weights, group-wise, calibration needed), "awq" (int4 weights, asymmetric by
            default, calibration needed) or "fp8" (float8_e4m3 per-channel weights + dynamic per-token
            activations = compressed-tensors FP8_DYNAMIC; calibration not needed).
        bits: gptq: 4 or 8; awq: 4; fp8: 8.
        group_size: Input columns per scale for gptq / awq; -1 for one scale per output channel. Linears whose
            in_features it does not divide stay in full precision (listed in report["skipped"]).
        calibration: input_ids tensors (1-D or [1, L]), already tokenized; run one at a time.
        sym: Symmetric integer grid; default True for gptq, False for awq (ignored by fp8).
        ignore: Linears kept in full precision: module names, dotted name suffixes or "re:<regex>".
        progress: Show a progress bar over the decoder layers.

    Returns:
        {"method", "bits", "group_size", "quantized": [module names], "skipped": {name: reason},
        "fallback": {name: reason} (Linears quantized with plain round-to-nearest instead of the method),
        "awq": {previous op: {"alpha", "mse", "rtn_mse"}} (awq only)}. The model still runs afterwards, with
        fake-quantized weights (and, for fp8, dynamically quantized activations), so perplexity can be
        measured.

    Raises:
        ArgumentError: unknown method, unsupported bits, bad group_size, or gptq/awq without calibration.
        MissingExtraError: compressed-tensors is not installed.
    """
    method, sym = _validate(method, bits, group_size, calibration, sym)
    _require_compressed_tensors()
    if method == "fp8":
        group_size = None
    targets, skipped = _select_linears(model, method, group_size, ignore)
    if not targets:
        why = "; ".join(f"{n}: {r}" for n, r in list(skipped.items())[:3]) or "every Linear matches --ignore"
        raise ArgumentError("group_size" if skipped else "ignore",
                            f"no Linear layer is left to quantize ({why}).")
    qparams: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    fallback: dict[str, str] = {}
    awq_log: dict[str, dict[str, float]] = {}
    was_training = model.training
    model.eval()
    try:
        if method == "fp8":
            for name, lin in targets.items():
                _fp8_into(lin, name, qparams)
        else:
            _calibrate(model, method, targets, calibration, bits=bits, group_size=group_size, sym=sym,
                       progress=progress, qparams=qparams, fallback=fallback, awq_log=awq_log)
        _attach_scheme(model, method, bits, group_size, sym, targets, qparams)
    finally:
        model.train(was_training)
    report: dict[str, Any] = {"method": method, "bits": bits, "group_size": group_size,
                              "quantized": list(targets), "skipped": skipped, "fallback": fallback}
    if method == "awq":
        report["awq"] = awq_log
    return report


def save_compressed(model: nn.Module, out_dir: str | os.PathLike) -> None:
    """Compress (pack) a model quantized by `quantize_compressed` and write it as a compressed-tensors folder.

    Writes the safetensors weights and config.json with its `quantization_config` (quant_method
    "compressed-tensors"). The model's weights are replaced by their packed form in memory; it still runs (it
    decompresses on its next forward). Tokenizer files are the caller's job.

    Raises:
        SwiftError: the model has no compressed-tensors quantization (quantize_compressed was not called).
        MissingExtraError: compressed-tensors is not installed.
    """
    _require_compressed_tensors()
    from compressed_tensors.compressors import ModelCompressor

    if not any(hasattr(m, "quantization_scheme") for m in model.modules()):
        raise SwiftError("save_compressed: the model is not quantized; call quantize_compressed first.")
    os.makedirs(out_dir, exist_ok=True)
    compressor = ModelCompressor.from_pretrained_model(model, quantization_format=None)
    compressor.compress_model(model, skip_compressed=True)
    model.save_pretrained(str(out_dir))
    compressor.update_config(str(out_dir))
    if _has_packed_zero_points(compressor.quantization_config):
        _mark_dequantize_on_load(out_dir)


def _has_packed_zero_points(config: Any) -> bool:
    groups = getattr(config, "config_groups", None) or {}
    return any(g.weights is not None and not g.weights.symmetric and g.weights.type == "int"
               for g in groups.values())


def _mark_dequantize_on_load(out_dir: str | os.PathLike) -> None:
    """Ask transformers to dequantize this checkpoint at load time (``"dequantize": true``).

    compressed-tensors 0.20.1 builds the empty (meta) modules transformers loads into with the *unpacked* zero
    point shape [out, groups], while the checkpoint stores it packed [out / (32 / bits), groups], so an
    asymmetric pack-quantized folder fails to load in compressed form ("size mismatch ... weight_zero_point").
    transformers' dequantize path unpacks it correctly. vLLM reads only the keys it knows and ignores this
    one.
    """
    import json

    path = os.path.join(str(out_dir), "config.json")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    data["quantization_config"]["dequantize"] = True
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)

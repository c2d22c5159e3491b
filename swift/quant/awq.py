"""AWQ: activation-aware weight quantization (Lin et al., 2023), scale search and folding in pure torch.

A few input channels of a Linear carry much larger activations than the rest, and the weights that multiply
them matter most. AWQ protects them by scaling: ``y = W x = (W · diag(s)) (x / s)``. Multiplying the salient
input columns of W by s > 1 before quantization shrinks their relative rounding error; the ``1 / s`` is folded
into the op that produces x (an RMSNorm/LayerNorm weight, or the output rows of the previous Linear), so the
float model is unchanged and nothing extra runs at inference.

Per mapping (previous op -> the Linears that read its output) the scale is ``s = mean|x|^α`` per input
channel, normalised so that max(s)·min(s) = 1, with α searched on a grid in [0, 1). The loss is the mean
squared error of the mapping's Linear outputs (all of them, concatenated) over all calibration tokens,
quantized-with-scale versus full precision, computed from the inputs' Gram matrix. It is measured on the
Linears, not on the whole decoder block: cheaper, and it needs no re-run of attention. α = 0 gives s = 1, i.e.
plain round-to-nearest, so the search never does worse than RTN on the calibration loss. The paper's extra
weight-clipping search is not done.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from swift.quant.gptq import rtn_quantize_weight

__all__ = ["AwqMapping", "find_awq_mappings", "awq_search_scale", "fold_awq_scale", "awq_output_error",
           "gram_matrix"]


@dataclass
class AwqMapping:
    """One previous op and the Linears that consume its output (they share the same input x)."""

    prev_name: str
    prev: nn.Module
    names: list[str]
    linears: list[nn.Linear]


def _norm_is_foldable(module: nn.Module | None, width: int) -> bool:
    if module is None or "gemma" in type(module).__name__.lower():
        # Gemma's RMSNorm multiplies by (1 + weight): dividing its weight by s would not divide the output.
        return False
    weight = getattr(module, "weight", None)
    return isinstance(weight, torch.Tensor) and weight.shape == (width,)


def find_awq_mappings(layer: nn.Module, prefix: str = "") -> list[AwqMapping]:
    """The AWQ mappings of a Llama/Qwen2/Mistral-style decoder layer, found by module names.

    input_layernorm -> q/k/v_proj; v_proj -> o_proj (only when v's outputs are o's inputs, i.e. no
    grouped-query attention); post_attention_layernorm -> gate/up_proj; up_proj -> down_proj. Mappings whose
    modules are missing are left out (their Linears are still quantized, with plain RTN).
    """
    mods = dict(layer.named_modules())
    attn = next((n for n in ("self_attn", "attention", "attn") if n in mods), None)
    mlp = next((n for n in ("mlp", "feed_forward") if n in mods), None)
    out: list[AwqMapping] = []

    def add(prev: str, names: list[str]) -> None:
        if prev not in mods or not all(isinstance(mods.get(n), nn.Linear) for n in names):
            return
        linears = [mods[n] for n in names]
        width = linears[0].in_features
        if any(lin.in_features != width for lin in linears):
            return
        prev_mod = mods[prev]
        if isinstance(prev_mod, nn.Linear):
            if prev_mod.out_features != width:
                return
        elif not _norm_is_foldable(prev_mod, width):
            return
        out.append(AwqMapping(prefix + prev, prev_mod, [prefix + n for n in names], linears))

    if attn is not None:
        add("input_layernorm", [f"{attn}.q_proj", f"{attn}.k_proj", f"{attn}.v_proj"])
        add(f"{attn}.v_proj", [f"{attn}.o_proj"])
    if mlp is not None:
        add("post_attention_layernorm", [f"{mlp}.gate_proj", f"{mlp}.up_proj"])
        add(f"{mlp}.up_proj", [f"{mlp}.down_proj"])
    return out


def awq_output_error(gram: torch.Tensor, weights: list[torch.Tensor], scale: torch.Tensor | None, *,
                     bits: int, group_size: int | None) -> float:
    """Mean squared error of ``x Wᵀ`` against ``(x / s) Q(W · diag(s))ᵀ``, over tokens and output channels.

    Computed from the inputs' Gram matrix G = mean_t x_t x_tᵀ instead of the tokens themselves: with
    D = Q(W · diag(s)) · diag(1 / s) − W, the error is mean_t ||D x_t||² / out = Σ (D G) ∘ D / out. That
    covers every calibration token at the cost of one [out, in] x [in, in] product, and stores no
    activations.

    Args:
        gram: G [in, in] float32 (see `gram_matrix`).
        weights: Weights [out_i, in] of the Linears reading x (concatenated along the outputs).
        scale: Per-input-channel scale s [in]; None for plain RTN.
        bits: Integer bits (asymmetric group RTN).
        group_size: Columns per scale (None / <= 0: per output channel).
    """
    w = torch.cat([wi.detach().float() for wi in weights], dim=0)
    if scale is None:
        deq, _, _ = rtn_quantize_weight(w, bits=bits, group_size=group_size, sym=False)
    else:
        deq, _, _ = rtn_quantize_weight(w * scale[None, :], bits=bits, group_size=group_size, sym=False)
        deq = deq / scale[None, :]
    diff = deq - w
    return (torch.sum((diff @ gram) * diff) / w.shape[0]).item()


def gram_matrix(x: torch.Tensor) -> torch.Tensor:
    """G = mean_t x_t x_tᵀ of inputs x [..., in], float32."""
    x = x.reshape(-1, x.shape[-1]).float()
    return x.T @ x / x.shape[0]


@torch.no_grad()
def awq_search_scale(gram: torch.Tensor, x_absmean: torch.Tensor, weights: list[torch.Tensor], *,
                     bits: int = 4, group_size: int | None = 128,
                     n_grid: int = 20) -> tuple[torch.Tensor, float, float, float]:
    """Grid-search the AWQ scale of one mapping.

    Args:
        gram: G = mean_t x_t x_tᵀ of the Linears' inputs over the calibration tokens [in, in], float32.
        x_absmean: mean |x| per input channel over the calibration tokens [in].
        weights: The Linears' weights [out_i, in].
        bits: Integer bits of the asymmetric group RTN the weights will get.
        group_size: Columns per scale (None / <= 0: per output channel).
        n_grid: Number of α values, α = i / n_grid for i in 0..n_grid-1.

    Returns:
        (s [in] float32, best α, its output MSE, the MSE of plain RTN (α = 0)).
    """
    gram = gram.float()
    w = torch.cat([wi.detach().float() for wi in weights], dim=0)
    base = x_absmean.float().clamp(min=1e-4)
    best = (torch.ones_like(base), 0.0, float("inf"))
    rtn_err = float("inf")
    for i in range(n_grid):
        alpha = i / n_grid
        s = base.pow(alpha)
        s = s / torch.sqrt(s.max() * s.min())
        err = awq_output_error(gram, [w], s, bits=bits, group_size=group_size)
        if i == 0:
            rtn_err = err
        if err < best[2]:
            best = (s, alpha, err)
    return best[0], best[1], best[2], rtn_err


@torch.no_grad()
def fold_awq_scale(prev: nn.Module, linears: list[nn.Linear], scale: torch.Tensor) -> None:
    """Fold s into the model: the previous op's output is divided by s, the Linears' input columns multiplied.

    Exact in real arithmetic (float rounding aside): a norm's weight (and bias) or a previous Linear's output
    rows (and bias) are divided by s; each consumer's weight columns are multiplied by s.
    """
    s = scale.float()
    if isinstance(prev, nn.Linear):
        prev.weight.copy_((prev.weight.float() / s[:, None]).to(prev.weight.dtype))
    else:
        prev.weight.copy_((prev.weight.float() / s).to(prev.weight.dtype))
    bias = getattr(prev, "bias", None)
    if isinstance(bias, torch.Tensor):
        bias.copy_((bias.float() / s).to(bias.dtype))
    for lin in linears:
        lin.weight.copy_((lin.weight.float() * s[None, :]).to(lin.weight.dtype))

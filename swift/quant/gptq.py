"""GPTQ weight solver (Frantar et al., 2022, "GPTQ: Accurate Post-Training Quantization for Generative
Pre-trained Transformers"), in pure torch.

For one Linear with weight W [out, in] and the Hessian H = 2/n Σ x xᵀ of its inputs, GPTQ quantizes W one
input column at a time and spreads each column's rounding error over the columns not yet quantized, weighted
by the inverse Hessian, so that ||XWᵀ − XŴᵀ|| is minimised rather than ||W − Ŵ||. Rows are independent.

The integer grid follows compressed-tensors' conventions so its compressor reproduces our integer choices: ``q
= clamp(round(w / scale + zero_point), qmin, qmax)`` and ``w ≈ (q − zero_point) · scale`` with the signed
range ``[−2^(b−1), 2^(b−1) − 1]`` (int4: [−8, 7]). Symmetric: zero_point = 0, scale = amax / ((qmax − qmin) /
2).
"""
from __future__ import annotations

import torch

__all__ = ["gptq_quantize_weight", "quant_params", "fake_quant", "rtn_quantize_weight", "int_range",
           "CholeskyError"]


class CholeskyError(RuntimeError):
    """The damped Hessian stayed non positive-definite; the caller falls back to round-to-nearest."""


def int_range(bits: int) -> tuple[int, int]:
    """The signed integer range of `bits`-bit quantization, e.g. (-8, 7) for 4 bits."""
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def quant_params(w: torch.Tensor, *, bits: int, sym: bool,
                 scale_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point per row of `w` ([rows, cols]) from its min/max.

    Args:
        w: Weights of one group (or a whole row for per-channel quantization), float.
        bits: Integer bit width.
        sym: Symmetric (zero point 0) or asymmetric ([min(w, 0), max(w, 0)] is mapped onto the grid).
        scale_dtype: When given, the scale is rounded to this dtype (the dtype the checkpoint stores) so the
            dequantized values computed here are the ones the stored scale reproduces.

    Returns:
        (scale [rows], zero_point [rows]) as float tensors; zero points are integers within the grid.
    """
    qmin, qmax = int_range(bits)
    if sym:
        amax = w.abs().amax(dim=1)
        scale = amax / ((qmax - qmin) / 2)
        zero = torch.zeros_like(scale)
    else:
        wmin = w.amin(dim=1).clamp(max=0)
        wmax = w.amax(dim=1).clamp(min=0)
        scale = (wmax - wmin) / (qmax - qmin)
    # An all-zero group would give scale 0 (division by zero); any positive scale represents it exactly.
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    if scale_dtype is not None:
        scale = scale.to(scale_dtype).float()
    if not sym:
        zero = torch.clamp(torch.round(qmin - wmin / scale), qmin, qmax)
    return scale, zero


def fake_quant(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    """Quantize then dequantize `w` with broadcastable `scale` / `zero` on the signed `bits`-bit grid."""
    qmin, qmax = int_range(bits)
    q = torch.clamp(torch.round(w / scale + zero), qmin, qmax)
    return (q - zero) * scale


def _group_size(group_size: int | None, columns: int) -> int:
    if group_size is None or group_size <= 0:
        return columns
    if columns % group_size:
        raise ValueError(f"in_features {columns} is not divisible by group_size {group_size}")
    return group_size


def rtn_quantize_weight(weight: torch.Tensor, *, bits: int, group_size: int | None, sym: bool = True,
                        scale_dtype: torch.dtype | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Round-to-nearest group quantization (the baseline, and GPTQ's fallback).

    Returns:
        (dequantized weight [out, in] float32, scale [out, in // group], zero_point [out, in // group]).
    """
    w = weight.detach().float()
    rows, cols = w.shape
    g = _group_size(group_size, cols)
    wg = w.reshape(rows * (cols // g), g)
    scale, zero = quant_params(wg, bits=bits, sym=sym, scale_dtype=scale_dtype)
    deq = fake_quant(wg, scale[:, None], zero[:, None], bits).reshape(rows, cols)
    return deq, scale.reshape(rows, cols // g), zero.reshape(rows, cols // g)


def _inverse_hessian_factor(h: torch.Tensor, percdamp: float, retries: int = 4) -> torch.Tensor:
    """Upper Cholesky factor of (H + λI)⁻¹, raising λ tenfold on each failure."""
    eye = torch.eye(h.shape[0], dtype=h.dtype, device=h.device)
    mean_diag = torch.mean(torch.diag(h)).item()
    damp = percdamp
    for _ in range(retries):
        try:
            lower = torch.linalg.cholesky(h + damp * mean_diag * eye)
            hinv = torch.cholesky_inverse(lower)
            return torch.linalg.cholesky(hinv, upper=True)
        except torch.linalg.LinAlgError:
            damp *= 10
    raise CholeskyError(f"the Hessian is not positive definite even with damping {damp / 10:g}")


@torch.no_grad()
def gptq_quantize_weight(weight: torch.Tensor, hessian: torch.Tensor, *, bits: int, group_size: int | None,
                         sym: bool = True, percdamp: float = 0.01, block_size: int = 128,
                         scale_dtype: torch.dtype | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantize one Linear weight with GPTQ (group-wise, no act-order).

    Columns are processed in their natural order (no act-order / ``desc_act``, which would permute groups and
    need a ``g_idx`` the compressed-tensors group format does not store). Each group's scale and zero point
    are computed when the solver enters the group, from the weights as updated by the error feedback so far
    (the paper's group variant). Columns whose Hessian diagonal is 0 (inputs that were always zero) are dead:
    their weights are set to 0, which costs nothing on the calibration data. Work is done in column blocks of
    `block_size` (rounded up to a multiple of the group size so a group never spans two blocks) with the
    paper's lazy batch update of the remaining columns.

    Args:
        weight: [out, in] weight, any float dtype; not modified.
        hessian: [in, in] H = 2/n Σ x xᵀ of the layer inputs (float32 recommended).
        bits: 4 or 8 (any 2..8 works).
        group_size: Columns per scale; None or <= 0 for one scale per output row. Must divide in_features.
        sym: Symmetric grid (zero point 0) when True.
        percdamp: Dampening added to the diagonal, as a fraction of mean(diag(H)); raised tenfold on failure.
        block_size: Columns per lazy-update block.
        scale_dtype: Dtype the scales are stored in (rounded to it during the solve).

    Returns:
        (dequantized weight [out, in] float32 — exactly ``(q - zero) * scale`` —, scale [out, in // g],
        zero_point [out, in // g]), scales and zero points as float32.

    Raises:
        CholeskyError: the damped Hessian could not be factored (the caller should fall back to RTN).
    """
    w = weight.detach().float().clone()
    rows, cols = w.shape
    g = _group_size(group_size, cols)
    h = hessian.detach().float().clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    hinv = _inverse_hessian_factor(h, percdamp)

    block = max(block_size, g)
    block = -(-block // g) * g
    deq = torch.zeros_like(w)
    scales = torch.zeros(rows, cols // g, dtype=torch.float32, device=w.device)
    zeros = torch.zeros_like(scales)
    for b1 in range(0, cols, block):
        b2 = min(b1 + block, cols)
        w1 = w[:, b1:b2].clone()
        err1 = torch.zeros_like(w1)
        hinv1 = hinv[b1:b2, b1:b2]
        scale = zero = None
        for i in range(b2 - b1):
            col = b1 + i
            if col % g == 0:
                scale, zero = quant_params(w1[:, i:i + g], bits=bits, sym=sym, scale_dtype=scale_dtype)
                scales[:, col // g], zeros[:, col // g] = scale, zero
            wc = w1[:, i]
            qc = fake_quant(wc, scale, zero, bits)
            deq[:, col] = qc
            err = (wc - qc) / hinv1[i, i]
            w1[:, i:] -= err[:, None] * hinv1[i, i:][None, :]
            err1[:, i] = err
        w[:, b2:] -= err1 @ hinv[b1:b2, b2:]
    return deq, scales, zeros

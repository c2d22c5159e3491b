"""GPTQ solver (swift.quant.gptq): lower output error than round-to-nearest, values on the integer grid."""
from __future__ import annotations

import pytest
import torch

from swift.quant.gptq import CholeskyError, gptq_quantize_weight, int_range, rtn_quantize_weight

pytestmark = pytest.mark.usefixtures("one_thread")


def _correlated_problem(seed: int = 0, out: int = 64, inp: int = 128, tokens: int = 2048):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(inp, inp, generator=g)  # x = z @ A: strongly correlated inputs, H far from identity
    x = torch.randn(tokens, inp, generator=g) @ mix
    w = torch.randn(out, inp, generator=g) * 0.05
    return x, w, 2.0 / tokens * x.T @ x


def _out_err(x: torch.Tensor, w: torch.Tensor, w_hat: torch.Tensor) -> float:
    return torch.linalg.norm(x @ w.T - x @ w_hat.T).item()


@pytest.mark.parametrize("bits,group_size,sym",
                         [(4, 32, True), (4, 32, False), (8, 128, True), (4, -1, True)])
def test_gptq_beats_rtn_on_output_error(bits, group_size, sym):
    x, w, h = _correlated_problem()
    deq, _, _ = gptq_quantize_weight(w, h, bits=bits, group_size=group_size, sym=sym)
    rtn, _, _ = rtn_quantize_weight(w, bits=bits, group_size=group_size, sym=sym)
    gptq_err, rtn_err = _out_err(x, w, deq), _out_err(x, w, rtn)
    assert gptq_err < 0.8 * rtn_err, (gptq_err, rtn_err)
    # also better on held-out inputs from the same distribution
    x2, _, _ = _correlated_problem(seed=0, tokens=4096)
    assert _out_err(x2[2048:], w, deq) < _out_err(x2[2048:], w, rtn)


@pytest.mark.parametrize("sym", [True, False])
def test_gptq_values_lie_on_the_grid(sym):
    x, w, h = _correlated_problem(out=16, inp=64, tokens=512)
    deq, scale, zero = gptq_quantize_weight(w, h, bits=4, group_size=16, sym=sym, block_size=32)
    assert scale.shape == zero.shape == (16, 4)
    q = deq.reshape(16, 4, 16) / scale[..., None] + zero[..., None]
    assert torch.allclose(q, q.round(), atol=1e-4)
    qmin, qmax = int_range(4)
    assert q.round().min() >= qmin and q.round().max() <= qmax
    assert torch.all(zero == zero.round())
    if sym:
        assert torch.all(zero == 0)


def test_dead_columns_and_scale_dtype():
    x, w, h = _correlated_problem(out=8, inp=32, tokens=256)
    h[:, 3] = 0
    h[3, :] = 0  # input channel 3 was always zero
    deq, scale, _ = gptq_quantize_weight(w, h, bits=4, group_size=16, scale_dtype=torch.bfloat16)
    assert torch.all(deq[:, 3] == 0)
    assert torch.equal(scale, scale.to(torch.bfloat16).float())
    assert torch.isfinite(deq).all()


def test_non_positive_definite_hessian_raises():
    w = torch.randn(4, 16)
    with pytest.raises(CholeskyError):
        gptq_quantize_weight(w, -torch.eye(16), bits=4, group_size=16)

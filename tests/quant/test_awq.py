"""AWQ (swift.quant.awq): folding is exact in float, and the searched scales beat plain RTN with outliers."""
from __future__ import annotations

import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from swift.quant.awq import awq_output_error, awq_search_scale, find_awq_mappings, fold_awq_scale, gram_matrix
from swift.quant.gptq import rtn_quantize_weight

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(arch: str, kv_heads: int = 4, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    kw = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=256)
    cls = (LlamaConfig, LlamaForCausalLM) if arch == "llama" else (Qwen2Config, Qwen2ForCausalLM)
    model = cls[1](cls[0](**kw)).eval()
    with torch.no_grad():  # random-init norms are all ones; make them non-trivial
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model


def _ids(n: int = 4, length: int = 48, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (1, length), generator=g) for _ in range(n)]


def test_mappings_respect_grouped_query_attention():
    full = find_awq_mappings(_model("llama", kv_heads=4).model.layers[0], "model.layers.0.")
    prevs = [m.prev_name.split(".")[-1] for m in full]
    assert prevs == ["input_layernorm", "v_proj", "post_attention_layernorm", "up_proj"]
    assert full[0].names == [f"model.layers.0.self_attn.{n}_proj" for n in "qkv"]
    gqa = find_awq_mappings(_model("qwen2", kv_heads=2).model.layers[0])
    assert "self_attn.v_proj" not in [m.prev_name for m in gqa]  # v out (32) != o in (64)
    assert len(gqa) == 3


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_folding_is_exact_in_float(arch):
    model = _model(arch, kv_heads=4 if arch == "llama" else 2)
    x = _ids(1)[0]
    with torch.no_grad():
        ref = model(x).logits
        g = torch.Generator().manual_seed(0)
        for i, layer in enumerate(model.model.layers):
            for m in find_awq_mappings(layer, f"model.layers.{i}."):
                s = torch.rand(m.linears[0].in_features, generator=g) * 3 + 0.25
                fold_awq_scale(m.prev, m.linears, s)
        out = model(x).logits
    assert not torch.equal(model.model.layers[0].input_layernorm.weight, torch.ones(64))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_search_never_worse_than_rtn_and_prefers_outlier_scaling():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1024, 128, generator=g)
    x[:, :4] *= 20  # a few outlier input channels
    w = torch.randn(96, 128, generator=g) * 0.05
    gram = gram_matrix(x)
    s, alpha, err, rtn_err = awq_search_scale(gram, x.abs().mean(0), [w], bits=4, group_size=32)
    assert alpha > 0 and err < 0.9 * rtn_err
    # the Gram-matrix loss is the token-level loss
    direct = rtn_quantize_weight(w * s, bits=4, group_size=32, sym=False)[0]
    token_mse = torch.mean(((x / s) @ direct.T - x @ w.T) ** 2).item()
    assert awq_output_error(gram, [w], s, bits=4, group_size=32) == pytest.approx(token_mse, rel=1e-3)


def test_awq_beats_rtn_with_outlier_channels():
    from swift.quant.compressed import quantize_compressed

    model = _model("llama", kv_heads=4)
    with torch.no_grad():
        for layer in model.model.layers:  # ×20 activations on a few channels of every norm's output
            layer.input_layernorm.weight[:3] *= 20
            layer.post_attention_layernorm.weight[5:8] *= 20
    held_out = torch.cat(_ids(2, 64, seed=7), dim=1)
    with torch.no_grad():
        ref = model(held_out).logits
        rtn = copy.deepcopy(model)
        for lin in rtn.model.layers.modules():
            if isinstance(lin, torch.nn.Linear):
                lin.weight.copy_(rtn_quantize_weight(lin.weight, bits=4, group_size=32, sym=False)[0])
        rtn_err = torch.mean((rtn(held_out).logits - ref) ** 2).item()
    report = quantize_compressed(model, method="awq", bits=4, group_size=32, calibration=_ids(8, 64),
                                 progress=False)
    with torch.no_grad():
        awq_err = torch.mean((model(held_out).logits - ref) ** 2).item()
    assert awq_err < 0.8 * rtn_err, (awq_err, rtn_err)
    assert any(v["alpha"] > 0 for v in report["awq"].values())
    assert len(report["awq"]) == 8  # 4 mappings x 2 layers (no GQA)

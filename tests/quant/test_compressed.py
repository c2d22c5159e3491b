"""End to end: quantize_compressed -> save_compressed -> plain transformers load, for gptq / awq / fp8."""
from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from swift.models.tiny import make_tiny_model
from swift.quant.compressed import quantize_compressed, save_compressed
from swift.utils.errors import ArgumentError, MissingExtraError, SwiftError

CASES = [("gptq", 4, "pack-quantized"), ("awq", 4, "pack-quantized"), ("fp8", 8, "float-quantized")]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("quant-tiny")
    return {arch: make_tiny_model(arch, root / arch, hidden_size=64, intermediate_size=128)
            for arch in ("qwen2", "llama")}


def _load(path: str) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def _calibration(vocab: int, n: int = 8, length: int = 32) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, vocab, (length,), generator=g) for _ in range(n)]  # 1-D samples


def _probe(vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (1, 24), generator=torch.Generator().manual_seed(3))


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (torch.linalg.norm(a - b) / torch.linalg.norm(b)).item()


def _roundtrip(src: str, out: Path, **kwargs) -> tuple[dict, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    model = _load(src)
    vocab = model.config.vocab_size
    x = _probe(vocab)
    with torch.no_grad():
        ref = model(x).logits
    report = quantize_compressed(model, calibration=_calibration(vocab), progress=False, **kwargs)
    with torch.no_grad():
        mem = model(x).logits
    save_compressed(model, out)
    loaded = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        disk = loaded(x).logits
    gen = loaded.generate(x[:, :6], max_new_tokens=3, do_sample=False)
    assert gen.shape == (1, 9)
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    return report, ref, mem, disk, config


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
@pytest.mark.parametrize("method,bits,fmt", CASES)
def test_roundtrip(tiny_dirs, tmp_path, arch, method, bits, fmt):
    report, ref, mem, disk, cfg = _roundtrip(tiny_dirs[arch], tmp_path / "q", method=method, bits=bits,
                                             group_size=32)
    assert report["method"] == method and report["bits"] == bits
    assert len(report["quantized"]) == 14 and not report["skipped"] and not report["fallback"]
    assert "lm_head" not in report["quantized"]
    torch.testing.assert_close(disk, mem, atol=1e-5, rtol=1e-5)  # the checkpoint is the in-memory model
    assert 0 < _rel_err(mem, ref) < (0.05 if method == "fp8" else 0.25)
    assert cfg["quant_method"] == "compressed-tensors" and cfg["format"] == fmt
    assert cfg["ignore"] == ["lm_head"]
    weights = cfg["config_groups"]["group_0"]["weights"]
    assert weights["num_bits"] == bits
    if method == "fp8":
        assert weights["type"] == "float" and weights["strategy"] == "channel"
        act = cfg["config_groups"]["group_0"]["input_activations"]
        assert act["dynamic"] is True and act["strategy"] == "token"
    else:
        assert weights["group_size"] == 32 and weights["symmetric"] is (method == "gptq")


def test_gptq_int8(tiny_dirs, tmp_path):
    report, ref, mem, disk, cfg = _roundtrip(tiny_dirs["qwen2"], tmp_path / "q", method="gptq", bits=8,
                                             group_size=64)
    torch.testing.assert_close(disk, mem, atol=1e-5, rtol=1e-5)
    assert _rel_err(mem, ref) < 0.02
    assert cfg["format"] == "pack-quantized" and cfg["config_groups"]["group_0"]["weights"]["num_bits"] == 8


def test_group_size_not_dividing_a_layer_is_skipped(tmp_path):
    src = make_tiny_model("qwen2", tmp_path / "src", hidden_size=64, intermediate_size=96)
    report, ref, mem, disk, cfg = _roundtrip(src, tmp_path / "q", method="gptq", bits=4, group_size=64)
    skipped = [f"model.layers.{i}.mlp.down_proj" for i in range(2)]
    assert sorted(report["skipped"]) == skipped
    assert "not divisible by group_size 64" in report["skipped"][skipped[0]]
    assert not set(skipped) & set(report["quantized"]) and len(report["quantized"]) == 12
    assert sorted(cfg["ignore"]) == sorted(["lm_head", *skipped])
    torch.testing.assert_close(disk, mem, atol=1e-5, rtol=1e-5)


def test_cholesky_failure_falls_back_to_rtn(tiny_dirs, monkeypatch):
    from swift.quant import compressed
    from swift.quant.gptq import CholeskyError

    def fail(*_a, **_k):
        raise CholeskyError("not positive definite")

    monkeypatch.setattr(compressed, "gptq_quantize_weight", fail)
    model = _load(tiny_dirs["qwen2"])
    report = quantize_compressed(model, method="gptq", calibration=_calibration(model.config.vocab_size),
                                 group_size=32, progress=False)
    assert sorted(report["fallback"]) == sorted(report["quantized"])
    assert "round-to-nearest" in next(iter(report["fallback"].values()))
    model(_probe(model.config.vocab_size))


@pytest.mark.parametrize("kwargs,flag", [
    (dict(method="int3"), "quant_method"),
    (dict(method="gptq", bits=3), "quant_bits"),
    (dict(method="awq", bits=8), "quant_bits"),
    (dict(method="fp8", bits=4), "quant_bits"),
    (dict(method="gptq", calibration=()), "dataset"),
    (dict(method="awq", calibration=[]), "dataset"),
    (dict(method="gptq", group_size=0), "group_size"),
    (dict(method="gptq", calibration=[torch.zeros(2, 3, dtype=torch.long)]), "dataset"),
    (dict(method="fp8", ignore=["re:.*"]), "ignore"),
])
def test_argument_errors(tiny_dirs, kwargs, flag):
    model = _load(tiny_dirs["qwen2"])
    kwargs.setdefault("calibration", [torch.arange(8)])
    kwargs.setdefault("bits", 8 if kwargs["method"] == "fp8" else 4)
    with pytest.raises(ArgumentError) as info:
        quantize_compressed(model, progress=False, **kwargs)
    assert info.value.flag == flag


def test_missing_compressed_tensors(tiny_dirs, monkeypatch):
    monkeypatch.setitem(sys.modules, "compressed_tensors", None)  # makes `import compressed_tensors` fail
    model = _load(tiny_dirs["qwen2"])
    with pytest.raises(MissingExtraError, match=r"compressed-tensors.*swiftlab\[quant\]"):
        quantize_compressed(model, method="fp8", bits=8)


def test_save_requires_a_quantized_model(tiny_dirs, tmp_path):
    with pytest.raises(SwiftError, match="quantize_compressed first"):
        save_compressed(_load(tiny_dirs["qwen2"]), tmp_path / "out")


def test_compressed_tensors_is_imported_lazily():
    src = Path(__file__).resolve().parents[2] / "swift" / "quant"
    for name in ("compressed.py", "gptq.py", "awq.py"):
        tree = ast.parse((src / name).read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        mods = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
        mods += [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
        assert not [m for m in mods if m.startswith("compressed_tensors")], name

"""Defaults by hardware: which method fits, batch sizes, and the warnings."""
from __future__ import annotations

import json

import pytest

from swift.ui.hardware import Hardware, detect_hardware, estimate_params_b, need_gib, recommend, warning_text


def gpu(mem: float) -> Hardware:
    return Hardware("cuda", "Test GPU", mem, 1, 8, 64)


@pytest.mark.parametrize("name,expected", [
    ("Qwen/Qwen2.5-7B-Instruct", 7.0), ("qwen3-0.6b", 0.6), ("llama3.1-8b-instruct", 8.0), ("qwen", 7.0),
    ("some-350m-model", 0.35), ("swift-demo", 0.002), ("no-size-here", None),
])
def test_parameter_count_from_names(name, expected):
    assert estimate_params_b(name) == expected


def test_parameter_count_from_a_local_config(tmp_path):
    # Qwen2.5-7B's shape: ~7.6B parameters
    cfg = {"hidden_size": 3584, "num_hidden_layers": 28, "vocab_size": 152064, "intermediate_size": 18944,
           "num_attention_heads": 28, "num_key_value_heads": 4}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert 7.0 < estimate_params_b(str(tmp_path)) < 8.0


@pytest.mark.parametrize("mem,tuner,batch", [(8, "qlora", 1), (16, "qlora", 2), (24, "lora", 2), (80, "lora", 8)])
def test_a_7b_model_gets_the_method_that_fits(mem, tuner, batch):
    rec = recommend(gpu(mem), 7.6)
    assert (rec.tuner, rec.per_device_train_batch_size) == (tuner, batch)
    assert rec.per_device_train_batch_size * rec.gradient_accumulation_steps == 16
    assert rec.need_gib <= mem and not rec.warnings


def test_learning_rate_follows_the_method():
    assert (recommend(gpu(80), 7.6).learning_rate, recommend(gpu(80), 7.6, tuner="full").learning_rate) == (1e-4, 1e-5)
    assert recommend(gpu(80), 7.6).num_train_epochs == 3


def test_a_choice_that_does_not_fit_is_warned():
    rec = recommend(gpu(24), 7.6, tuner="full")
    assert rec.need_gib == need_gib("full", 7.6) > 24
    (key, values), = rec.warnings
    assert key == "no_fit"
    assert "24 GiB" in warning_text(rec.warnings[0]) and "显存" in warning_text(rec.warnings[0], "zh")
    assert recommend(gpu(6), 13).warnings[0][0] == "no_fit"  # even QLoRA does not fit


def test_cpu_defaults_and_warnings():
    cpu = Hardware("cpu", cpu_count=2, ram_gib=24)
    demo = recommend(cpu, 0.002)
    assert (demo.tuner, demo.torch_dtype, demo.per_device_train_batch_size, demo.warnings) == ("lora", "float32", 8, [])
    assert (demo.learning_rate, demo.num_train_epochs) == (5e-3, 10)  # the README's demo run
    assert recommend(cpu, 7).warnings[0][0] == "cpu_slow"
    assert recommend(cpu, 0.002, tuner="qlora").warnings == [("cpu_qlora", {})]


def test_detect_hardware_here_is_cpu_without_nvidia_smi(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    hw = detect_hardware()
    assert hw.device == "cpu" and hw.cpu_count >= 1
    assert "CPU only" in hw.describe()

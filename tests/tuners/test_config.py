"""LoRAConfig / QLoRAConfig / SwiftConfig: defaults, aliases, validation and conversion to peft."""
from __future__ import annotations

import dataclasses
import importlib.util

import pytest

from swift.tuners import LoRAConfig, QLoRAConfig, SwiftConfig
from swift.utils.errors import ArgumentError, MissingExtraError, SwiftError

HAS_BNB = importlib.util.find_spec("bitsandbytes") is not None


def test_defaults():
    c = LoRAConfig()
    assert (c.r, c.alpha, c.dropout, c.target_modules) == (8, 16, 0.05, "all-linear")
    assert (c.use_dora, c.use_rslora, c.init_weights, c.bias) == (False, False, True, "none")
    assert c.modules_to_save is None and c.lorap_lr_ratio is None


def test_peft_aliases_set_and_read_back():
    c = LoRAConfig(lora_alpha=32, lora_dropout=0.2)
    assert (c.alpha, c.dropout) == (32, 0.2)
    assert (c.lora_alpha, c.lora_dropout) == (32, 0.2)
    # aliases are not fields: asdict / replace keep only the canonical names
    assert "lora_alpha" not in dataclasses.asdict(c)
    assert dataclasses.replace(c, r=4).alpha == 32
    assert QLoRAConfig(lora_alpha=4).alpha == 4


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"r": 0}, "r"), ({"r": 2.5}, "r"), ({"r": True}, "r"),
    ({"alpha": 0}, "alpha"), ({"lora_alpha": -1}, "alpha"),
    ({"dropout": 1.0}, "dropout"), ({"dropout": -0.1}, "dropout"), ({"lora_dropout": 1.5}, "dropout"),
    ({"target_modules": ""}, "target_modules"), ({"target_modules": []}, "target_modules"),
    ({"target_modules": ["all-linear", "q_proj"]}, "target_modules"),
    ({"init_weights": "svd"}, "init_weights"), ({"bias": "some"}, "bias"),
    ({"lorap_lr_ratio": 0}, "lorap_lr_ratio"), ({"modules_to_save": [""]}, "modules_to_save"),
])
def test_validation_names_the_field(kwargs, field):
    with pytest.raises(ArgumentError) as e:
        LoRAConfig(**kwargs)
    assert e.value.flag == field
    assert field in str(e.value)


def test_target_module_forms():
    assert LoRAConfig(target_modules="q_proj").target_modules == ["q_proj"]
    assert LoRAConfig(target_modules="q_proj,v_proj").target_modules == ["q_proj", "v_proj"]
    assert LoRAConfig(target_modules=("q_proj", "v_proj")).target_modules == ["q_proj", "v_proj"]
    assert LoRAConfig(target_modules=["ALL-LINEAR"]).target_modules == "all-linear"
    assert LoRAConfig(target_modules=r".*\.(q|v)_proj").target_modules == r".*\.(q|v)_proj"


def test_init_weights_values():
    assert LoRAConfig(init_weights="false").init_weights is False
    assert LoRAConfig(init_weights="PiSSA").init_weights == "pissa"
    assert LoRAConfig(init_weights="pissa_niter_4").modifies_base_weights
    assert LoRAConfig(init_weights="olora").modifies_base_weights
    assert not LoRAConfig(init_weights="gaussian").modifies_base_weights


def test_to_peft_config_carries_every_setting():
    c = LoRAConfig(r=4, alpha=8, dropout=0.1, target_modules=["q_proj"], use_dora=True, use_rslora=True,
                   init_weights="gaussian", bias="lora_only", modules_to_save=["lm_head"])
    p = c.to_peft_config(exclude_modules="vision.*")
    assert type(p).__name__ == "LoraConfig"
    assert (p.r, p.lora_alpha, p.lora_dropout) == (4, 8, 0.1)
    assert set(p.target_modules) == {"q_proj"} and p.exclude_modules == "vision.*"
    assert p.use_dora and p.use_rslora and p.init_lora_weights == "gaussian"
    assert p.bias == "lora_only" and p.modules_to_save == ["lm_head"]
    assert str(p.task_type.value if hasattr(p.task_type, "value") else p.task_type) == "CAUSAL_LM"


def test_qlora_validation():
    q = QLoRAConfig()
    assert (q.bits, q.quant_type, q.double_quant, q.compute_dtype) == (4, "nf4", True, "bfloat16")
    assert isinstance(q, LoRAConfig)
    for kwargs, field in (({"bits": 3}, "bits"), ({"quant_type": "int4"}, "quant_type"),
                          ({"compute_dtype": "fp8"}, "compute_dtype"), ({"init_weights": "pissa"}, "init_weights")):
        with pytest.raises(ArgumentError) as e:
            QLoRAConfig(**kwargs)
        assert e.value.flag == field


def test_qlora_without_bitsandbytes_names_the_extra(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "bitsandbytes", None)  # as if not installed
    with pytest.raises(MissingExtraError) as e:
        QLoRAConfig().to_quantization_config()
    assert e.value.package == "bitsandbytes" and e.value.extra == "quant"
    assert "swiftlab[quant]" in str(e.value)


@pytest.mark.skipif(not HAS_BNB, reason="bitsandbytes is not installed")
def test_qlora_quantization_config():
    import torch

    bnb = QLoRAConfig(quant_type="fp4", double_quant=False, compute_dtype="float16").to_quantization_config()
    assert bnb.load_in_4bit and bnb.bnb_4bit_quant_type == "fp4"
    assert not bnb.bnb_4bit_use_double_quant and bnb.bnb_4bit_compute_dtype == torch.float16
    assert QLoRAConfig(bits=8).to_quantization_config().load_in_8bit


def test_swift_config_tuner_type():
    assert SwiftConfig(lora=LoRAConfig()).tuner_type == "lora"
    assert SwiftConfig().tuner_type == "full" and SwiftConfig().lora is None
    assert SwiftConfig(tuner_type="lora").lora == LoRAConfig()
    assert SwiftConfig(tuner_type="freeze", freeze_parameters="model.embed").freeze_parameters == ["model.embed"]
    with pytest.raises(ArgumentError, match="tuner_type"):
        SwiftConfig(tuner_type="adapter")
    with pytest.raises(ArgumentError, match="tuner_type"):
        SwiftConfig(lora=LoRAConfig(), tuner_type="full")
    with pytest.raises(ArgumentError, match="modules_to_save"):
        SwiftConfig(lora=LoRAConfig(), freeze_parameters_ratio=0.5)
    with pytest.raises(ArgumentError, match="freeze_parameters_ratio"):
        SwiftConfig(tuner_type="freeze", freeze_parameters_ratio=1.5)
    assert issubclass(ArgumentError, SwiftError)


def test_configs_do_not_import_torch():
    import subprocess
    import sys

    code = ("import sys; from swift.tuners import LoRAConfig, SwiftConfig; SwiftConfig(lora=LoRAConfig()); "
            "print('torch' in sys.modules, 'peft' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]

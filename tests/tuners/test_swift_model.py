"""SwiftModel over peft on a tiny Qwen2: what trains, delegation, saving/loading, PiSSA, QLoRA guard."""
from __future__ import annotations

import json

import peft
import pytest
import torch

from swift.tuners import LoRAConfig, QLoRAConfig, SwiftConfig, SwiftModel
from swift.utils.errors import ArgumentError, SwiftError

LINEAR_NAMES = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def _adapted_modules(model) -> set[str]:
    """Short names of the modules that received a LoRA layer."""
    from peft.tuners.lora import LoraLayer

    return {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, LoraLayer)}


def test_seed_snippet(tiny_model):
    model = tiny_model
    from swift import LoRAConfig, SwiftConfig  # noqa: F811 - the seed's own import line
    lora_config = LoRAConfig(r=8, target_modules=["q_proj", "v_proj"], alpha=16, dropout=0.1)
    swift_config = SwiftConfig(lora=lora_config)
    model = SwiftModel(model, config=swift_config)

    assert isinstance(model, torch.nn.Module) and model.is_peft
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable, "no trainable parameters"
    for name in trainable:
        assert ".lora_A." in name or ".lora_B." in name, name
        assert ".q_proj." in name or ".v_proj." in name, name
    # 2 layers x (q, v) x (A, B)
    assert len(trainable) == 8
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert any("embed_tokens" in n for n in frozen) and any("q_proj.base_layer" in n for n in frozen)
    peft_cfg = model.peft_config["default"]
    assert (peft_cfg.r, peft_cfg.lora_alpha, peft_cfg.lora_dropout) == (8, 16, 0.1)


def test_all_linear_covers_every_projection_but_not_lm_head(make_tiny_model):
    for tie in (True, False):
        model = SwiftModel(make_tiny_model(tie_word_embeddings=tie), SwiftConfig(lora=LoRAConfig()))
        assert _adapted_modules(model) == LINEAR_NAMES
        assert not any("lm_head" in n and p.requires_grad for n, p in model.named_parameters())


def test_all_linear_on_multimodal_adapts_language_model_only(tokenizer):
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    cfg = Qwen2VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2,
                         rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]}),
        vision_config=dict(depth=1, embed_dim=16, hidden_size=32, num_heads=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2))
    torch.manual_seed(0)
    model = SwiftModel(Qwen2VLForConditionalGeneration(cfg), SwiftConfig(lora=LoRAConfig()))
    adapted = [n for n, m in model.named_modules() if isinstance(m, peft.tuners.lora.LoraLayer)]
    assert len(adapted) == 7 and all(".language_model." in n for n in adapted)
    assert not any("visual" in n and p.requires_grad for n, p in model.named_parameters())


def test_dora_rslora_and_init_reach_peft(tiny_model):
    cfg = LoRAConfig(r=4, alpha=8, target_modules=["q_proj"], use_dora=True, use_rslora=True)
    model = SwiftModel(tiny_model, SwiftConfig(lora=cfg))
    layer = model.unwrap().base_model.model.model.layers[0].self_attn.q_proj
    assert layer.use_dora["default"]
    assert layer.scaling["default"] == pytest.approx(8 / 4 ** 0.5)  # rsLoRA: alpha / sqrt(r)
    assert any("lora_magnitude_vector" in n and p.requires_grad for n, p in model.named_parameters())


def test_unknown_target_module_is_a_clear_error(tiny_model):
    with pytest.raises(ArgumentError) as e:
        SwiftModel(tiny_model, SwiftConfig(lora=LoRAConfig(target_modules=["query"])))
    assert e.value.flag == "target_modules" and "q_proj" in str(e.value)


def test_delegation_forward_generate(tiny_model, batch, tokenizer):
    ref = tiny_model(**batch).logits
    model = SwiftModel(tiny_model, SwiftConfig(lora=LoRAConfig(target_modules=["q_proj", "v_proj"])))
    assert model.config is tiny_model.config
    assert model.device == torch.device("cpu")
    assert model.tokenizer is None and model.model_dir is None
    out = model(**batch)
    # B starts at zero: the adapted model computes the base model's function
    torch.testing.assert_close(out.logits, ref)
    assert out.loss is not None and out.loss.requires_grad
    gen = model.generate(input_ids=batch["input_ids"][:1], max_new_tokens=3, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
    assert gen.shape == (1, batch["input_ids"].shape[1] + 3)
    with pytest.raises(AttributeError):
        model.no_such_attribute  # noqa: B018


def test_save_pretrained_loads_with_plain_peft(make_tiny_model, batch, tokenizer, tmp_path):
    lora = LoRAConfig(r=4, target_modules=["q_proj", "v_proj"], init_weights=False)  # random B: non-trivial
    model = SwiftModel(make_tiny_model(), SwiftConfig(lora=lora), tokenizer=tokenizer).eval()
    expected = model(**batch).logits
    model.save_pretrained(tmp_path / "adapter")
    files = {p.name for p in (tmp_path / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= files
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LORA" and saved["r"] == 4

    reloaded = peft.PeftModel.from_pretrained(make_tiny_model(), str(tmp_path / "adapter")).eval()
    torch.testing.assert_close(reloaded(**batch).logits, expected, rtol=0, atol=0)


def test_state_dict_is_adapter_only_and_round_trips(make_tiny_model):
    lora = LoRAConfig(r=4, target_modules=["q_proj", "v_proj"], init_weights=False)
    model = SwiftModel(make_tiny_model(), SwiftConfig(lora=lora))
    sd = model.state_dict()
    assert len(sd) == 8 and all(".lora_A." in k or ".lora_B." in k for k in sd)

    other = SwiftModel(make_tiny_model(), SwiftConfig(lora=LoRAConfig(r=4, target_modules=["q_proj", "v_proj"])))
    other.load_state_dict(sd)  # strict: the adapter keys are all there
    for k, v in other.state_dict().items():
        torch.testing.assert_close(v, sd[k])
    with pytest.raises(RuntimeError, match="missing keys"):
        other.load_state_dict(dict(list(sd.items())[:3]))


def test_full_mode_state_dict_drops_tied_alias(tiny_model):
    model = SwiftModel(tiny_model, SwiftConfig(tuner_type="full"))
    assert not model.is_peft
    sd = model.state_dict()
    full = tiny_model.state_dict()
    assert len(sd) == len(full) - 1  # lm_head.weight is embed_tokens.weight
    model.load_state_dict(sd)  # strict load accepts it
    assert all(p.requires_grad for p in model.parameters())


def test_wrapping_a_swift_model_keeps_tokenizer(tiny_model, tokenizer):
    first = SwiftModel(tiny_model, tokenizer=tokenizer, model_dir="/models/tiny")
    assert first.swift_config is None and not first.is_peft
    second = SwiftModel(first, SwiftConfig(lora=LoRAConfig(target_modules=["q_proj"])))
    assert second.tokenizer is tokenizer and second.model_dir == "/models/tiny" and second.is_peft
    third = SwiftModel(second)  # wrapping again without a config keeps everything
    assert third.unwrap() is second.unwrap() and third.swift_config is second.swift_config
    with pytest.raises(SwiftError, match="already carries LoRA"):
        SwiftModel(second, SwiftConfig(lora=LoRAConfig()))


def test_qlora_config_on_full_precision_model_explains_how_to_load(tiny_model):
    with pytest.raises(SwiftError) as e:
        SwiftModel(tiny_model, SwiftConfig(lora=QLoRAConfig()))
    assert "from_pretrained" in str(e.value) and "quantization_config" in str(e.value)


@pytest.mark.parametrize("init", ["pissa", "olora"])
def test_pissa_olora_adapter_applies_to_original_base(make_tiny_model, batch, tmp_path, init):
    lora = LoRAConfig(r=4, target_modules=["q_proj", "v_proj"], init_weights=init, dropout=0.0)
    model = SwiftModel(make_tiny_model(), SwiftConfig(lora=lora)).eval()
    base_q = make_tiny_model().model.layers[0].self_attn.q_proj.weight
    assert not torch.allclose(model.unwrap().base_model.model.model.layers[0].self_attn.q_proj.weight, base_q)
    with torch.no_grad():  # stand-in for training: move every adapter weight
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    expected = model(**batch).logits
    model.save_pretrained(tmp_path / "converted")
    saved = json.loads((tmp_path / "converted" / "adapter_config.json").read_text())
    assert saved["r"] == 8 and saved["init_lora_weights"] is True  # rank doubles in the conversion

    reloaded = peft.PeftModel.from_pretrained(make_tiny_model(), str(tmp_path / "converted")).eval()
    torch.testing.assert_close(reloaded(**batch).logits, expected, rtol=1e-4, atol=1e-4)

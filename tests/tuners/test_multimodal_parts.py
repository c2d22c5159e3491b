"""Multimodal parts (vision tower / aligner / language model): freezing, LoRA targets, learning-rate groups."""
from __future__ import annotations

import json
import re

import numpy as np
import peft
import pytest
import torch
from PIL import Image
from torch import nn
from transformers import AutoModelForImageTextToText, AutoModelForMultimodalLM, Trainer

from swift.models.tiny import make_tiny_model
from swift.tuners import LoRAConfig, prepare_model
from swift.tuners.multimodal import (
    apply_freeze,
    decay_parameter_names,
    lora_target_regex,
    model_parts,
    multimodal_param_groups,
    part_of,
)
from swift.utils.errors import ArgumentError

PARTS = {
    "qwen2_vl": {"vision_tower": ["model.visual.patch_embed", "model.visual.blocks"],
                 "aligner": ["model.visual.merger"], "language_model": ["model.language_model", "lm_head"]},
    "qwen2_5_vl": {"vision_tower": ["model.visual.patch_embed", "model.visual.blocks"],
                   "aligner": ["model.visual.merger"], "language_model": ["model.language_model", "lm_head"]},
    "qwen2_audio": {"vision_tower": ["model.audio_tower"], "aligner": ["model.multi_modal_projector"],
                    "language_model": ["model.language_model", "lm_head"]},
    "llava": {"vision_tower": ["model.vision_tower"], "aligner": ["model.multi_modal_projector"],
              "language_model": ["model.language_model", "lm_head"]},
    "llava_next": {"vision_tower": ["model.vision_tower"],
                   "aligner": ["model.multi_modal_projector", "model.image_newline"],
                   "language_model": ["model.language_model", "lm_head"]},
    "internvl": {"vision_tower": ["model.vision_tower"], "aligner": ["model.multi_modal_projector"],
                 "language_model": ["model.language_model", "lm_head"]},
}
LLM_LINEARS = 2 * 7  # 2 decoder layers x q/k/v/o/gate/up/down


@pytest.fixture(scope="module")
def mm_dirs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tiny-mm-parts")
    return {arch: make_tiny_model(arch, root / arch) for arch in PARTS}


def load(path: str, arch: str) -> nn.Module:
    auto = AutoModelForMultimodalLM if arch == "qwen2_audio" else AutoModelForImageTextToText
    return auto.from_pretrained(path)


def trainable_parts(model: nn.Module) -> dict[str, bool]:
    parts = model_parts(model)
    out: dict[str, set[bool]] = {}
    for name, p in model.named_parameters():
        out.setdefault(part_of(name, parts), set()).add(p.requires_grad)
    assert all(len(v) == 1 for v in out.values()), out  # every part all-or-nothing
    return {k: v.pop() for k, v in out.items()}


def lora_modules(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, peft.tuners.lora.LoraLayer)]


@pytest.mark.parametrize("arch", list(PARTS))
def test_parts_cover_every_parameter_once(arch, mm_dirs):
    model = load(mm_dirs[arch], arch)
    parts = model_parts(model)
    assert parts == PARTS[arch]
    for name, _ in model.named_parameters():
        owners = [part for part, prefixes in parts.items()
                  if any(name == p or name.startswith(p + ".") for p in prefixes)]
        assert len(owners) == 1, (name, owners)


def test_parts_through_a_peft_wrapper(mm_dirs):
    model = peft.get_peft_model(load(mm_dirs["qwen2_vl"], "qwen2_vl"), peft.LoraConfig(target_modules=["q_proj"]))
    parts = model_parts(model)
    expected = {k: ["base_model.model." + p for p in v] for k, v in PARTS["qwen2_vl"].items()}
    assert parts == expected
    assert all(part_of(n, parts) for n, _ in model.named_parameters())
    assert all(part_of(n, parts) == "language_model" for n, _ in model.named_parameters() if "lora_" in n)


def test_text_model_is_all_language_model(tiny_model):
    parts = model_parts(tiny_model)
    assert parts["vision_tower"] == [] and parts["aligner"] == []
    assert all(part_of(n, parts) == "language_model" for n, _ in tiny_model.named_parameters())
    assert lora_target_regex(tiny_model) is None


@pytest.mark.parametrize("flags, expected", [
    ({}, {"vision_tower": False, "aligner": False, "language_model": True}),
    ({"freeze_vit": False}, {"vision_tower": True, "aligner": False, "language_model": True}),
    ({"freeze_aligner": False}, {"vision_tower": False, "aligner": True, "language_model": True}),
    ({"freeze_vit": False, "freeze_aligner": False, "freeze_llm": True},
     {"vision_tower": True, "aligner": True, "language_model": False}),
    ({"freeze_aligner": False, "freeze_llm": True}, {"vision_tower": False, "aligner": True, "language_model": False}),
])
@pytest.mark.parametrize("arch", ["qwen2_vl", "llava_next", "qwen2_audio"])
def test_full_tuning_trains_the_parts_the_flags_leave(arch, flags, expected, mm_dirs):
    model = prepare_model(load(mm_dirs[arch], arch), tuner_type="full", **flags)
    assert trainable_parts(model) == expected


def test_freeze_options_compose_with_the_flags(mm_dirs):
    model = prepare_model(load(mm_dirs["qwen2_vl"], "qwen2_vl"), tuner_type="freeze",
                          freeze_parameters=["model.language_model.layers.0"],
                          trainable_parameters=["model.visual.blocks.0.mlp"])
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    assert not grads["model.language_model.layers.0.mlp.up_proj.weight"]
    assert grads["model.language_model.layers.1.mlp.up_proj.weight"]
    assert grads["model.visual.blocks.0.mlp.fc1.weight"] and not grads["model.visual.blocks.0.attn.qkv.weight"]
    assert not grads["model.visual.merger.mlp.0.weight"]


def test_nothing_to_train_is_an_error(mm_dirs, tiny_model):
    with pytest.raises(ArgumentError) as e:
        prepare_model(load(mm_dirs["llava"], "llava"), tuner_type="full", freeze_llm=True)
    assert e.value.flag == "freeze_llm"
    with pytest.raises(ArgumentError):
        prepare_model(tiny_model, tuner_type="full", freeze_llm=True)
    with pytest.raises(ArgumentError):
        lora_target_regex(load(mm_dirs["llava"], "llava"), freeze_llm=True)


def test_text_models_train_as_before(make_tiny_model):
    model = prepare_model(make_tiny_model(tie_word_embeddings=False), tuner_type="full")
    assert all(p.requires_grad for p in model.parameters())
    assert apply_freeze(make_tiny_model()) == {"vision_tower": 0, "aligner": 0, "language_model": 0}


@pytest.mark.parametrize("arch", list(PARTS))
def test_all_linear_lora_adapts_the_language_model_by_default(arch, mm_dirs):
    model = prepare_model(load(mm_dirs[arch], arch), lora=LoRAConfig(r=4))
    adapted = lora_modules(model)
    assert len(adapted) == LLM_LINEARS and all(".language_model." in n for n in adapted)
    assert not any("lm_head" in n for n in adapted)
    assert all(part_of(n, model_parts(model)) == "language_model"
               for n, p in model.named_parameters() if p.requires_grad)


@pytest.mark.parametrize("arch", ["qwen2_vl", "qwen2_audio", "internvl"])
def test_all_linear_lora_follows_the_freeze_flags(arch, mm_dirs):
    base = load(mm_dirs[arch], arch)
    linears = {n for n, m in base.named_modules() if isinstance(m, nn.Linear)} - {"lm_head"}
    model = prepare_model(base, lora=LoRAConfig(r=4), freeze_vit=False, freeze_aligner=False)
    adapted = {n.removeprefix("base_model.model.") for n in lora_modules(model)}
    assert adapted == linears  # every linear layer but the head; never a conv (Qwen2-VL's patch_embed)
    model = prepare_model(load(mm_dirs[arch], arch), lora=LoRAConfig(r=4), freeze_aligner=False, freeze_llm=True)
    parts = model_parts(model)
    assert {part_of(n, parts) for n in lora_modules(model)} == {"aligner"}


def test_lora_regex_is_short_exact_and_saved_for_peft(mm_dirs, tmp_path):
    base = load(mm_dirs["qwen2_vl"], "qwen2_vl")
    regex = lora_target_regex(base, freeze_vit=False)
    assert r"layers\.\d+\.self_attn\.q_proj" in regex and "merger" not in regex and "patch_embed" not in regex
    matched = [n for n, _ in base.named_modules() if re.fullmatch(regex, n)]
    assert len(matched) == LLM_LINEARS + 4  # + qkv, proj, fc1, fc2 of the one vision block
    model = prepare_model(base, lora=LoRAConfig(r=4, init_weights=False), freeze_vit=False)
    model.save_pretrained(tmp_path / "adapter")
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["target_modules"] == regex
    reloaded = peft.PeftModel.from_pretrained(load(mm_dirs["qwen2_vl"], "qwen2_vl"), tmp_path / "adapter")
    assert sorted(lora_modules(reloaded)) == sorted(lora_modules(model))


def test_explicit_target_modules_are_left_to_peft(mm_dirs):
    model = prepare_model(load(mm_dirs["llava"], "llava"), lora=LoRAConfig(r=4, target_modules=["q_proj"]))
    adapted = lora_modules(model)
    assert len(adapted) == 4 and any("vision_tower" in n for n in adapted)  # CLIP's q_proj too, as peft matches


def test_param_groups_rates_and_decay(mm_dirs):
    model = prepare_model(load(mm_dirs["qwen2_vl"], "qwen2_vl"), tuner_type="full", freeze_vit=False,
                          freeze_aligner=False)
    groups = multimodal_param_groups(model, lr=1e-4, vit_lr=1e-5, aligner_lr=2e-5, weight_decay=0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    parts = model_parts(model)
    decay = decay_parameter_names(model)
    assert decay == set(Trainer.get_decay_parameter_names(None, model))
    seen = set()
    for g in groups:
        group_names = [names[id(p)] for p in g["params"]]
        assert len({part_of(n, parts) for n in group_names}) == 1
        part = part_of(group_names[0], parts)
        assert g["lr"] == {"vision_tower": 1e-5, "aligner": 2e-5, "language_model": 1e-4}[part]
        assert all((n in decay) == (g["weight_decay"] == 0.1) for n in group_names)
        seen.update(group_names)
    assert seen == {n for n, p in model.named_parameters() if p.requires_grad}
    assert len(groups) == 6
    assert any("bias" in n or "norm" in n for n in seen - decay)
    torch.optim.AdamW(groups).step()  # a valid optimizer spec


def test_param_groups_skip_frozen_parts_and_default_rates(mm_dirs):
    model = prepare_model(load(mm_dirs["llava"], "llava"), lora=LoRAConfig(r=4), freeze_vit=False)
    groups = multimodal_param_groups(model, lr=3e-4, weight_decay=0.0)
    assert {g["lr"] for g in groups} == {3e-4}
    grouped = {id(p) for g in groups for p in g["params"]}
    assert grouped == {id(p) for p in model.parameters() if p.requires_grad}
    parts = model_parts(model)
    assert {part_of(n, parts) for n, p in model.named_parameters() if id(p) in grouped} == \
        {"vision_tower", "language_model"}


def test_frozen_parts_get_no_gradient_in_a_training_step(mm_dirs):
    from swift.models.loader import load_model_and_tokenizer

    model, processor, _ = load_model_and_tokenizer(mm_dirs["qwen2_vl"])
    model = prepare_model(model, tuner_type="full", freeze_aligner=False)
    img = Image.fromarray((np.random.RandomState(0).rand(56, 84, 3) * 255).astype("uint8"))
    inputs = processor(text=["<|vision_start|><|image_pad|><|vision_end|>hi"], images=[img], return_tensors="pt")
    model(**inputs, labels=inputs["input_ids"]).loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(grads[n] is None for n in grads if n.startswith(("model.visual.blocks", "model.visual.patch_embed")))
    assert grads["model.visual.merger.mlp.0.weight"].abs().sum() > 0
    assert grads["model.language_model.layers.0.self_attn.q_proj.weight"].abs().sum() > 0

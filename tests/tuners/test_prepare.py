"""prepare_model (lora / full / freeze), parameter counting, LoRA+ parameter groups."""
from __future__ import annotations

import pytest
import torch

from swift.tuners import (
    LoRAConfig,
    count_parameters,
    create_loraplus_optimizer,
    parameter_summary,
    prepare_model,
)
from swift.utils.errors import ArgumentError


def test_lora_counts_are_exact(tiny_model):
    total_base = sum(p.numel() for p in tiny_model.parameters())
    model = prepare_model(tiny_model, lora=LoRAConfig(r=8, target_modules=["q_proj", "v_proj"]))
    # per layer: q (A 8x32 + B 32x8) + v (A 8x32 + B 16x8) = 512 + 384; two layers
    assert count_parameters(model) == (1792, total_base + 1792)
    assert total_base == 110592  # tied lm_head counted once
    assert parameter_summary(model) == "trainable 1.8K / 112.4K (1.59%)"


def test_summary_format():
    layer = torch.nn.Linear(1000, 1000)
    layer.weight.requires_grad_(False)
    assert parameter_summary(layer) == "trainable 1.0K / 1.0M (0.10%)"
    assert count_parameters(layer) == (1000, 1_001_000)


def test_full_makes_everything_trainable(tiny_model):
    for p in tiny_model.parameters():
        p.requires_grad_(False)
    model = prepare_model(tiny_model, tuner_type="full")
    assert model is tiny_model
    trainable, total = count_parameters(model)
    assert trainable == total > 0


def test_freeze_ratio_follows_parameter_order(tiny_model):
    names = [n for n, _ in tiny_model.named_parameters()]
    sizes = [p.numel() for p in tiny_model.parameters()]
    total = sum(sizes)
    # Hand-worked on this model: embed (2871*32 = 91872) + layer 0 attention (q 1024+32, k 512+16,
    # v 512+16, o 1024) = 95008 <= int(0.86 * total); adding gate_proj (2048) would pass the budget.
    assert sum(sizes[:8]) == 95008 and 95008 <= int(0.86 * total) < 95008 + 2048
    prepare_model(tiny_model, tuner_type="freeze", freeze_parameters_ratio=0.86)
    flags = [p.requires_grad for p in tiny_model.parameters()]
    assert flags[:8] == [False] * 8 and all(flags[8:])
    assert names[8] == "model.layers.0.mlp.gate_proj.weight"


def test_freeze_ratio_one_then_unfreeze_prefix(tiny_model):
    prepare_model(tiny_model, tuner_type="freeze", freeze_parameters_ratio=1.0,
                  trainable_parameters=["model.layers.1.mlp"])
    trainable = {n for n, p in tiny_model.named_parameters() if p.requires_grad}
    assert trainable == {f"model.layers.1.mlp.{m}_proj.weight" for m in ("gate", "up", "down")}


def test_freeze_by_prefix(tiny_model):
    prepare_model(tiny_model, tuner_type="freeze", freeze_parameters=["model.embed_tokens", "model.layers.0"])
    frozen = {n for n, p in tiny_model.named_parameters() if not p.requires_grad}
    assert "model.embed_tokens.weight" in frozen
    assert all(n.startswith(("model.embed_tokens", "model.layers.0.")) for n in frozen)
    assert tiny_model.model.layers[1].self_attn.q_proj.weight.requires_grad


def test_freeze_errors(tiny_model):
    with pytest.raises(ArgumentError) as e:
        prepare_model(tiny_model, tuner_type="freeze", freeze_parameters=["transformer.h"])
    assert e.value.flag == "freeze_parameters" and "model.embed_tokens.weight" in str(e.value)
    with pytest.raises(ArgumentError) as e:
        prepare_model(tiny_model, tuner_type="lora", freeze_parameters_ratio=0.5)
    assert e.value.flag == "freeze_parameters_ratio"
    with pytest.raises(ArgumentError, match="tuner_type"):
        prepare_model(tiny_model, tuner_type="adalora")


def test_loraplus_groups_and_first_step(make_tiny_model, batch):
    lora = LoRAConfig(r=4, target_modules=["q_proj", "v_proj"], init_weights=False, bias="all",
                      modules_to_save=["lm_head"])
    model = prepare_model(make_tiny_model(tie_word_embeddings=False), lora=lora)
    lr, ratio = 1e-3, 16.0
    opt = create_loraplus_optimizer(model, lr=lr, weight_decay=0.1, lorap_lr_ratio=ratio, betas=(0.9, 0.99))
    groups = {g["name"]: g for g in opt.param_groups}
    assert set(groups) == {"base", "base_no_decay", "lora_B"}
    assert groups["lora_B"]["lr"] == lr * ratio and groups["lora_B"]["weight_decay"] == 0.1
    assert groups["base"]["lr"] == lr and groups["base_no_decay"]["weight_decay"] == 0.0
    assert opt.defaults["betas"] == (0.9, 0.99)
    by_id = {id(p): name for name, p in model.named_parameters()}
    seen = [by_id[id(p)] for g in opt.param_groups for p in g["params"]]
    assert sorted(seen) == sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert all(".lora_B." in by_id[id(p)] for p in groups["lora_B"]["params"])
    assert any("modules_to_save" in by_id[id(p)] for p in groups["base"]["params"])
    assert all(by_id[id(p)].endswith("bias") for p in groups["base_no_decay"]["params"])

    # One AdamW step moves each weight by about lr (times the ratio for B), whatever its gradient.
    for g in opt.param_groups:
        g["weight_decay"] = 0.0
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    model(**batch).loss.backward()
    opt.step()
    q = "base_model.model.model.layers.0.self_attn.q_proj"
    for key, step in ((f"{q}.lora_A.default.weight", lr), (f"{q}.lora_B.default.weight", lr * ratio)):
        delta = (dict(model.named_parameters())[key] - before[key]).abs().max().item()
        assert delta == pytest.approx(step, rel=1e-2)


def test_loraplus_needs_lora(tiny_model):
    with pytest.raises(ArgumentError, match="lorap_lr_ratio"):
        create_loraplus_optimizer(tiny_model, lr=1e-3, weight_decay=0.0, lorap_lr_ratio=16)
    with pytest.raises(ArgumentError, match="lorap_lr_ratio"):
        create_loraplus_optimizer(tiny_model, lr=1e-3, weight_decay=0.0, lorap_lr_ratio=0)

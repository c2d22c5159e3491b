"""DPO on TRL: trains with LoRA and writes a plain adapter checkpoint, TRL's loss equals `losses.dpo_loss`, the
LoRA reference is the adapters-disabled model, exact resume, a small quality check on held-out pairs, and
padding-free DPO (one packed row per batch) giving the padded path's loss and gradients."""
from __future__ import annotations

import shutil

import pytest
import torch

from swift.trainers import find_latest_checkpoint
from swift.trainers.rlhf import RLHF_TYPES, build_rlhf_trainer, get_builder, register_rlhf_type
from swift.trainers.rlhf.dpo import SwiftDPOTrainer, dpo_losses
from swift.trainers.rlhf.losses import dpo_loss
from swift.utils.errors import ArgumentError, DataError

from .pref_helpers import (
    assert_adapter_checkpoint,
    load,
    losses,
    pair_dataset,
    pair_row,
    sequence_logps,
    train_args,
)


@pytest.fixture(scope="module")
def ref_dir(tmp_path_factory) -> str:
    """A second tiny Qwen2 with other weights: an explicit reference model for full tuning."""
    from swift.models.tiny import make_tiny_model

    return make_tiny_model("qwen2", tmp_path_factory.mktemp("ref"), seed=7)


def _build(model, tokenizer, template, out, ds, ref_model=None, **overrides):
    return build_rlhf_trainer("dpo", model=model, tokenizer=tokenizer, template=template, train_dataset=ds,
                              ref_model=ref_model, args=train_args(out, **overrides),
                              checkpoint_files={"args.json": {"rlhf_type": "dpo"}})


def test_registry():
    assert list(RLHF_TYPES) == ["dpo", "kto", "cpo", "simpo", "orpo", "rm", "ppo", "grpo", "gkd"]
    assert RLHF_TYPES["simpo"].startswith("swift.trainers.rlhf.cpo:")
    assert get_builder("dpo").__module__ == "swift.trainers.rlhf.dpo"
    with pytest.raises(ArgumentError, match="rlhf_type"):
        build_rlhf_trainer("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_rlhf_type("dpo", "x.y:build_trainer")
    with pytest.raises(ValueError, match="module:function"):
        register_rlhf_type("mine", "no_colon")


def test_flag_mapping():
    assert dpo_losses({}) == (["sigmoid"], [1.0])
    assert dpo_losses({"loss_type": "hinge"}) == (["hinge"], [1.0])
    assert dpo_losses({"loss_type": ["sigmoid", "ipo"], "loss_weights": [0.5, 2]}) == (["sigmoid", "ipo"], [0.5, 2.0])
    assert dpo_losses({"rpo_alpha": 0.3}) == (["sigmoid", "sft"], [1.0, 0.3])
    # conservative DPO with eps 0.1: 2 * 0.9 sigmoid - 0.8 robust
    types, weights = dpo_losses({"label_smoothing": 0.1})
    assert types == ["sigmoid", "robust"] and weights == pytest.approx([1.8, -0.8])
    with pytest.raises(ArgumentError, match="loss_weights"):
        dpo_losses({"loss_type": ["sigmoid", "ipo"], "loss_weights": [1.0]})


def test_dpo_trains_lora_and_checkpoint_is_a_peft_adapter(tmp_path, tiny_qwen2_dir):
    model, tokenizer, template = load(tiny_qwen2_dir)
    trainer = _build(model, tokenizer, template, tmp_path, pair_dataset(template), beta=0.1)
    assert isinstance(trainer, SwiftDPOTrainer) and trainer.ref_model is None
    assert list(model.peft_config) == ["default"]  # TRL's frozen "ref" copy was dropped: adapters disabled instead
    assert not trainer.args.bf16 and not trainer.args.gradient_checkpointing  # transformers' defaults, not TRL's
    trainer.train()
    assert sorted(losses(tmp_path)) == [1, 2, 3]
    ckpt = tmp_path / "checkpoint-3"
    assert find_latest_checkpoint(tmp_path) == str(ckpt)
    assert_adapter_checkpoint(ckpt, model, tiny_qwen2_dir)
    assert (tmp_path / "loss_curve.png").is_file()


def test_reference_copy_kept_when_the_adapter_is_not_a_noop(tmp_path, tiny_qwen2_dir):
    """With random LoRA B (or PiSSA), the base alone is not the starting policy: TRL's frozen copy stays."""
    model, tokenizer, template = load(tiny_qwen2_dir, init_weights=False)
    _build(model, tokenizer, template, tmp_path, pair_dataset(template, 2))
    assert sorted(model.peft_config) == ["default", "ref"]


def _reference_loss(policy, ref, rows, loss_types, weights, beta, label_smoothing=0.0) -> float:
    """The DPO objective from unpadded per-sequence log-probs and `losses.dpo_loss` (no TRL code involved)."""
    def logps(model, side):
        return torch.stack([sequence_logps(model, r["prompt_ids"], r[f"{side}_ids"]) for r in rows])

    pc, pr, rc, rr = logps(policy, "chosen"), logps(policy, "rejected"), logps(ref, "chosen"), logps(ref, "rejected")
    lc = torch.tensor([len(r["chosen_ids"]) for r in rows], dtype=torch.float32)
    lr = torch.tensor([len(r["rejected_ids"]) for r in rows], dtype=torch.float32)
    total = 0.0
    for loss_type, weight in zip(loss_types, weights, strict=True):
        if loss_type == "sft":  # RPO: NLL of the chosen tokens, averaged over all of them
            total += weight * float(-pc.sum() / lc.sum())
        else:
            total += weight * float(dpo_loss(pc, pr, rc, rr, beta=beta, loss_type=loss_type,
                                             label_smoothing=label_smoothing, chosen_lengths=lc,
                                             rejected_lengths=lr).mean())
    return total


@pytest.mark.parametrize("flags", [
    {"loss_type": ["sigmoid"]},
    {"loss_type": ["hinge"]},
    {"loss_type": ["ipo"]},
    {"loss_type": ["sigmoid"], "label_smoothing": 0.2},
    {"loss_type": ["sigmoid", "hinge"], "loss_weights": [0.7, 0.3], "rpo_alpha": 0.5},
], ids=["sigmoid", "hinge", "ipo", "cdpo", "mixed_rpo"])
def test_trl_loss_equals_pure_function(tmp_path, tiny_qwen2_dir, ref_dir, flags):
    policy, tokenizer, template = load(tiny_qwen2_dir, lora=False)
    ref, _, _ = load(ref_dir, lora=False)
    ds = pair_dataset(template, 4)
    trainer = _build(policy, tokenizer, template, tmp_path, ds, ref_model=ref, beta=0.5, **flags)
    batch = trainer.data_collator([ds[i] for i in range(4)])  # chosen then rejected, padded: one forward
    assert batch["input_ids"].shape[0] == 8
    trainer.model.eval()
    calls = []
    for name, m in (("policy", trainer.model), ("ref", trainer.ref_model)):
        m.register_forward_pre_hook(lambda mod, a, kw, name=name: calls.append((name, kw["input_ids"].shape[0])),
                                    with_kwargs=True)
    with torch.no_grad():
        got = float(trainer.compute_loss(trainer.model, batch))
    assert calls == [("policy", 8), ("ref", 8)]  # chosen and rejected in one forward each
    rows = [ds[i] for i in range(4)]
    want = _reference_loss(policy, ref, rows, [t for t in flags["loss_type"]], flags.get("loss_weights", [1.0]),
                           beta=0.5, label_smoothing=flags.get("label_smoothing", 0.0))
    if flags.get("rpo_alpha"):
        want += _reference_loss(policy, ref, rows, ["sft"], [flags["rpo_alpha"]], beta=0.5)
    assert got == pytest.approx(want, abs=1e-5)
    assert want > 1e-3  # a non-trivial value: policy and reference differ


def test_rows_of_encode_preference_rows(tmp_path, tiny_qwen2_dir):
    """The data contract: `swift.data.encode_preference_rows` gives the rows these tests build by hand."""
    from swift.data import encode_preference_rows

    model, tokenizer, template = load(tiny_qwen2_dir)
    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}],
             "rejected_response": "I do not know."} for i in range(4)]
    ds = encode_preference_rows(rows, template, kind="preference", cache_dir=tmp_path / "cache")
    assert [ds[i] for i in range(4)] == [pair_dataset(template, 4)[i] for i in range(4)]
    trainer = _build(model, tokenizer, template, tmp_path / "out", ds)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    assert batch["input_ids"].shape[0] == 4 and int(batch["completion_mask"].sum()) > 0


def test_missing_columns_name_the_fix(tmp_path, tiny_qwen2_dir):
    model, tokenizer, template = load(tiny_qwen2_dir)
    raw = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
            "rejected_response": "no"}] * 2
    with pytest.raises(DataError, match="encode_preference_rows") as err:
        _build(model, tokenizer, template, tmp_path, raw)
    assert err.value.field == "prompt_ids"


def test_resume_matches_straight_run(tmp_path, tiny_qwen2_dir):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    model, tokenizer, template = load(tiny_qwen2_dir)
    ds = pair_dataset(template)
    _build(model, tokenizer, template, straight, ds, max_steps=4, save_steps=2).train()

    resumed.mkdir()
    shutil.copytree(straight / "checkpoint-2", resumed / "checkpoint-2")
    model2, _, _ = load(tiny_qwen2_dir, seed=123)  # other adapter init: the checkpoint must overwrite it
    _build(model2, tokenizer, template, resumed, ds, max_steps=4, save_steps=2).train(resume_from_checkpoint=True)

    a, b = losses(straight), losses(resumed)
    assert sorted(a) == [1, 2, 3, 4] and sorted(b) == [3, 4]
    for step in b:
        assert b[step] == pytest.approx(a[step], abs=1e-6), step
    for (name, p1), (_, p2) in zip(model.named_parameters(), model2.named_parameters(), strict=True):
        assert torch.allclose(p1, p2, atol=1e-6), name


def test_dpo_raises_the_margin_on_held_out_pairs(tmp_path, tiny_qwen2_dir):
    """Quality: a consistent preference ("Yes, <n> is a number." over "No, <n> is a word.") learnt on 16 prompts
    carries over to 8 prompts never trained on."""
    model, tokenizer, template = load(tiny_qwen2_dir)

    def rows(numbers):
        return [pair_row(template, f"Is {i} a number?", f"Yes, {i} is a number.", f"No, {i} is a word.")
                for i in numbers]

    held_out = rows(range(100, 108))

    def margins():
        model.eval()
        return torch.stack([sequence_logps(model, r["prompt_ids"], r["chosen_ids"])
                            - sequence_logps(model, r["prompt_ids"], r["rejected_ids"]) for r in held_out])

    before = margins()
    from datasets import Dataset

    _build(model, tokenizer, template, tmp_path, Dataset.from_list(rows(range(16))), max_steps=8,
           per_device_train_batch_size=4, learning_rate=2e-2, save_strategy="no", beta=0.1).train()
    after = margins()
    assert after.mean() > before.mean() + 2.0, (before, after)
    assert bool((after > before).all()) and bool((after > 0).all())


# Padding-free DPO: the 2B sequences of a batch in one packed row must give the padded path's loss and gradients.

def _uneven_rows(template, n: int = 4) -> list[dict]:
    """Pairs of very different lengths: prompts of 1 to ~40 words, replies of 1 to ~60 words."""
    return [pair_row(template, "Tell me" + " more" * (13 * i % 41), "Sure" + ", fine" * (29 * i % 61),
                     "No" + " way" * (7 * i % 11)) for i in range(n)]


def _record_forwards(models) -> list[tuple[str, tuple[int, ...], bool]]:
    """(model name, input_ids shape, attention mask given) of every backbone forward of the given causal LMs."""
    calls = []
    for name, m in models.items():
        m.base_model.register_forward_pre_hook(lambda mod, a, kw, name=name: calls.append(
            (name, tuple(kw["input_ids"].shape), kw.get("attention_mask") is not None)), with_kwargs=True)
    return calls


def _loss_and_grads(trainer, batch, padding_free: bool) -> tuple[float, dict[str, torch.Tensor]]:
    trainer.padding_free = padding_free
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("flags", [
    {"loss_type": ["sigmoid"]},
    {"loss_type": ["ipo", "sigmoid"], "loss_weights": [1.0, 0.5], "label_smoothing": 0.1, "rpo_alpha": 0.3,
     "ld_alpha": 0.5},
], ids=["sigmoid", "ipo_cdpo_rpo_ld"])
@pytest.mark.parametrize("tuning", ["lora", "full"])
def test_padding_free_equals_padded(tmp_path, tiny_qwen2_dir, ref_dir, tuning, flags):
    lora = tuning == "lora"
    policy, tokenizer, template = load(tiny_qwen2_dir, lora=lora)
    ref = None if lora else load(ref_dir, lora=False)[0]
    rows = _uneven_rows(template)
    trainer = _build(policy, tokenizer, template, tmp_path, pair_dataset(template, 2), ref_model=ref, beta=0.5,
                     padding_free=True, **flags)
    assert trainer.padding_free and trainer.args.padding_free
    if lora:  # the reference is the adapters-disabled model: move the policy away from it (B = 0 at init)
        generator = torch.Generator().manual_seed(1)
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.data = 0.2 * torch.randn(p.shape, generator=generator)
    batch = trainer.data_collator(rows)
    real = int(batch["attention_mask"].sum())
    assert real < 0.6 * batch["input_ids"].numel()  # mostly padding: the lengths really differ
    calls = _record_forwards({"policy": policy.get_base_model() if lora else policy, **({} if lora else {"ref": ref})})

    free_loss, free_grads = _loss_and_grads(trainer, batch, padding_free=True)
    assert calls[-2:] == [("policy", (1, real), False), ("policy" if lora else "ref", (1, real), False)]
    calls.clear()
    padded_loss, padded_grads = _loss_and_grads(trainer, batch, padding_free=False)
    assert [c[1] for c in calls] == [tuple(batch["input_ids"].shape)] * 2 and all(c[2] for c in calls)

    assert free_loss == pytest.approx(padded_loss, abs=1e-5) and padded_loss > 0.1
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert free_grads.keys() == padded_grads.keys() == trainable and len(trainable) == (28 if lora else 26)
    for name, grad in padded_grads.items():
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(free_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_padding_free_falls_back_when_sequences_would_mix(tmp_path, tiny_qwen2_dir, caplog):
    """An attention implementation that ignores position_ids for masking fails the probe: padded batches."""
    import logging

    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    def causal_only(module, query, key, value, attention_mask, **kwargs):  # no block-diagonal mask
        return sdpa_attention_forward(module, query, key, value, None, **{**kwargs, "is_causal": True})

    AttentionInterface.register("swift_test_causal_only", causal_only)
    model, tokenizer, template = load(tiny_qwen2_dir)
    model.get_base_model().set_attn_implementation("swift_test_causal_only")
    trainer = _build(model, tokenizer, template, tmp_path, pair_dataset(template, 2), padding_free=True)
    batch = trainer.data_collator(_uneven_rows(template, 2))
    logging.getLogger("swift").addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="swift"):
            trainer.compute_loss(trainer.model, batch)
    finally:
        logging.getLogger("swift").removeHandler(caplog.handler)
    assert not trainer.padding_free and "padded batches instead" in caplog.text


def test_padding_free_forward_passes_other_inputs_through():
    """Multimodal (or any unknown) inputs, calls without the fused head or without a mask keep the padded forward."""
    from swift.trainers.rlhf.dpo import padding_free_forward

    seen = []
    forward = padding_free_forward(lambda **kw: seen.append(sorted(kw)))
    ids = torch.ones(2, 3, dtype=torch.long)
    forward(input_ids=ids, attention_mask=ids, labels=ids, fused_lm_head=True, pixel_values=torch.zeros(1))
    forward(input_ids=ids, attention_mask=ids, labels=ids)
    forward(input_ids=ids, labels=ids, fused_lm_head=True)
    assert seen == [["attention_mask", "fused_lm_head", "input_ids", "labels", "pixel_values"],
                    ["attention_mask", "input_ids", "labels"], ["fused_lm_head", "input_ids", "labels"]]


def test_padding_free_training_writes_a_checkpoint(tmp_path, tiny_qwen2_dir):
    model, tokenizer, template = load(tiny_qwen2_dir)
    from datasets import Dataset

    trainer = _build(model, tokenizer, template, tmp_path, Dataset.from_list(_uneven_rows(template)),
                     padding_free=True, max_steps=2, save_steps=2)
    calls = _record_forwards({"policy": model.get_base_model()})
    trainer.train()
    assert trainer.padding_free and sorted(losses(tmp_path)) == [1, 2]
    trained = [c for c in calls if c[1][0] == 1 and c[1][1] > 11]  # not the probe's two rows of 11 tokens
    assert len(trained) == 4 and not any(c[2] for c in trained)  # policy + reference, one packed row each step
    assert_adapter_checkpoint(tmp_path / "checkpoint-2", model, tiny_qwen2_dir)

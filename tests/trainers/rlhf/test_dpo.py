"""DPO on TRL: trains with LoRA and writes a plain adapter checkpoint, TRL's loss equals `losses.dpo_loss`, the
LoRA reference is the adapters-disabled model, exact resume, and a small quality check on held-out pairs."""
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

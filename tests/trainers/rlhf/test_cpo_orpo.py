"""CPO, SimPO and ORPO on TRL's experimental trainers: each trains with LoRA into a plain adapter checkpoint, and
TRL's loss equals `losses.cpo_loss` / `simpo_loss` / `orpo_loss` on unpadded per-sequence log-probs."""
from __future__ import annotations

import pytest
import torch

from swift.trainers.rlhf import build_rlhf_trainer
from swift.trainers.rlhf.losses import cpo_loss, cpo_objective, orpo_loss, simpo_loss
from swift.trainers.rlhf.trl_glue import to_paired_features
from swift.utils.errors import ArgumentError

from .pref_helpers import assert_adapter_checkpoint, load, losses, pair_dataset, sequence_logps, train_args


def _build(rlhf_type, model, tokenizer, template, out, ds, **overrides):
    return build_rlhf_trainer(rlhf_type, model=model, tokenizer=tokenizer, template=template, train_dataset=ds,
                              args=train_args(out, **overrides),
                              checkpoint_files={"args.json": {"rlhf_type": rlhf_type}})


def test_paired_features_keep_the_prompt_and_cut_the_reply():
    row = {"prompt_ids": [1, 2, 3], "chosen_ids": [4, 5, 6], "rejected_ids": [7]}
    got = to_paired_features(row, max_length=5)
    assert got["prompt_input_ids"] == [1, 2, 3]
    assert got["chosen_input_ids"] == [1, 2, 3, 4, 5] and got["chosen_labels"] == [-100, -100, -100, 4, 5]
    assert got["rejected_input_ids"] == [1, 2, 3, 7] and got["rejected_attention_mask"] == [1, 1, 1, 1]


@pytest.mark.parametrize("rlhf_type,flags", [
    ("cpo", {"loss_type": ["sigmoid"], "cpo_alpha": 1.0}),
    ("simpo", {"loss_type": ["simpo"], "beta": 2.0, "simpo_gamma": 1.0, "cpo_alpha": 0.0}),
    ("orpo", {"beta": 0.1}),
])
def test_trains_lora_and_checkpoint_is_a_peft_adapter(tmp_path, tiny_qwen2_dir, rlhf_type, flags):
    model, tokenizer, template = load(tiny_qwen2_dir)
    trainer = _build(rlhf_type, model, tokenizer, template, tmp_path, pair_dataset(template), **flags)
    if rlhf_type == "simpo":
        assert trainer.args.loss_type == "simpo" and trainer.args.simpo_gamma == 1.0
    trainer.train()
    assert sorted(losses(tmp_path)) == [1, 2, 3]
    assert_adapter_checkpoint(tmp_path / "checkpoint-3", model, tiny_qwen2_dir)


def _logps(model, rows, side, average=False):
    return torch.stack([sequence_logps(model, r["prompt_ids"], r[f"{side}_ids"], average=average) for r in rows])


def _chosen_nll(model, rows, with_prompt=False):
    """Mean NLL over every scored token of the chosen sequences of the batch (as one cross-entropy)."""
    if with_prompt:  # every token after the first of prompt + reply
        seqs = [(r["prompt_ids"][:1], r["prompt_ids"][1:] + r["chosen_ids"]) for r in rows]
    else:
        seqs = [(r["prompt_ids"], r["chosen_ids"]) for r in rows]
    total = sum(float(sequence_logps(model, p, c)) for p, c in seqs)
    return torch.tensor(-total / sum(len(c) for _, c in seqs))


@pytest.mark.parametrize("rlhf_type,flags", [
    ("cpo", {"loss_type": "sigmoid", "beta": 0.5, "cpo_alpha": 0.7, "label_smoothing": 0.1}),
    ("cpo", {"loss_type": "hinge", "beta": 0.5, "cpo_alpha": 1.0}),
    ("simpo", {"beta": 2.0, "simpo_gamma": 0.5, "cpo_alpha": 0.3}),
    ("orpo", {"beta": 0.2}),
], ids=["cpo_sigmoid", "cpo_hinge", "simpo", "orpo"])
def test_trl_loss_equals_pure_function(tmp_path, tiny_qwen2_dir, rlhf_type, flags):
    model, tokenizer, template = load(tiny_qwen2_dir, lora=False)
    ds = pair_dataset(template, 4)
    trainer = _build(rlhf_type, model, tokenizer, template, tmp_path, ds, **flags)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    model.eval()
    calls = []
    model.register_forward_pre_hook(lambda mod, a, kw: calls.append((a or [kw.get("input_ids")])[0].shape[0]),
                                    with_kwargs=True)
    with torch.no_grad():
        got, _ = trainer.get_batch_loss_metrics(model, batch, "train")
    assert calls == [8]  # chosen and rejected in one forward
    rows = [ds[i] for i in range(4)]
    if rlhf_type == "cpo":
        prefs = cpo_loss(_logps(model, rows, "chosen"), _logps(model, rows, "rejected"), beta=flags["beta"],
                         loss_type=flags["loss_type"], label_smoothing=flags.get("label_smoothing", 0.0))
        want = cpo_objective(prefs, _chosen_nll(model, rows), flags["cpo_alpha"])
    elif rlhf_type == "simpo":
        prefs = simpo_loss(_logps(model, rows, "chosen", True), _logps(model, rows, "rejected", True),
                           beta=flags["beta"], gamma=flags["simpo_gamma"])
        want = cpo_objective(prefs, _chosen_nll(model, rows), flags["cpo_alpha"])
    else:
        want = orpo_loss(_logps(model, rows, "chosen", True), _logps(model, rows, "rejected", True),
                         _chosen_nll(model, rows, with_prompt=True), beta=flags["beta"])
    assert float(got) == pytest.approx(float(want), abs=1e-5)


def test_bad_settings_are_named(tmp_path, tiny_qwen2_dir):
    model, tokenizer, template = load(tiny_qwen2_dir)
    ds = pair_dataset(template, 2)
    with pytest.raises(ArgumentError, match="loss_type"):
        _build("cpo", model, tokenizer, template, tmp_path, ds, loss_type=["robust"])
    with pytest.raises(ArgumentError, match="loss_type"):
        _build("simpo", model, tokenizer, template, tmp_path, ds, loss_type=["sigmoid"])
    with pytest.raises(ArgumentError, match="reference"):
        build_rlhf_trainer("orpo", model=model, tokenizer=tokenizer, template=template, train_dataset=ds,
                           ref_model=object(), args=train_args(tmp_path))

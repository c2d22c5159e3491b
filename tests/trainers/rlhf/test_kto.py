"""KTO on TRL: trains with LoRA into a plain adapter checkpoint; TRL's loss equals `losses.kto_loss` with the
KL reference point of `losses.kto_kl`; the mismatched KL pairs stay inside a batch; bad settings are named."""
from __future__ import annotations

import pytest
import torch
from datasets import Dataset

from swift.trainers.rlhf import build_rlhf_trainer
from swift.trainers.rlhf.kto import SwiftKTOTrainer, add_kl_completions
from swift.trainers.rlhf.losses import kto_kl, kto_loss
from swift.utils.errors import ArgumentError, DataError

from .pref_helpers import assert_adapter_checkpoint, kto_dataset, load, losses, sequence_logps, train_args


def _build(model, tokenizer, template, out, ds, ref_model=None, **overrides):
    overrides.setdefault("per_device_train_batch_size", 4)
    return build_rlhf_trainer("kto", model=model, tokenizer=tokenizer, template=template, train_dataset=ds,
                              ref_model=ref_model, args=train_args(out, **overrides),
                              checkpoint_files={"args.json": {"rlhf_type": "kto"}})


def test_kl_completions_rotate_within_each_batch():
    ds = Dataset.from_list([{"completion_ids": [i]} for i in range(6)])
    got = add_kl_completions(ds, batch_size=4)["KL_completion_ids"]
    assert got == [[3], [0], [1], [2], [5], [4]]


def test_kto_trains_lora_and_checkpoint_is_a_peft_adapter(tmp_path, tiny_qwen2_dir):
    model, tokenizer, template = load(tiny_qwen2_dir)
    trainer = _build(model, tokenizer, template, tmp_path, kto_dataset(template), loss_type=["kto"],
                     desirable_weight=1.0, undesirable_weight=1.5)
    assert isinstance(trainer, SwiftKTOTrainer) and trainer.ref_model is None
    assert list(model.peft_config) == ["default"]
    assert trainer.args.undesirable_weight == 1.5 and trainer.args.train_sampling_strategy == "sequential"
    trainer.train()
    assert sorted(losses(tmp_path)) == [1, 2, 3]
    assert_adapter_checkpoint(tmp_path / "checkpoint-3", model, tiny_qwen2_dir)


def test_trl_loss_equals_pure_function(tmp_path, tiny_qwen2_dir):
    from swift.models.tiny import make_tiny_model

    policy, tokenizer, template = load(tiny_qwen2_dir, lora=False)
    ref, _, _ = load(make_tiny_model("qwen2", tmp_path / "ref", seed=7), lora=False)
    trainer = _build(policy, tokenizer, template, tmp_path / "out", kto_dataset(template, 4), ref_model=ref,
                     beta=0.3, desirable_weight=1.0, undesirable_weight=2.0)
    rows = [trainer.train_dataset[i] for i in range(4)]
    assert sorted(r["label"] for r in rows) == [False, False, True, True]
    trainer.model.eval()
    with torch.no_grad():
        got = float(trainer.compute_loss(trainer.model, trainer.data_collator(rows)))

    def logps(model, key):
        return torch.stack([sequence_logps(model, r["prompt_ids"], r[key]) for r in rows])

    kl = kto_kl(logps(policy, "KL_completion_ids"), logps(ref, "KL_completion_ids"))
    labels = torch.tensor([r["label"] for r in rows])
    want = kto_loss(logps(policy, "completion_ids"), logps(ref, "completion_ids"), labels, kl, beta=0.3,
                    desirable_weight=1.0, undesirable_weight=2.0).mean()
    assert got == pytest.approx(float(want), abs=1e-5)
    assert abs(float(want) - 0.5 * 1.5) > 1e-3  # not the value of policy == reference


def test_kto_settings_errors(tmp_path, tiny_qwen2_dir):
    model, tokenizer, template = load(tiny_qwen2_dir)
    ds = kto_dataset(template, 4)
    with pytest.raises(ArgumentError, match="per_device_train_batch_size"):
        _build(model, tokenizer, template, tmp_path, ds, per_device_train_batch_size=1)
    with pytest.raises(ArgumentError, match="loss_type"):
        _build(model, tokenizer, template, tmp_path, ds, loss_type=["sigmoid"])
    bad = ds.remove_columns("label").add_column("label", ["yes", "no", "yes", "no"])
    with pytest.raises(DataError, match="label") as err:
        _build(model, tokenizer, template, tmp_path, bad)
    assert err.value.row == 1 and err.value.field == "label"
    with pytest.raises(DataError, match="completion_ids"):
        _build(model, tokenizer, template, tmp_path, ds.remove_columns("completion_ids"))

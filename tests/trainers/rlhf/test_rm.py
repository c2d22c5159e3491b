"""Reward model on TRL: a seq-cls model with LoRA trains into a peft checkpoint (adapter + score head) that scores
like the trained model; TRL's loss equals `losses.pairwise_reward_loss` on unpadded whole sequences."""
from __future__ import annotations

import pytest
import torch

from swift.trainers.rlhf import build_rlhf_trainer
from swift.trainers.rlhf.losses import pairwise_reward_loss
from swift.trainers.rlhf.rm import SwiftRewardTrainer
from swift.utils.errors import ArgumentError

from .pref_helpers import assert_adapter_checkpoint, load, losses, pair_dataset, train_args


def _build(model, tokenizer, template, out, ds, **overrides):
    return build_rlhf_trainer("rm", model=model, tokenizer=tokenizer, template=template, train_dataset=ds,
                              args=train_args(out, **overrides), checkpoint_files={"args.json": {"rlhf_type": "rm"}})


def _reward(model, ids: list[int]) -> float:
    with torch.no_grad():
        return float(model(input_ids=torch.tensor([ids])).logits[0, 0])


def test_rm_trains_lora_and_checkpoint_scores_like_the_model(tmp_path, tiny_qwen2_dir):
    model, tokenizer, template = load(tiny_qwen2_dir, task="seq_cls")
    ds = pair_dataset(template)
    trainer = _build(model, tokenizer, template, tmp_path, ds, beta=0.1, learning_rate=1e-2)
    assert isinstance(trainer, SwiftRewardTrainer)
    assert trainer.train_dataset.column_names == ["chosen_ids", "rejected_ids"]
    row = ds[0]
    assert trainer.train_dataset[0]["chosen_ids"] == row["prompt_ids"] + row["chosen_ids"]
    trainer.train()
    assert sorted(losses(tmp_path)) == [1, 2, 3]
    loaded = assert_adapter_checkpoint(tmp_path / "checkpoint-3", model, tiny_qwen2_dir, task="seq_cls")
    model.eval()
    loaded.eval()
    seq = row["prompt_ids"] + row["chosen_ids"]
    assert _reward(loaded, seq) == pytest.approx(_reward(model, seq), abs=1e-6)


def test_trl_loss_equals_pure_function(tmp_path, tiny_qwen2_dir):
    model, tokenizer, template = load(tiny_qwen2_dir, task="seq_cls", lora=False)
    torch.manual_seed(0)
    torch.nn.init.normal_(model.score.weight, std=1.0)  # a head that tells the two replies apart
    ds = pair_dataset(template, 4)
    trainer = _build(model, tokenizer, template, tmp_path, ds, center_rewards_coefficient=0.05)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    model.eval()
    with torch.no_grad():
        got = float(trainer.compute_loss(model, batch))
    rows = [ds[i] for i in range(4)]
    chosen = torch.tensor([_reward(model, r["prompt_ids"] + r["chosen_ids"]) for r in rows])
    rejected = torch.tensor([_reward(model, r["prompt_ids"] + r["rejected_ids"]) for r in rows])
    want = float(pairwise_reward_loss(chosen, rejected, center_rewards_coefficient=0.05))
    assert got == pytest.approx(want, abs=1e-5)
    assert abs(want - 0.6931472) > 1e-3


def test_rm_needs_a_sequence_classifier(tmp_path, tiny_qwen2_dir):
    model, tokenizer, template = load(tiny_qwen2_dir, task="causal_lm", lora=False)
    with pytest.raises(ArgumentError, match="seq_cls"):
        _build(model, tokenizer, template, tmp_path, pair_dataset(template, 2))

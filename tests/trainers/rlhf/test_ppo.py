"""PPO: the maths against hand-computed numbers, end-to-end runs (LoRA, full, reward model), exact resume, and
a toy task whose reward must rise."""
from __future__ import annotations

import json
import math
import os

import pytest
import torch
from safetensors.torch import load_file

from swift.trainers.rlhf.ppo import VALUE_HEAD_FILE, RolloutSampler, build_trainer
from swift.trainers.rlhf.ppo_core import (
    entropy_of,
    gae_advantages,
    kl_estimate,
    logprobs_of,
    masked_mean,
    masked_whiten,
    pad_sequences,
    policy_loss,
    token_rewards,
    truncate_at_stop,
    value_loss,
)
from swift.utils.errors import ArgumentError, SwiftError

from .online_helpers import biased_policy, prompt_dataset, rewards_logged, target_rate
from .pref_helpers import assert_adapter_checkpoint, load, train_args


def t(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def close(got: torch.Tensor, want: list) -> None:
    torch.testing.assert_close(got.detach().float(), torch.tensor(want, dtype=torch.float32), rtol=1e-5, atol=1e-6)


# ---- maths ---------------------------------------------------------------------------------------------
def test_masked_mean_and_whiten_by_hand():
    x, mask = t([1.0, 3.0, 5.0, 100.0]), t([1, 1, 1, 0])
    assert float(masked_mean(x, mask)) == pytest.approx(3.0)
    assert masked_mean(t([1.0, 2.0], [3.0, 9.0]), t([1, 0], [1, 1]), dim=1).tolist() == [1.0, 6.0]
    # mean 3, unbiased variance (4 + 0 + 4) / 2 = 4, std 2; the masked entry becomes 0
    assert masked_whiten(x, mask).tolist()[0] == pytest.approx([-1.0, 0.0, 1.0, 0.0], abs=1e-6)
    assert masked_whiten(x, mask, shift_mean=False).tolist()[0] == pytest.approx([2.0, 3.0, 4.0, 0.0], abs=1e-6)


def test_logprobs_and_entropy_by_hand():
    logits = torch.log(t([[0.5, 0.25, 0.25], [0.25, 0.25, 0.5]]))  # [1, 2, 3]: two positions, vocab 3
    close(logprobs_of(logits, torch.tensor([[0, 2]])), [[math.log(0.5), math.log(0.5)]])
    close(entropy_of(logits), [[1.5 * math.log(2)] * 2])  # -(0.5 log 0.5 + 2 * 0.25 log 0.25)
    flat = torch.zeros(1, 1, 4)
    close(entropy_of(flat * 3.0, temperature=2.0), [[math.log(4)]])
    close(logprobs_of(torch.tensor([[[2.0, 0.0]]]), torch.tensor([[1]]), temperature=2.0),
          [[-math.log(1 + math.e)]])  # logits / 2 = [1, 0]: log(e^0 / (e^1 + e^0))


def test_kl_estimators_by_hand():
    logp, ref = t([math.log(0.5)]), t([math.log(0.25)])  # pi / pi_ref = 2
    assert float(kl_estimate(logp, ref, "k1")) == pytest.approx(math.log(2))
    assert float(kl_estimate(logp, ref, "k3")) == pytest.approx((0.5 - 1) - math.log(0.5))
    assert float(kl_estimate(logp, ref, "abs")) == pytest.approx(math.log(2))
    assert float(kl_estimate(logp, ref, "mse")) == pytest.approx(0.5 * math.log(2) ** 2)
    with pytest.raises(ValueError):
        kl_estimate(logp, ref, "k2")


def test_token_rewards_pay_the_score_at_the_last_real_token():
    logp = t([-1.0, -2.0, -3.0], [-1.0, -1.0, -9.0])
    ref = t([-1.5, -2.0, -2.0], [-2.0, -1.0, -1.0])
    mask = t([1, 1, 1], [1, 1, 0])
    rewards, kl = token_rewards(torch.tensor([2.0, -1.0]), logp, ref, mask, kl_coef=0.1)
    close(kl, [[0.5, 0.0, -1.0], [1.0, 0.0, 0.0]])
    # row 1: -0.1 * kl, + 2 at t=2; row 2: -0.1 * kl, -1 at t=1 (its last real token), 0 on padding
    close(rewards, [[-0.05, 0.0, 2.1], [-0.1, -1.0, 0.0]])


def test_gae_by_hand():
    rewards = t([0.0, 0.0, 1.0], [0.0, 2.0, 9.0])
    values = t([0.5, 0.2, 0.4], [1.0, 0.5, 7.0])
    mask = t([1, 1, 1], [1, 1, 0])
    adv, ret = gae_advantages(rewards, values, mask, gamma=1.0, lam=0.5)
    # row 1: d2 = 1 - 0.4 = 0.6; d1 = 0.4 - 0.2 = 0.2, A1 = 0.2 + 0.5 * 0.6 = 0.5; d0 = 0.2 - 0.5, A0 = -0.3 + 0.25
    # row 2 (t=2 is padding: its reward and value are ignored): d1 = 2 - 0.5, A1 = 1.5; A0 = -0.5 + 0.5 * 1.5
    close(adv, [[-0.05, 0.5, 0.6], [0.25, 1.5, 0.0]])
    close(ret, [[0.45, 0.7, 1.0], [1.25, 2.0, 0.0]])
    # lam = 1: advantages are the discounted returns minus the values (0.81 - 0.5, 0.9 - 0.2, 1 - 0.4)
    adv, _ = gae_advantages(rewards[:1], values[:1], mask[:1], gamma=0.9, lam=1.0)
    assert adv.tolist()[0] == pytest.approx([0.31, 0.7, 0.6])


def test_policy_loss_by_hand():
    old = torch.zeros(1, 4)
    new = torch.log(t([1.5, 0.5, 1.5, 3.0])).requires_grad_(True)
    adv, mask = t([1.0, 1.0, -1.0, 5.0]), t([1, 1, 1, 0])
    loss, stats = policy_loss(new, old, adv, mask, cliprange=0.2)
    # token 1: max(-1.5, -1.2) = -1.2 (clipped); token 2: max(-0.5, -0.8) = -0.5; token 3: max(1.5, 1.2) = 1.5
    assert float(loss.detach()) == pytest.approx((-1.2 - 0.5 + 1.5) / 3)
    assert float(stats["clipfrac"]) == pytest.approx(1 / 3)
    assert float(stats["approx_kl"]) == pytest.approx((0.5 * math.log(1.5) ** 2 * 2 + 0.5 * math.log(0.5) ** 2) / 3)
    loss.backward()
    # d/dlogp of -A * ratio is -A * ratio where unclipped, 0 where the clipped term won or on padding
    assert new.grad.tolist()[0] == pytest.approx([0.0, -0.5 / 3, 1.5 / 3, 0.0])


def test_value_loss_by_hand():
    loss, clipfrac = value_loss(t([0.5, -0.5, 4.0]), torch.zeros(1, 3), t([1.0, 1.0, 0.0]), t([1, 1, 0]), 0.2)
    # t1: (0.5-1)^2 = 0.25 vs (0.2-1)^2 = 0.64 -> 0.64; t2: (-1.5)^2 = 2.25 vs (-1.2)^2 = 1.44 -> 2.25
    assert float(loss) == pytest.approx(0.5 * (0.64 + 2.25) / 2)
    assert float(clipfrac) == pytest.approx(0.5)


def test_rollout_helpers():
    assert truncate_at_stop([5, 6, 2, 7, 0], [2, 0]) == [5, 6, 2]
    assert truncate_at_stop([5, 6], [2]) == [5, 6]
    ids, mask = pad_sequences([[1, 2], [3]], 0, "left")
    assert ids.tolist() == [[1, 2], [0, 3]] and mask.tolist() == [[1, 1], [0, 1]]
    ids, mask = pad_sequences([[1, 2], [3]], 9, "right")
    assert ids.tolist() == [[1, 2], [3, 9]] and mask.tolist() == [[1, 1], [1, 0]]
    sampler = RolloutSampler(5, batch_size=2, repeat=3, seed=0, shuffle=False)
    assert list(sampler) == [0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3] and len(sampler) == 12
    shuffled = RolloutSampler(6, batch_size=3, repeat=2, seed=0)
    first = list(shuffled)
    assert first[:3] == first[3:6] and sorted(first[::1][:3] + first[6:9]) == list(range(6))
    shuffled.set_epoch(1)
    assert list(shuffled) != first


# ---- end to end ----------------------------------------------------------------------------------------
def test_test_rows_are_the_data_contracts(tiny_qwen2_dir):
    """The rows these tests build by hand are what swift.data.encode_preference_rows(kind="prompt") makes."""
    from swift.data import encode_preference_rows

    _, _, tpl = load(tiny_qwen2_dir, lora=False)
    ours = prompt_dataset(tpl, n=3)
    rows = [{"messages": json.loads(r["messages"]), "solution": r["solution"]} for r in ours]
    theirs = encode_preference_rows(rows, tpl, kind="prompt", load_from_cache_file=False)
    assert theirs.column_names == ours.column_names
    assert theirs.to_list() == ours.to_list()


def _args(out, **overrides):
    base = dict(per_device_train_batch_size=2, gradient_accumulation_steps=2, num_ppo_epochs=2,
                max_completion_length=6, temperature=1.0, kl_coef=0.1, save_steps=2)
    return train_args(out, **{**base, **overrides})


def _records(out) -> list[dict]:
    with open(os.path.join(out, "logging.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_lora_end_to_end_and_exact_resume(tmp_path, tiny_qwen2_dir):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    model, tok, tpl = load(tiny_qwen2_dir)
    trainer = build_trainer(model=model, tokenizer=tok, template=tpl, train_dataset=prompt_dataset(tpl),
                            args=_args(straight), reward_funcs=["accuracy", "length"],
                            checkpoint_files={"args.json": {"rlhf_type": "ppo"}})
    trainer.train()
    ckpt = straight / "checkpoint-3"
    assert sorted(os.listdir(straight)) == ["checkpoint-2", "checkpoint-3", "logging.jsonl", "loss_curve.png"]
    assert_adapter_checkpoint(ckpt, trainer.model, tiny_qwen2_dir)
    assert json.loads((ckpt / "args.json").read_text()) == {"rlhf_type": "ppo"}
    head = load_file(str(ckpt / VALUE_HEAD_FILE))
    assert torch.equal(head["summary.weight"], trainer.value_head.summary.weight.detach())
    assert head["summary.weight"].abs().sum() > 0  # the value head learned something
    logs = {r["step"]: r for r in _records(straight) if "loss" in r}
    # rollouts at steps 1 and 3 (num_ppo_epochs=2: step 2 trains again on the first rollout)
    assert {"reward", "rewards/accuracy", "rewards/length", "kl", "pg_loss", "vf_loss"} <= set(logs[1])
    assert "reward" in logs[3] and "reward" not in logs[2] and "pg_loss" in logs[2]
    assert logs[1]["kl"] == pytest.approx(0.0, abs=1e-6)  # a fresh adapter: policy == adapters-disabled reference
    assert logs[3]["kl"] != 0.0

    # resume from checkpoint-2 (in a fresh process state) lands on the very same weights
    import shutil

    shutil.copytree(straight / "checkpoint-2", resumed / "checkpoint-2")
    model2, _, _ = load(tiny_qwen2_dir)
    again = build_trainer(model=model2, tokenizer=tok, template=tpl, train_dataset=prompt_dataset(tpl),
                          args=_args(resumed), reward_funcs=["accuracy", "length"])
    again.train(resume_from_checkpoint=True)
    assert again.state.global_step == 3
    for name in ("adapter_model.safetensors", VALUE_HEAD_FILE):
        a, b = load_file(str(ckpt / name)), load_file(str(resumed / "checkpoint-3" / name))
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=f"{name}: {k}")


def test_full_tuning_frozen_reference_plain_model_and_eval(tmp_path, tiny_qwen2_dir):
    from transformers import AutoModelForCausalLM

    model, tok, tpl = load(tiny_qwen2_dir, lora=False)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = build_trainer(model=model, tokenizer=tok, template=tpl, train_dataset=prompt_dataset(tpl),
                            eval_dataset=prompt_dataset(tpl, n=4, offset=8), reward_funcs=["length"],
                            args=_args(tmp_path, max_steps=2, learning_rate=1e-2, eval_strategy="steps", eval_steps=2))
    trainer.train()
    evals = [r for r in trainer.state.log_history if "eval_loss" in r]
    assert len(evals) == 1 and {"eval_reward", "eval_kl", "eval_pg_loss"} <= set(evals[0])
    ref = trainer.ref_model.state_dict()
    assert all(torch.equal(ref[k], initial[k]) for k in initial)  # the reference did not move
    assert any(not torch.equal(v, initial[k]) for k, v in model.state_dict().items() if k in initial)
    ckpt = tmp_path / "checkpoint-2"
    assert not any(k.startswith("v_head") for k in load_file(str(ckpt / "model.safetensors")))
    assert (ckpt / VALUE_HEAD_FILE).is_file()
    loaded = AutoModelForCausalLM.from_pretrained(str(ckpt))
    trained = model.state_dict()
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, trained[k]), k


def test_reward_model_scores_the_token_ids(tmp_path, tiny_qwen2_dir):
    from swift.models.loader import load_model_and_tokenizer

    reward_model, _, _ = load_model_and_tokenizer(tiny_qwen2_dir, task="seq_cls")
    model, tok, tpl = load(tiny_qwen2_dir)
    trainer = build_trainer(model=model, tokenizer=tok, template=tpl, train_dataset=prompt_dataset(tpl),
                            args=_args(tmp_path, max_steps=1, save_steps=1), reward_model=reward_model)
    trainer.train()
    first = _records(tmp_path)[0]
    assert first["reward"] == pytest.approx(first["rewards/reward_model"]) and first["reward"] != 0.0


def test_a_loaded_adapter_is_its_own_reference(tmp_path, tiny_qwen2_dir):
    """An adapter that already changes the model (random B here, like a loaded one): the reference is a frozen
    copy of it, so the first rollout has no KL; disabling the adapters would have given a different model."""
    model, tok, tpl = load(tiny_qwen2_dir, init_weights=False)
    trainer = build_trainer(model=model, tokenizer=tok, template=tpl, train_dataset=prompt_dataset(tpl),
                            args=_args(tmp_path, max_steps=1, save_strategy="no"), reward_funcs=["length"])
    ref_before = {n: p.clone() for n, p in model.named_parameters() if ".ref." in n}
    assert ref_before and not any(p.requires_grad for n, p in model.named_parameters() if ".ref." in n)
    trainer.train()
    assert trainer.state.log_history[0]["kl"] == pytest.approx(0.0, abs=1e-6)
    assert all(torch.equal(p, ref_before[n]) for n, p in model.named_parameters() if n in ref_before)
    assert model.active_adapter == "default"


def test_user_errors(tmp_path, tiny_qwen2_dir):
    model, tok, tpl = load(tiny_qwen2_dir)
    kw = dict(model=model, tokenizer=tok, template=tpl, train_dataset=prompt_dataset(tpl))
    with pytest.raises(ArgumentError, match="reward"):
        build_trainer(**kw, args=_args(tmp_path))
    with pytest.raises(ArgumentError, match="num_ppo_epochs"):
        build_trainer(**kw, args=_args(tmp_path, num_ppo_epochs=0), reward_funcs=["length"])
    with pytest.raises(SwiftError, match="prompt_ids"):
        build_trainer(**{**kw, "train_dataset": prompt_dataset(tpl).remove_columns("prompt_ids")},
                      args=_args(tmp_path), reward_funcs=["length"])
    with pytest.raises(SwiftError, match="unknown reward function"):
        build_trainer(**kw, args=_args(tmp_path), reward_funcs=["nope"])
    from transformers import Qwen2Config, Qwen2ForSequenceClassification

    other = Qwen2ForSequenceClassification(Qwen2Config(vocab_size=64, hidden_size=16, intermediate_size=32,
                                                       num_hidden_layers=1, num_attention_heads=2,
                                                       num_key_value_heads=1, num_labels=1))
    with pytest.raises(SwiftError, match="vocabulary"):
        build_trainer(**kw, args=_args(tmp_path), reward_model=other)
    trainer = build_trainer(**{**kw, "train_dataset": prompt_dataset(tpl, n=3)}, args=_args(tmp_path),
                            reward_funcs=["length"])
    with pytest.raises(SwiftError, match="only 3"):
        trainer.train()


# ---- quality ------------------------------------------------------------------------------------------
def test_ppo_raises_the_reward_of_a_toy_task(tmp_path):
    """The policy samples among 8 tokens; the reward is the share of one of them (about 1/8 at first)."""
    from swift.models.tiny import make_tiny_model

    model, tok, tpl = biased_policy(make_tiny_model("qwen2", tmp_path / "base", tie_word_embeddings=False))
    args = train_args(tmp_path / "out", max_steps=12, save_strategy="no", learning_rate=1e-2,
                      lr_scheduler_type="constant", per_device_train_batch_size=16, num_ppo_epochs=2,
                      max_completion_length=8, temperature=1.0, kl_coef=0.0)
    trainer = build_trainer(model=model, tokenizer=tok, template=tpl, train_dataset=prompt_dataset(tpl, n=16),
                            args=args, reward_funcs=[target_rate])
    trainer.train()
    rewards = rewards_logged(trainer)
    assert len(rewards) == 6  # a rollout every num_ppo_epochs steps
    first, last = sum(rewards[:2]) / 2, sum(rewards[-2:]) / 2
    assert first < 0.3 and last > first + 0.4, rewards


@pytest.mark.slow
def test_ppo_learns_to_stop_near_a_target_length(tmp_path):
    """The built-in length reward (3 tokens, linear): the policy must learn to emit its end-of-turn token early
    (about 7 tokens at first, so the reward starts near 0.2)."""
    from swift.models.tiny import make_tiny_model
    from swift.trainers.rlhf.rewards import make_length_reward

    model, tok, tpl = biased_policy(make_tiny_model("qwen2", tmp_path / "base", tie_word_embeddings=False),
                                    candidates=[2, *range(100, 107)])  # 2 = <|im_end|>
    args = train_args(tmp_path / "out", max_steps=20, save_strategy="no", learning_rate=3e-3,
                      lr_scheduler_type="constant", per_device_train_batch_size=16, num_ppo_epochs=2,
                      max_completion_length=10, temperature=1.0, kl_coef=0.0)
    trainer = build_trainer(model=model, tokenizer=tok, template=tpl, train_dataset=prompt_dataset(tpl, n=16),
                            args=args, reward_funcs=[make_length_reward(target=3, shape="linear", unit="tokens")])
    trainer.train()
    rewards = rewards_logged(trainer)
    assert rewards[0] < 0.3 and sum(rewards[-5:]) / 5 > rewards[0] + 0.15, rewards

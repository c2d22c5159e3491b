"""GRPO (TRL's trainer, SwiftLab's prompts/rewards/references/checkpoints): end to end with LoRA and resume, full
tuning, a reward model, argument mapping, and a toy task whose reward must rise."""
from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from swift.trainers.rlhf.grpo import as_trl_reward, build_trainer, grpo_config, to_trl_prompts
from swift.utils.errors import ArgumentError, SwiftError

from .online_helpers import biased_policy, prompt_dataset, rewards_logged, target_rate
from .pref_helpers import assert_adapter_checkpoint, load, train_args


def _args(out, **overrides):
    base = dict(per_device_train_batch_size=4, num_generations=4, max_completion_length=6, temperature=1.0,
                save_steps=2)
    return train_args(out, **{**base, **overrides})


def _records(out) -> list[dict]:
    with open(os.path.join(out, "logging.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_lora_end_to_end_and_resume(tmp_path, tiny_qwen2_dir):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    model, tok, tpl = load(tiny_qwen2_dir)
    trainer = build_trainer(model=model, tokenizer=tok, template=tpl, train_dataset=prompt_dataset(tpl),
                            args=_args(straight), reward_funcs=["accuracy", "format", "length"],
                            checkpoint_files={"args.json": {"rlhf_type": "grpo"}})
    assert "ref" not in model.peft_config  # TRL's copy of the fresh adapter was dropped: adapters disabled instead
    trainer.train()
    assert sorted(os.listdir(straight)) == ["checkpoint-2", "checkpoint-3", "logging.jsonl", "loss_curve.png"]
    ckpt = straight / "checkpoint-3"
    assert_adapter_checkpoint(ckpt, trainer.model, tiny_qwen2_dir)
    assert json.loads((ckpt / "args.json").read_text()) == {"rlhf_type": "grpo"}
    first = _records(straight)[0]
    assert {"reward", "rewards/accuracy/mean", "rewards/format/mean", "rewards/length/mean", "kl"} <= set(first)
    assert first["completions/max_length"] <= 6

    import shutil

    shutil.copytree(straight / "checkpoint-2", resumed / "checkpoint-2")
    model2, _, _ = load(tiny_qwen2_dir)
    again = build_trainer(model=model2, tokenizer=tok, template=tpl, train_dataset=prompt_dataset(tpl),
                          args=_args(resumed), reward_funcs=["accuracy", "format", "length"])
    again.train(resume_from_checkpoint=True)
    assert again.state.global_step == 3
    a = load_file(str(ckpt / "adapter_model.safetensors"))
    b = load_file(str(resumed / "checkpoint-3" / "adapter_model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_prompts_are_our_prompt_ids_not_the_tokenizer_template(tmp_path, tiny_qwen2_dir):
    """A tokenizer without a chat template (SwiftLab's template comes from its own spec): TRL would have to render
    the conversation itself and fails; the trainer generates from the rows' prompt_ids instead."""
    from swift.templates import get_template

    model, tok, _ = load(tiny_qwen2_dir)
    tok.chat_template = None
    tpl = get_template(tok, "chatml")
    seen = []

    def spy(completions, prompt_ids, **kwargs):
        seen.extend(tuple(p) for p in prompt_ids)
        return [0.0] * len(completions)

    ds = prompt_dataset(tpl, n=4)
    trainer = build_trainer(model=model, tokenizer=tok, template=tpl, train_dataset=ds,
                            args=_args(tmp_path, max_steps=1, save_strategy="no"), reward_funcs=[spy])
    trainer.train()
    assert set(seen) <= {tuple(p) for p in ds["prompt_ids"]} and len(seen) == 4


def test_full_tuning_reference_is_the_in_memory_model(tmp_path, tiny_qwen2_dir):
    """The reference is a frozen copy of the model as given (here changed after loading), not a reload from disk."""
    model, tok, tpl = load(tiny_qwen2_dir, lora=False)
    with torch.no_grad():
        model.model.norm.weight.mul_(1.5)
    given = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = build_trainer(model=model, tokenizer=tok, template=tpl, train_dataset=prompt_dataset(tpl),
                            args=_args(tmp_path, max_steps=2, learning_rate=1e-2, save_strategy="no"),
                            reward_funcs=["length"])
    assert trainer.ref_model is not None and trainer.ref_model is not model
    trainer.train()
    ref = trainer.ref_model.state_dict()
    assert all(torch.equal(ref[k], v) for k, v in given.items())
    assert any(not torch.equal(v, given[k]) for k, v in model.state_dict().items())


def test_reward_model_scores_the_token_ids(tmp_path, tiny_qwen2_dir):
    from swift.models.loader import load_model_and_tokenizer

    reward_model, _, _ = load_model_and_tokenizer(tiny_qwen2_dir, task="seq_cls")
    model, tok, tpl = load(tiny_qwen2_dir)
    trainer = build_trainer(model=model, tokenizer=tok, template=tpl, train_dataset=prompt_dataset(tpl),
                            args=_args(tmp_path, max_steps=1, save_strategy="no", reward_weights=[0.5]),
                            reward_funcs=["length"], reward_model=reward_model)
    trainer.train()
    first = _records(tmp_path)[0]
    assert "rewards/reward_model/mean" in first and first["rewards/reward_model/mean"] != 0.0
    assert first["reward"] == pytest.approx(0.5 * first["rewards/length/mean"] + first["rewards/reward_model/mean"],
                                            abs=1e-5)


def test_adapters_and_argument_mapping():
    def count(completions, **kwargs):
        return [float(len(c)) for c in completions]

    reward = as_trl_reward(count)
    assert reward.__name__ == "count"
    assert reward(prompts=[[{"role": "user", "content": "q"}]],
                  completions=[[{"role": "assistant", "content": "abc"}]], completion_ids=[[1]]) == [3.0]
    assert as_trl_reward(__import__("swift.trainers.rlhf.rewards", fromlist=["x"]).accuracy).__name__ == "accuracy"

    config = grpo_config({"output_dir": "/tmp/x", "use_cpu": True, "loss_type": ["grpo"], "num_generations": 2,
                          "per_device_train_batch_size": 2, "beta": None, "max_length": 64, "kl_coef": 3.0})
    assert config.loss_type == "grpo" and config.beta == 0.04 and config.disable_dropout
    assert config.bf16 is False and config.gradient_checkpointing is False and config.learning_rate == 5e-5
    assert config.remove_unused_columns is False and config.use_vllm is False
    with pytest.raises(ArgumentError, match="loss_type"):
        grpo_config({"output_dir": "/tmp/x", "loss_type": ["grpo", "dapo"]})
    with pytest.raises(ArgumentError, match="divisible by num_generations"):
        grpo_config({"output_dir": "/tmp/x", "use_cpu": True, "num_generations": 3, "per_device_train_batch_size": 4})


def test_user_errors(tmp_path, tiny_qwen2_dir):
    from datasets import Dataset

    model, tok, tpl = load(tiny_qwen2_dir)
    kw = dict(model=model, tokenizer=tok, template=tpl, train_dataset=prompt_dataset(tpl))
    with pytest.raises(ArgumentError, match="reward"):
        build_trainer(**kw, args=_args(tmp_path))
    with pytest.raises(ArgumentError, match="reward_weights"):
        build_trainer(**kw, args=_args(tmp_path, reward_weights=[1.0, 2.0]), reward_funcs=["length"])
    with pytest.raises(SwiftError, match="messages"):
        to_trl_prompts(Dataset.from_list([{"prompt_ids": [1, 2]}]), "train_dataset")
    rows = to_trl_prompts(prompt_dataset(tpl, n=1), "train_dataset")
    assert rows[0]["prompt"] == [{"role": "user", "content": "What is 0 plus 0?"}]


def test_grpo_raises_the_reward_of_a_toy_task(tmp_path):
    """The policy samples among 8 tokens; the reward is the share of one of them (about 1/8 at first)."""
    from swift.models.tiny import make_tiny_model

    model, tok, tpl = biased_policy(make_tiny_model("qwen2", tmp_path / "base", tie_word_embeddings=False))
    args = train_args(tmp_path / "out", max_steps=8, save_strategy="no", learning_rate=5e-2,
                      lr_scheduler_type="constant", per_device_train_batch_size=16, num_generations=8,
                      max_completion_length=8, temperature=1.0, beta=0.0)
    trainer = build_trainer(model=model, tokenizer=tok, template=tpl, train_dataset=prompt_dataset(tpl, n=16),
                            args=args, reward_funcs=[target_rate])
    trainer.train()
    rewards = rewards_logged(trainer)
    assert len(rewards) == 8
    first, last = sum(rewards[:2]) / 2, sum(rewards[-2:]) / 2
    assert first < 0.3 and last > first + 0.4, rewards


@pytest.mark.slow
def test_grpo_learns_to_stop_near_a_target_length(tmp_path):
    """The built-in length reward (3 tokens, linear): the policy must learn to emit its end-of-turn token early
    (about 7 tokens at first, so the reward starts near 0.2)."""
    from swift.models.tiny import make_tiny_model
    from swift.trainers.rlhf.rewards import make_length_reward

    model, tok, tpl = biased_policy(make_tiny_model("qwen2", tmp_path / "base", tie_word_embeddings=False),
                                    candidates=[2, *range(100, 107)])  # 2 = <|im_end|>
    args = train_args(tmp_path / "out", max_steps=20, save_strategy="no", learning_rate=1e-2,
                      lr_scheduler_type="constant", per_device_train_batch_size=16, num_generations=8,
                      max_completion_length=10, temperature=1.0, beta=0.0)
    trainer = build_trainer(model=model, tokenizer=tok, template=tpl, train_dataset=prompt_dataset(tpl, n=16),
                            args=args, reward_funcs=[make_length_reward(target=3, shape="linear", unit="tokens")])
    trainer.train()
    rewards = rewards_logged(trainer)
    assert rewards[0] < 0.3 and sum(rewards[-5:]) / 5 > rewards[0] + 0.15, rewards

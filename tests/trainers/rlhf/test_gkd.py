"""GKD (TRL's trainer on SwiftLab's SFT rows): the collator seam, end to end with LoRA and resume, errors, and
distillation that brings the student closer to the teacher."""
from __future__ import annotations

import json
import os

import pytest
import torch

from swift.trainers.rlhf.gkd import GKDCollator, build_trainer, gkd_config, last_reply_start
from swift.utils.errors import ArgumentError, SwiftError

from .online_helpers import biased_policy
from .pref_helpers import assert_adapter_checkpoint, load, losses, train_args


def _rows(n: int = 8) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}]} for i in range(n)]


def _encoded(template, n: int = 8):
    from swift.data import encode_rows

    return encode_rows(_rows(n), template)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> str:
    from swift.models.tiny import make_tiny_model

    return make_tiny_model("qwen2", tmp_path_factory.mktemp("teacher"), seed=1)


def _teacher(teacher_dir):
    from swift.models.loader import load_model_and_tokenizer

    return load_model_and_tokenizer(teacher_dir)[0]


def test_last_reply_start():
    assert last_reply_start([-100, -100, 5, 6, -100]) == 2
    assert last_reply_start([-100, 1, 2, -100, -100, 3, 4]) == 5
    assert last_reply_start([-100, -100]) == -1
    assert last_reply_start([1, 2]) == 0


def test_collator_derives_the_prompt_from_our_encoding(tiny_qwen2_dir):
    _, tok, tpl = load(tiny_qwen2_dir, lora=False)
    one = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}]
    two = [*one, {"role": "user", "content": "and again?"}, {"role": "assistant", "content": "yes"}]
    rows = [tpl.encode(one), tpl.encode(two)]
    batch = GKDCollator(tok.pad_token_id)(rows)
    prompts = [tpl.encode_prompt(one[:1]), tpl.encode_prompt(two[:3])]  # the history before the LAST reply
    width = max(len(p) for p in prompts)
    for i, p in enumerate(prompts):
        assert batch["prompts"][i, width - len(p):].tolist() == p  # left padded, ready for generate
        assert batch["prompt_attention_mask"][i].sum() == len(p)
        n = len(rows[i]["input_ids"])
        assert batch["input_ids"][i, :n].tolist() == rows[i]["input_ids"]
        assert batch["labels"][i, :n].tolist() == rows[i]["labels"]  # every reply stays in the loss
        assert (batch["labels"][i, n:] == -100).all() and batch["attention_mask"][i].sum() == n
    with pytest.raises(SwiftError, match="no prompt before"):
        GKDCollator(0)([{"input_ids": [1, 2, 3], "labels": [1, 2, 3]}])


def test_lora_end_to_end_and_resume(tmp_path, tiny_qwen2_dir, teacher_dir):
    model, tok, tpl = load(tiny_qwen2_dir)
    args = train_args(tmp_path, save_steps=2, max_completion_length=6, lmbda=0.5, seq_kd=True, beta=0.5)
    trainer = build_trainer(model=model, tokenizer=tok, template=tpl, train_dataset=_encoded(tpl),
                            args=args, teacher_model=_teacher(teacher_dir),
                            checkpoint_files={"args.json": {"rlhf_type": "gkd"}})
    assert set(tpl.stop_token_ids) <= set(trainer.generation_config.eos_token_id)
    assert trainer.generation_config.max_new_tokens == 6
    trainer.train()
    ckpt = tmp_path / "checkpoint-3"
    assert_adapter_checkpoint(ckpt, trainer.model, tiny_qwen2_dir)
    assert json.loads((ckpt / "args.json").read_text()) == {"rlhf_type": "gkd"}
    assert len(losses(tmp_path)) == 3

    model2, _, _ = load(tiny_qwen2_dir)
    again = build_trainer(model=model2, tokenizer=tok, template=tpl, train_dataset=_encoded(tpl),
                          args={**args, "max_steps": 4}, teacher_model=_teacher(teacher_dir))
    again.train(resume_from_checkpoint=True)
    assert again.state.global_step == 4 and os.path.isdir(tmp_path / "checkpoint-4")


def test_config_mapping_and_user_errors(tmp_path, tiny_qwen2_dir, teacher_dir):
    config = gkd_config({"output_dir": str(tmp_path), "max_completion_length": 17, "lmbda": 0.25, "beta": 0.1,
                         "temperature": 0.7, "seq_kd": True, "kl_coef": 9.0, "use_cpu": True})
    assert (config.max_new_tokens, config.lmbda, config.beta, config.temperature, config.seq_kd) == (
        17, 0.25, 0.1, 0.7, True)
    assert config.bf16 is False and config.gradient_checkpointing is False and config.remove_unused_columns is False
    with pytest.raises(ArgumentError, match="beta"):
        gkd_config({"output_dir": str(tmp_path), "beta": 2.0})

    model, tok, tpl = load(tiny_qwen2_dir)
    kw = dict(model=model, tokenizer=tok, template=tpl, args=train_args(tmp_path))
    with pytest.raises(ArgumentError, match="teacher_model"):
        build_trainer(**kw, train_dataset=_encoded(tpl))
    from datasets import Dataset

    with pytest.raises(SwiftError, match="input_ids, labels"):
        build_trainer(**kw, train_dataset=Dataset.from_list([{"prompt_ids": [1], "messages": "[]"}]),
                      teacher_model=_teacher(teacher_dir))
    from transformers import Qwen2Config, Qwen2ForCausalLM

    small = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    with pytest.raises(ArgumentError, match="vocabulary"):
        build_trainer(**kw, train_dataset=_encoded(tpl), teacher_model=small)


def test_distillation_brings_the_student_to_the_teacher(tmp_path, tiny_qwen2_dir):
    """Teacher-forced GKD (lmbda=0) from a peaked teacher (mass on 8 tokens) into a near-uniform student: the JSD
    between them on the replies falls (full tuning: a LoRA on this 2-layer model cannot reshape the output head)."""
    from swift.models.tiny import make_tiny_model

    teacher, _, _ = biased_policy(make_tiny_model("qwen2", tmp_path / "teacher", tie_word_embeddings=False),
                                  lora=False)
    model, tok, tpl = load(tiny_qwen2_dir, lora=False)
    args = train_args(tmp_path / "out", max_steps=12, save_strategy="no", learning_rate=1e-2,
                      lr_scheduler_type="constant", per_device_train_batch_size=4, lmbda=0.0, beta=0.5)
    trainer = build_trainer(model=model, tokenizer=tok, template=tpl, train_dataset=_encoded(tpl, n=4),
                            args=args, teacher_model=teacher)
    trainer.train()
    curve = [v for _, v in sorted(losses(tmp_path / "out").items())]
    assert len(curve) == 12 and torch.isfinite(torch.tensor(curve)).all()
    assert sum(curve[-3:]) / 3 < 0.6 * sum(curve[:3]) / 3, curve

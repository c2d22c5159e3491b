"""SwiftTrainer: exact resume (full and LoRA), logging.jsonl + loss curve, token accuracy."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from trainer_helpers import PadCollator, make_args, make_model, make_rows

from swift.trainers import SwiftTrainer, find_latest_checkpoint, is_complete_checkpoint, token_accuracy_counts

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _records(output_dir) -> list[dict]:
    with open(os.path.join(output_dir, "logging.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _losses(output_dir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in _records(output_dir) if "loss" in r}


def _trainer(model, output_dir, **overrides) -> SwiftTrainer:
    args = make_args(str(output_dir), eval_strategy="steps", eval_steps=3, **overrides)
    return SwiftTrainer(
        model,
        args,
        train_dataset=make_rows(),
        eval_dataset=make_rows(4, seed=1),
        data_collator=PadCollator(),
        checkpoint_files={"args.json": {"model": "tiny", "lr": 5e-3}},
    )


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_resume_matches_straight_run(tmp_path, lora):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    t1 = _trainer(make_model(lora=lora), straight, metric_for_best_model="eval_loss")
    t1.train()
    assert sorted(os.listdir(straight)) == ["checkpoint-3", "checkpoint-6", "logging.jsonl", "loss_curve.png"]
    ckpt = straight / "checkpoint-3"
    assert is_complete_checkpoint(ckpt)
    assert json.loads((ckpt / "args.json").read_text()) == {"model": "tiny", "lr": 5e-3}
    marker = json.loads((ckpt / "swift_checkpoint.json").read_text())
    assert marker["step"] == 3
    weights = "adapter_model.safetensors" if lora else "model.safetensors"
    for name in (weights, "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "args.json"):
        assert marker["files"][name] == os.path.getsize(ckpt / name)
    best = t1.state.best_model_checkpoint
    assert best is not None and is_complete_checkpoint(best)
    assert json.loads((ckpt / "trainer_state.json").read_text())["best_model_checkpoint"] == str(ckpt)

    # Resume in a fresh trainer from the half-way checkpoint, with differently initialised weights.
    os.makedirs(resumed)
    shutil.copytree(ckpt, resumed / "checkpoint-3")
    model = make_model(lora=True, lora_seed=123) if lora else make_model(seed=123)
    t2 = _trainer(model, resumed)
    assert find_latest_checkpoint(resumed) == str(resumed / "checkpoint-3")
    t2.train(resume_from_checkpoint=True)

    a, b = _losses(straight), _losses(resumed)
    assert sorted(a) == [1, 2, 3, 4, 5, 6] and sorted(b) == [4, 5, 6]
    for step in b:
        assert b[step] == pytest.approx(a[step], abs=1e-6), step
    _assert_same_weights(t1.model, t2.model)


def test_resume_without_rng_state_diverges(tmp_path):
    """Control for the test above: dropout really draws random numbers, so the RNG restore matters."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _trainer(make_model(), straight).train()
    shutil.copytree(straight / "checkpoint-3", resumed / "checkpoint-3")
    os.remove(resumed / "checkpoint-3" / "rng_state.pth")
    # keep the marker valid: this test is about the RNG, not completeness
    from swift.trainers.checkpoint import write_marker

    write_marker(resumed / "checkpoint-3", 3)
    torch.manual_seed(999)
    _trainer(make_model(), resumed).train(resume_from_checkpoint=True)
    a, b = _losses(straight), _losses(resumed)
    assert any(abs(a[s] - b[s]) > 1e-6 for s in b)


def test_logging_jsonl_and_loss_curve(tmp_path):
    _trainer(make_model(dropout=0.0), tmp_path, max_steps=4).train()
    records = _records(tmp_path)
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if "eval_loss" in r]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    for r in train:
        assert 0.0 <= r["token_acc"] <= 1.0
        assert r["tokens_per_second"] > 0
        assert {"epoch", "elapsed", "learning_rate", "grad_norm"} <= r.keys()
    assert [r["step"] for r in evals] == [3, 4]  # eval_steps=3 and the last step
    assert all(0.0 <= r["eval_token_acc"] <= 1.0 for r in evals)
    elapsed = [r["elapsed"] for r in records]
    assert elapsed == sorted(elapsed)
    png = (tmp_path / "loss_curve.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 1000


def test_token_accuracy_counts_by_hand():
    # vocab 3; position t predicts label t+1
    logits = torch.tensor(
        [
            [
                [0.0, 5.0, 0.0],  # predicts 1, label[1] = 1   -> hit
                [3.0, 0.0, 1.0],  # predicts 0, label[2] = 2   -> miss
                [0.0, 0.0, 9.0],  # predicts 2, label[3] = -100 -> ignored
                [1.0, 0.0, 0.0],  # the last position has no next label
            ],
            [
                [0.0, 0.0, 2.0],  # predicts 2, label[1] = 2   -> hit
                [0.0, 4.0, 0.0],  # predicts 1, label[2] = 1   -> hit
                [2.0, 1.0, 0.0],  # predicts 0, label[3] = 2   -> miss
                [0.0, 0.0, 0.0],
            ],
        ]
    )
    labels = torch.tensor([[-100, 1, 2, -100], [0, 2, 1, 2]])
    correct, total = token_accuracy_counts(logits, labels)
    assert (int(correct), int(total)) == (3, 5)


def test_logged_token_acc_matches_hand_computation(tmp_path):
    rows, eval_rows = make_rows(4, seed=3), make_rows(4, seed=4)
    collate = PadCollator()
    model = make_model(dropout=0.0)

    def hand_acc(batch_rows) -> float:
        batch = collate(batch_rows)
        model.eval()
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        pred, target = logits[:, :-1].argmax(-1), batch["labels"][:, 1:]
        hits = sum(
            int(p == t)
            for p_row, t_row in zip(pred.tolist(), target.tolist())
            for p, t in zip(p_row, t_row)
            if t != -100
        )
        total = sum(1 for t_row in target.tolist() for t in t_row if t != -100)
        return hits / total

    before = hand_acc(rows)  # the one training step logs the accuracy of the forward before the update
    args = make_args(str(tmp_path), max_steps=1, per_device_train_batch_size=4, save_strategy="no")
    trainer = SwiftTrainer(model, args, train_dataset=rows, eval_dataset=eval_rows, data_collator=collate)
    trainer.train()
    logged = [r for r in _records(tmp_path) if "loss" in r]
    assert logged[0]["token_acc"] == pytest.approx(before, abs=1e-9)
    assert logged[0]["tokens_per_second"] > 0

    # throughput counts real tokens (the attention mask), not padded positions, from the same forward
    batch = collate(rows)
    real = sum(len(r["input_ids"]) for r in rows)
    assert real < batch["input_ids"].numel()
    model.train()
    trainer.compute_loss(model, dict(batch))
    correct, total, tokens = trainer._drain("train")
    assert tokens == real and total == sum(sum(t != -100 for t in r["labels"][1:]) for r in rows)

    metrics = trainer.evaluate()
    assert metrics["eval_token_acc"] == pytest.approx(hand_acc(eval_rows), abs=1e-9)


def test_chat_rows_and_swift_model(tmp_path, monkeypatch):
    """The seed's Python API path: un-encoded chat rows, a SwiftModel, the demo tokenizer."""
    templates = pytest.importorskip("swift.templates")
    if not hasattr(templates, "get_template"):
        pytest.skip("swift.templates.get_template is not available yet")
    from transformers import AutoTokenizer

    from swift.data import DataCollator
    from swift.tuners import LoRAConfig, SwiftConfig, SwiftModel

    monkeypatch.setenv("SWIFT_CACHE_HOME", str(tmp_path / "cache"))
    tok = AutoTokenizer.from_pretrained(
        os.path.join(os.path.dirname(__file__), "../../swift/assets/demo_model")
    )
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=True,
    )
    model = SwiftModel(Qwen2ForCausalLM(cfg), SwiftConfig(lora=LoRAConfig(r=4)), tokenizer=tok)
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"what is {i}+{i}?"},
                {"role": "assistant", "content": str(2 * i)},
            ]
        }
        for i in range(6)
    ]
    out = tmp_path / "out"
    args = make_args(str(out), max_steps=2, save_steps=2, eval_strategy="steps", eval_steps=2)
    trainer = SwiftTrainer(model, args, train_dataset=rows, eval_dataset=rows[:2])
    assert trainer.model is model.unwrap()
    assert isinstance(trainer.data_collator, DataCollator) and trainer.template is not None
    trainer.train()
    ckpt = out / "checkpoint-2"
    assert is_complete_checkpoint(ckpt)
    assert (ckpt / "adapter_model.safetensors").is_file() and (ckpt / "tokenizer_config.json").is_file()
    records = _records(out)
    assert any("token_acc" in r for r in records) and any("eval_token_acc" in r for r in records)

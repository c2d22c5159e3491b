"""`swift rlhf` end to end for each algorithm: train a few steps with LoRA, then `swift infer` the checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from swift.cli.main import main


def _write(path: Path, rows: list[dict]) -> str:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return str(path)


def _preference(tmp: Path) -> str:
    return _write(tmp / "pref.jsonl", [
        {"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                      {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}],
         "rejected_response": f"I do not know what {i} plus {i} is."} for i in range(8)])


def _kto(tmp: Path) -> str:
    return _write(tmp / "kto.jsonl", [
        {"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                      {"role": "assistant", "content": f"{i} plus {i} is {2 * i + (i % 2)}."}],
         "label": i % 2 == 0} for i in range(8)])


def _prompts(tmp: Path) -> str:
    return _write(tmp / "prompts.jsonl", [
        {"messages": [{"role": "user", "content": f"What is {i} plus {i}?"}], "solution": str(2 * i)}
        for i in range(8)])


def _sft(tmp: Path) -> str:
    return _write(tmp / "sft.jsonl", [
        {"messages": [{"role": "user", "content": f"Say {i}."}, {"role": "assistant", "content": f"{i}!"}]}
        for i in range(8)])


DATA = {"dpo": _preference, "cpo": _preference, "simpo": _preference, "orpo": _preference, "rm": _preference,
        "kto": _kto, "ppo": _prompts, "grpo": _prompts, "gkd": _sft}
EXTRA = {
    "kto": ["--per_device_train_batch_size", "4"],
    "grpo": ["--reward_funcs", "accuracy", "length", "--num_generations", "2", "--per_device_train_batch_size", "2",
             "--max_completion_length", "8"],
    "ppo": ["--reward_funcs", "accuracy", "--max_completion_length", "8", "--per_device_train_batch_size", "2",
            "--num_ppo_epochs", "1"],
    "gkd": ["--max_completion_length", "8"],
}


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> str:
    from swift.models.tiny import make_tiny_model

    return make_tiny_model("qwen2", tmp_path_factory.mktemp("teacher"), seed=7)


@pytest.mark.parametrize("rlhf_type", list(DATA))
def test_rlhf_trains_then_infers(rlhf_type, tmp_path, tiny_qwen2_dir, teacher_dir):
    out = tmp_path / "output"
    argv = ["rlhf", "--rlhf_type", rlhf_type, "--model", tiny_qwen2_dir, "--dataset", DATA[rlhf_type](tmp_path),
            "--max_steps", "2", "--save_steps", "2", "--logging_steps", "1", "--output_dir", str(out),
            "--add_version", "false", "--learning_rate", "1e-3", *EXTRA.get(rlhf_type, [])]
    if rlhf_type == "gkd":
        argv += ["--teacher_model", teacher_dir]
    assert main(argv) == 0
    ckpt = out / "checkpoint-2"
    assert (ckpt / "adapter_config.json").is_file() and (ckpt / "swift_checkpoint.json").is_file()
    saved = json.loads((ckpt / "args.json").read_text())
    assert saved["rlhf_type"] == rlhf_type and saved["command"] == "rlhf"
    assert any("loss" in json.loads(line) for line in (out / "logging.jsonl").read_text().splitlines())

    result = tmp_path / "result.jsonl"
    queries = _write(tmp_path / "q.jsonl", [
        {"messages": [{"role": "user", "content": "What is 3 plus 3?"}, {"role": "assistant", "content": "6."}]}])
    assert main(["infer", "--adapters", str(ckpt), "--val_dataset", queries, "--max_new_tokens", "4",
                 "--result_path", str(result)]) == 0
    line = json.loads(result.read_text().splitlines()[0])
    if rlhf_type == "rm":
        assert isinstance(line["reward"], float)
    else:
        assert isinstance(line["response"], str)


def test_rlhf_bad_preference_row_names_file_row_field(tmp_path, tiny_qwen2_dir, capsys):
    bad = _write(tmp_path / "bad.jsonl", [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
         "rejected_response": "go away"},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
    ])
    assert main(["rlhf", "--rlhf_type", "dpo", "--model", tiny_qwen2_dir, "--dataset", bad,
                 "--output_dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl" in err and "row 2" in err and "rejected" in err


def test_rlhf_flag_checks(capsys):
    assert main(["rlhf", "--rlhf_type", "grpo", "--model", "x", "--dataset", "y"]) == 2
    assert "--reward_funcs" in capsys.readouterr().err
    assert main(["rlhf", "--rlhf_type", "gkd", "--model", "x", "--dataset", "y"]) == 2
    assert "--teacher_model" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse lists the choices
        main(["rlhf", "--rlhf_type", "dop", "--model", "x", "--dataset", "y"])
    assert "invalid choice: 'dop'" in capsys.readouterr().err


@pytest.mark.parametrize("argv,flag", [
    (["--rlhf_type", "grpo", "--reward_funcs", "accuracy"], "--num_generations"),  # batch 1 vs 8 generations
    (["--rlhf_type", "kto"], "--per_device_train_batch_size"),
    (["--rlhf_type", "simpo", "--loss_type", "sigmoid"], "--loss_type"),
    (["--rlhf_type", "orpo", "--packing", "true"], "--packing"),
    (["--rlhf_type", "dpo", "--loss_type", "sigmod"], "Did you mean sigmoid"),
    (["--rlhf_type", "grpo", "--reward_funcs", "accuracy", "--loss_type", "foo"], "--loss_type"),
    (["--rlhf_type", "kto", "--per_device_train_batch_size", "2", "--padding_free", "true"], "--padding_free"),
])
def test_rlhf_bad_combinations_fail_before_loading(argv, flag, capsys):
    assert main(["rlhf", "--model", "not-loaded", "--dataset", "not-read", *argv]) == 2
    assert flag in capsys.readouterr().err


def test_reward_model_scores_at_the_end_of_turn(tmp_path, tiny_qwen2_dir):
    """`swift infer` reads the reward where training did: at the reply's end-of-turn token."""
    import torch

    from swift.infer.reward import score_conversations
    from swift.models.loader import load_model_and_tokenizer
    from swift.templates import get_template

    model, tokenizer, _ = load_model_and_tokenizer(tiny_qwen2_dir, task="seq_cls")
    template = get_template(tokenizer)
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    enc = template.encode(msgs)
    last = max(i for i, label in enumerate(enc["labels"]) if label != -100)
    with torch.no_grad():
        want = model(input_ids=torch.tensor([enc["input_ids"][:last + 1]])).logits[0, 0].item()
    assert score_conversations(model.eval(), template, [msgs]) == [pytest.approx(want, abs=1e-5)]

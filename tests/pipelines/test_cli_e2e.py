"""End to end through the command line: train a few steps, then infer, export and resume."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from swift.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def _chat_file(path: Path, n: int = 24) -> Path:
    rows = []
    for i in range(n):
        rows.append({"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                                  {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}]})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _only_run(output_dir: Path) -> Path:
    runs = [p for p in output_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def _checkpoints(run: Path) -> list[Path]:
    return sorted((p for p in run.glob("checkpoint-*") if p.is_dir()), key=lambda p: int(p.name.split("-")[1]))


def test_sft_lora_then_infer_and_export(tmp_path, tiny_qwen2_dir, self_cognition_file, capsys):
    out = tmp_path / "output"
    rc = main(["sft", "--model", tiny_qwen2_dir, "--dataset", f"{self_cognition_file}#16", "--max_steps", "4",
               "--save_steps", "2", "--logging_steps", "1", "--per_device_train_batch_size", "2",
               "--model_name", "swift-robot", "--model_author", "swift", "--output_dir", str(out),
               "--split_dataset_ratio", "0.2", "--eval_steps", "2", "--learning_rate", "1e-3"])
    assert rc == 0
    run = _only_run(out)
    ckpts = _checkpoints(run)
    assert [c.name for c in ckpts] == ["checkpoint-2", "checkpoint-4"]
    last = ckpts[-1]
    assert (last / "adapter_config.json").is_file() and (last / "args.json").is_file()
    assert (run / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    logs = [json.loads(line) for line in (run / "logging.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in logs) and any("eval_loss" in r for r in logs)
    assert json.loads((run / "args.json").read_text())["model_name"] == ["swift-robot"]
    assert "hub_token" not in json.loads((run / "args.json").read_text())

    # batch inference needs nothing but the checkpoint and data
    result = tmp_path / "result.jsonl"
    rc = main(["infer", "--adapters", str(last), "--val_dataset", str(_chat_file(tmp_path / "q.jsonl", 3)),
               "--max_new_tokens", "8", "--result_path", str(result)])
    assert rc == 0
    lines = [json.loads(x) for x in result.read_text().splitlines()]
    assert len(lines) == 3 and all(isinstance(x["response"], str) for x in lines)

    merged = tmp_path / "merged"
    assert main(["export", "--adapters", str(last), "--merge_lora", "true", "--output_dir", str(merged)]) == 0
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(merged)
    assert not any("lora" in n for n, _ in model.named_parameters())
    assert json.loads((merged / "args.json").read_text())["model_name"] == ["swift-robot"]


def test_interactive_infer_answers(tmp_path, tiny_qwen2_dir):
    out = tmp_path / "output"
    assert main(["sft", "--model", tiny_qwen2_dir, "--dataset", str(_chat_file(tmp_path / "d.jsonl")),
                 "--max_steps", "1", "--output_dir", str(out), "--add_version", "false"]) == 0
    ckpt = _checkpoints(out)[-1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "swift", "infer", "--adapters", str(ckpt), "--max_new_tokens", "5"],
                       input="who are you?\nexit\n", capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    # one reply was printed (the reply marker), and the loop ended on "exit"
    assert r.stdout.count(">>> ") == 1, r.stdout


def test_full_tuning_and_infer_from_checkpoint(tmp_path, tiny_llama_dir):
    out = tmp_path / "output"
    assert main(["sft", "--model", tiny_llama_dir, "--tuner_type", "full", "--dataset",
                 str(_chat_file(tmp_path / "d.jsonl")), "--max_steps", "2", "--output_dir", str(out),
                 "--add_version", "false", "--system", "You are a calculator."]) == 0
    ckpt = _checkpoints(out)[-1]
    assert (ckpt / "model.safetensors").is_file()
    result = tmp_path / "r.jsonl"
    assert main(["infer", "--model", str(ckpt), "--val_dataset", str(_chat_file(tmp_path / "q.jsonl", 2)),
                 "--max_new_tokens", "4", "--result_path", str(result)]) == 0
    assert len(result.read_text().splitlines()) == 2


def test_pt_raw_text(tmp_path, tiny_qwen2_dir):
    data = tmp_path / "text.jsonl"
    data.write_text("\n".join(json.dumps({"text": f"Line {i}: the quick brown fox."}) for i in range(12)) + "\n")
    out = tmp_path / "output"
    assert main(["pt", "--model", tiny_qwen2_dir, "--dataset", str(data), "--max_steps", "2", "--output_dir",
                 str(out), "--add_version", "false", "--tuner_type", "lora"]) == 0
    assert _checkpoints(out)


def test_resume_true_continues_latest_run(tmp_path, tiny_qwen2_dir):
    out = tmp_path / "output"
    data = str(_chat_file(tmp_path / "d.jsonl"))
    common = ["--model", tiny_qwen2_dir, "--dataset", data, "--save_steps", "2", "--output_dir", str(out),
              "--logging_steps", "1"]
    assert main(["sft", *common, "--max_steps", "2"]) == 0
    run = _only_run(out)
    assert main(["sft", *common, "--max_steps", "4", "--resume_from_checkpoint", "true"]) == 0
    assert _only_run(out) == run
    assert [c.name for c in _checkpoints(run)] == ["checkpoint-2", "checkpoint-4"]
    # resuming a run that already reached max_steps trains nothing (transformers alone would run a step more)
    assert main(["sft", *common, "--max_steps", "4", "--resume_from_checkpoint", "true"]) == 0
    assert [c.name for c in _checkpoints(run)] == ["checkpoint-2", "checkpoint-4"]


def test_resume_true_skips_runs_without_checkpoints(tmp_path, tiny_qwen2_dir):
    out = tmp_path / "output"
    common = ["--model", tiny_qwen2_dir, "--dataset", str(_chat_file(tmp_path / "d.jsonl")), "--save_steps", "2",
              "--output_dir", str(out)]
    assert main(["sft", *common, "--max_steps", "2"]) == 0
    run = _only_run(out)
    (out / "v7-20990101-000000").mkdir()  # a newer run that failed before its first save
    assert main(["sft", *common, "--max_steps", "4", "--resume_from_checkpoint", "true"]) == 0
    assert [c.name for c in _checkpoints(run)] == ["checkpoint-2", "checkpoint-4"]
    # a rerun from args.json starts a fresh run: the resume request is not recorded
    assert "resume_from_checkpoint" not in json.loads((run / "args.json").read_text())
    # --config <run>/args.json --resume_from_checkpoint true continues THAT run, even when a newer one has
    # checkpoints
    assert main(["sft", *common, "--max_steps", "2"]) == 0
    newer = max((p for p in out.iterdir() if p.name.startswith("v") and p != run), key=lambda p: p.name)
    assert _checkpoints(newer)
    assert main(["sft", "--config", str(run / "args.json"), "--max_steps", "6", "--resume_from_checkpoint",
                 "true"]) == 0
    assert [c.name for c in _checkpoints(run)] == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]


def test_pissa_checkpoint_infers_on_the_original_base(tmp_path, tiny_qwen2_dir):
    """The checkpoint's own adapter fits the PiSSA-modified base (what resuming needs; peft rebuilds that base by
    running the SVD again on load); `converted/` is a plain LoRA for the original base (vLLM, other tools, no
    SVD at load), and `swift infer`/`export` pick it: it gives the trained model's logits."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from swift.infer.loading import load_for_inference
    from swift.trainers.checkpoint import adapter_for_inference
    from swift.tuners import LoRAConfig, prepare_model

    out = tmp_path / "output"
    assert main(["sft", "--model", tiny_qwen2_dir, "--dataset", str(_chat_file(tmp_path / "d.jsonl")),
                 "--max_steps", "3", "--learning_rate", "1e-2", "--init_weights", "pissa", "--output_dir", str(out),
                 "--add_version", "false", "--lora_dropout", "0"]) == 0
    ckpt = _checkpoints(out)[-1]
    assert adapter_for_inference(ckpt) == str(ckpt / "converted")
    ids = torch.tensor([[3, 17, 29, 41, 5, 60]])

    trained = prepare_model(AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir),
                            lora=LoRAConfig(r=8, alpha=32, dropout=0.0, init_weights="pissa"))
    set_peft_model_state_dict(trained, load_file(str(ckpt / "adapter_model.safetensors")))
    trained.eval()
    model, _ = load_for_inference(tiny_qwen2_dir, adapters=[adapter_for_inference(ckpt)], torch_dtype="float32")
    with torch.no_grad():
        want, got = (m(input_ids=ids).logits for m in (trained, model))
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    converted = json.loads((ckpt / "converted" / "adapter_config.json").read_text())
    assert converted["init_lora_weights"] is True and converted["r"] == 16  # plain LoRA of rank 2r


def test_bad_training_flag_combination_is_a_user_error(tmp_path, tiny_qwen2_dir, capsys):
    rc = main(["sft", "--model", tiny_qwen2_dir, "--dataset", str(_chat_file(tmp_path / "d.jsonl")),
               "--output_dir", str(tmp_path / "o"), "--load_best_model_at_end", "true", "--max_steps", "1"])
    assert rc == 2
    assert "invalid training flags" in capsys.readouterr().err


def test_batch_infer_takes_prompts_without_replies(tmp_path, tiny_qwen2_dir):
    files = []
    for i, row in enumerate([{"messages": [{"role": "user", "content": "who are you?"}]},
                             {"query": "what is 2 plus 2?"}, {"instruction": "Say hello.", "input": ""}]):
        files.append(tmp_path / f"prompts{i}.jsonl")
        files[-1].write_text(json.dumps(row) + "\n")  # one format per file: messages, query, alpaca
    result = tmp_path / "r.jsonl"
    assert main(["infer", "--model", tiny_qwen2_dir, "--val_dataset", *map(str, files), "--max_new_tokens", "3",
                 "--result_path", str(result)]) == 0
    lines = [json.loads(x) for x in result.read_text().splitlines()]
    assert [x["labels"] for x in lines] == [None, None, None]
    assert lines[1]["messages"][-1] == {"role": "user", "content": "what is 2 plus 2?"}


def test_bad_data_names_file_row_field(tmp_path, tiny_qwen2_dir, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})
                   + "\n" + json.dumps({"messages": [{"role": "user", "content": None}]}) + "\n")
    rc = main(["sft", "--model", tiny_qwen2_dir, "--dataset", str(bad), "--output_dir", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "bad.jsonl" in err and "row 2" in err


@pytest.mark.parametrize("flag", ["--lora_rank", "--num_train_epochs"])
def test_bad_flag_values_are_user_errors(tmp_path, flag, capsys):
    assert main(["sft", "--model", "x", "--dataset", "y", flag, "0"]) == 2
    assert flag in capsys.readouterr().err


def test_ms_swift_readme_command_runs_unchanged(tmp_path, monkeypatch, tiny_qwen2_dir, self_cognition_file):
    """ms-swift's README quick-start command, unchanged but for a local model and a local file."""
    from tests_cli_flags import MS_SWIFT_README

    monkeypatch.chdir(tmp_path)
    argv = ["sft", *MS_SWIFT_README.format(model=tiny_qwen2_dir, data=self_cognition_file).split()]
    assert main(argv) == 0
    run = _only_run(tmp_path / "output")
    # 500 sampled rows / (batch 1 x accumulation 16) -> 32 optimizer steps, the last one saved
    assert [c.name for c in _checkpoints(run)] == ["checkpoint-32"]
    saved = json.loads((run / "args.json").read_text())
    assert saved["torch_dtype"] == "bfloat16" and saved["gradient_accumulation_steps"] == 16
    assert saved["dataloader_num_workers"] == 4

"""DDP as configuration: `NPROC_PER_NODE=2 swift sft ...` and `--parallel_strategy ddp --fsdp_num_shards 2` relaunch
under torchrun (gloo on CPU) and match one process with the same global batch.

One process runs `--per_device_train_batch_size 2 --gradient_accumulation_steps 2`; two processes run
`--per_device_train_batch_size 2`: accelerate hands rank r the batch k*world+r, so every optimizer step sees the
same rows. Tolerance on the per-step loss: 1e-4 absolute (float32, measured differences are ~1e-6).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TOL = 1e-4


def chat_file(path: Path, n: int = 32) -> Path:
    rows = [{"messages": [{"role": "user", "content": f"What is {i} times two?"},
                          {"role": "assistant", "content": f"{i} times two is {2 * i}."}]} for i in range(n)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def common_flags(model: str, data: Path, out: Path, tuner: str = "lora") -> list[str]:
    return ["--model", model, "--dataset", str(data), "--tuner_type", tuner, "--max_steps", "3", "--logging_steps",
            "1", "--learning_rate", "1e-3" if tuner == "lora" else "1e-4", "--lora_dropout", "0", "--seed", "42",
            "--per_device_train_batch_size", "2", "--output_dir", str(out), "--save_steps", "3"]


def losses(out: Path) -> list[float]:
    run = next(p for p in out.iterdir() if p.is_dir())
    rows = [json.loads(line) for line in (run / "logging.jsonl").read_text(encoding="utf-8").splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def swift_subprocess(args: list[str], env_extra: dict[str, str] | None = None, timeout: int = 300):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "swift", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def single_process(model: str, data: Path, out: Path, tuner: str = "lora") -> list[float]:
    from swift.cli.main import main

    assert main(["sft", *common_flags(model, data, out, tuner), "--gradient_accumulation_steps", "2"]) == 0
    return losses(out)


# Full tuning under DDP is in the slow set (`python -m pytest -m slow`): FSDP's full-tuning comparison runs by default.
@pytest.mark.parametrize("tuner", ["lora", pytest.param("full", marks=pytest.mark.slow)])
def test_ddp_matches_one_process(tmp_path, tiny_qwen2_dir, tuner):
    data = chat_file(tmp_path / "d.jsonl")
    reference = single_process(tiny_qwen2_dir, data, tmp_path / "single", tuner)
    if tuner == "lora":  # ms-swift's environment style
        r = swift_subprocess(["sft", *common_flags(tiny_qwen2_dir, data, tmp_path / "ddp", tuner)],
                             {"NPROC_PER_NODE": "2"})
    else:  # the flag style
        r = swift_subprocess(["sft", *common_flags(tiny_qwen2_dir, data, tmp_path / "ddp", tuner),
                              "--parallel_strategy", "ddp", "--fsdp_num_shards", "2"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "world size 2 (2 processes)" in r.stdout
    assert r.stdout.count("Training finished.") == 1  # rank 0 speaks for the run
    runs = [p.name for p in (tmp_path / "ddp").iterdir()]
    assert len(runs) == 1 and runs[0].startswith("v0-")  # one run folder for all ranks, no marker files left
    got = losses(tmp_path / "ddp")
    assert len(got) == len(reference) == 3
    assert max(abs(a - b) for a, b in zip(got, reference)) < TOL, (got, reference)


def test_more_processes_than_gpus_or_bad_env_is_a_clear_error(tmp_path, tiny_qwen2_dir, monkeypatch, capsys):
    from swift.cli.main import main

    data = chat_file(tmp_path / "d.jsonl", 4)
    monkeypatch.setenv("NPROC_PER_NODE", "two")
    assert main(["sft", *common_flags(tiny_qwen2_dir, data, tmp_path / "o")]) != 0
    assert "NPROC_PER_NODE" in capsys.readouterr().err
    monkeypatch.setenv("NPROC_PER_NODE", "2")
    assert main(["sft", *common_flags(tiny_qwen2_dir, data, tmp_path / "o"), "--fsdp_num_shards", "3"]) != 0
    assert "disagrees with NPROC_PER_NODE" in capsys.readouterr().err
    monkeypatch.delenv("NPROC_PER_NODE")
    assert main(["sft", *common_flags(tiny_qwen2_dir, data, tmp_path / "o"), "--parallel_strategy", "megatron"]) != 0
    assert "megatron-core" in capsys.readouterr().err
    assert main(["sft", *common_flags(tiny_qwen2_dir, data, tmp_path / "o"), "--fsdp", "full_shard",
                 "--deepspeed", "zero2"]) != 0
    assert "choose one of --fsdp and --deepspeed" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_plan_reads_ms_swift_environment(monkeypatch):
    from swift.launch.launcher import plan_from

    for k in ("NPROC_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    assert not plan_from(None, None).distributed
    one = plan_from("fsdp", None)
    assert one.strategy == "fsdp" and one.world_size == 1
    monkeypatch.setenv("NPROC_PER_NODE", "8")
    monkeypatch.setenv("NNODES", "2")
    monkeypatch.setenv("NODE_RANK", "1")
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29600")
    plan = plan_from(None, None)
    assert (plan.strategy, plan.world_size, plan.node_rank, plan.master_addr, plan.master_port) == (
        "ddp", 16, 1, "10.0.0.1", 29600)
    monkeypatch.delenv("MASTER_PORT")
    assert plan_from(None, None).master_port == 29500  # several machines: the conventional port
    assert "world size 16 (8 processes x 2 nodes)" in plan.describe("GPUs")


def test_device_map_auto_trains_and_answers_in_one_process(tmp_path, tiny_qwen2_dir):
    """--device_map auto places the model over the devices of one process (here: all on the CPU) for training and
    for inference; with several processes it is refused (each process places its own copy)."""
    from swift.cli.main import main

    data = chat_file(tmp_path / "d.jsonl", 4)
    flags = common_flags(tiny_qwen2_dir, data, tmp_path / "o")
    flags[flags.index("--max_steps") + 1] = "1"
    flags[flags.index("--save_steps") + 1] = "1"
    assert main(["sft", *flags, "--device_map", "auto"]) == 0
    ckpt = next((tmp_path / "o").iterdir()) / "checkpoint-1"
    assert main(["infer", "--adapters", str(ckpt), "--device_map", "auto", "--val_dataset", str(data),
                 "--max_new_tokens", "3", "--result_path", str(tmp_path / "r.jsonl")]) == 0
    assert len((tmp_path / "r.jsonl").read_text(encoding="utf-8").splitlines()) == 4


def test_more_processes_than_gpus_is_refused(monkeypatch):
    """The GPU count is hardware this machine lacks: torch's answer is replaced, the check itself is real."""
    import torch

    from swift.launch.launcher import DistPlan, check_devices
    from swift.utils.errors import ArgumentError

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ArgumentError, match="has 2 GPU"):
        check_devices(DistPlan(strategy="fsdp", nproc_per_node=4))
    assert check_devices(DistPlan(strategy="fsdp", nproc_per_node=2)) == "cuda"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert check_devices(DistPlan(strategy="fsdp", nproc_per_node=4)) == "cpu"  # gloo processes

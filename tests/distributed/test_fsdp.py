"""`--parallel_strategy fsdp` on CPU: 2 gloo processes, launched as a user would (`swift sft ...` relaunches itself
under torchrun). Sharding must really happen (a silent fallback to DDP replicas fails the test), losses must match
one process with the same global batch, checkpoints are consolidated (one process infers from them), and resuming
continues the run.

Same global batch: one process takes 2 rows x 2 accumulation steps; 2 ranks take 2 rows each, and accelerate gives
rank r the batches k*world+r, so every optimizer step sees the same 4 rows.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from swift.cli.main import main

TOL = 1e-4  # per-step loss, one process vs FSDP on 2 processes (measured: see the module's report)
COMMON = ["--seed", "42", "--max_steps", "4", "--logging_steps", "1", "--learning_rate", "1e-3",
          "--model_name", "a", "--model_author", "b", "--add_version", "false", "--report_to", "none"]


def _losses(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "logging.jsonl").read_text().splitlines() if line.strip()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _sft(model: str, data: str, out: Path, *extra: str, fsdp: bool) -> Path:
    dist = ["--parallel_strategy", "fsdp", "--fsdp_num_shards", "2", "--per_device_train_batch_size", "2"] if fsdp \
        else ["--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2"]
    assert main(["sft", "--model", model, "--dataset", f"{data}#32", "--output_dir", str(out), *COMMON, *dist,
                 *extra]) == 0
    return out


def _assert_sharded(run: Path) -> None:
    ranks = json.loads((run / "fsdp_sharding.json").read_text())
    assert len(ranks) == 2
    for r in ranks:
        assert r["dtensor_parameters"] > 0, r
        # each rank holds about half of the elements (a replica would hold all of them)
        assert 0.4 < r["local_elements"] / r["total_elements"] < 0.6, r


def _assert_close(single: dict[int, float], sharded: dict[int, float]) -> float:
    assert sorted(single) == sorted(sharded) == [1, 2, 3, 4]
    diff = max(abs(single[s] - sharded[s]) for s in single)
    assert diff < TOL, (single, sharded)
    return diff


def _infer(tmp_path: Path, *flags: str) -> None:
    q = tmp_path / "q.jsonl"
    q.write_text(json.dumps({"messages": [{"role": "user", "content": "who are you?"}]}) + "\n")
    out = tmp_path / "answers.jsonl"
    assert main(["infer", *flags, "--val_dataset", str(q), "--max_new_tokens", "4", "--result_path", str(out)]) == 0
    assert out.read_text().strip()


def test_full_fsdp_matches_one_process_and_infers(tmp_path, tiny_qwen2_dir, self_cognition_file):
    """Full tuning: per-step losses match; the checkpoint is a plain HF folder that one process loads."""
    single = _sft(tiny_qwen2_dir, self_cognition_file, tmp_path / "single", "--tuner_type", "full",
                  "--save_strategy", "no", fsdp=False)
    sharded = _sft(tiny_qwen2_dir, self_cognition_file, tmp_path / "fsdp", "--tuner_type", "full",
                   "--save_steps", "4", fsdp=True)
    _assert_sharded(sharded)
    diff = _assert_close(_losses(single), _losses(sharded))
    print(f"full: max |loss diff| single vs FSDP = {diff:.2e}")
    ckpt = sharded / "checkpoint-4"
    assert (ckpt / "model.safetensors").is_file() and (ckpt / "config.json").is_file()
    from safetensors.torch import load_file

    weights = load_file(str(ckpt / "model.safetensors"))
    assert weights and all(type(t).__name__ == "Tensor" for t in weights.values())  # gathered, not DTensor shards
    _infer(tmp_path, "--model", str(ckpt))


LORA = ["--tuner_type", "lora", "--lora_dropout", "0"]


@pytest.fixture(scope="module")
def fsdp_lora_run(tmp_path_factory, tiny_qwen2_dir, self_cognition_file) -> Path:
    """One LoRA run under FSDP on 2 processes, checkpoints at steps 2 and 4 (shared by the LoRA tests)."""
    out = tmp_path_factory.mktemp("fsdp-lora")
    return _sft(tiny_qwen2_dir, self_cognition_file, out / "run", *LORA, "--save_steps", "2", fsdp=True)


@pytest.mark.slow
def test_lora_fsdp_matches_one_process_and_infers(tmp_path, fsdp_lora_run, tiny_qwen2_dir, self_cognition_file):
    """LoRA: per-step losses match; the checkpoint is a plain peft folder that one process loads."""
    single = _sft(tiny_qwen2_dir, self_cognition_file, tmp_path / "single", *LORA, "--save_strategy", "no",
                  fsdp=False)
    _assert_sharded(fsdp_lora_run)
    diff = _assert_close(_losses(single), _losses(fsdp_lora_run))
    print(f"lora: max |loss diff| single vs FSDP = {diff:.2e}")
    ckpt = fsdp_lora_run / "checkpoint-4"
    assert (ckpt / "adapter_model.safetensors").is_file() and (ckpt / "adapter_config.json").is_file()
    _infer(tmp_path, "--adapters", str(ckpt))


@pytest.mark.slow
def test_lora_fsdp_resume_continues(tmp_path, fsdp_lora_run, tiny_qwen2_dir, self_cognition_file):
    """Resuming from step 2 with the same world size continues at step 3 and reproduces the uninterrupted run's
    losses (weights, optimizer state, scheduler and rng come back)."""
    resumed = tmp_path / "resumed"
    shutil.copytree(fsdp_lora_run / "checkpoint-2", resumed / "checkpoint-2")
    _sft(tiny_qwen2_dir, self_cognition_file, resumed, *LORA, "--save_steps", "2", "--resume_from_checkpoint",
         str(resumed / "checkpoint-2"), fsdp=True)
    after, full_run = _losses(resumed), _losses(fsdp_lora_run)
    assert sorted(after) == [3, 4], after  # continued from step 2, not restarted
    assert max(abs(after[s] - full_run[s]) for s in after) < TOL, (after, full_run)
    assert json.loads((resumed / "checkpoint-4" / "trainer_state.json").read_text())["global_step"] == 4


def test_presets_and_errors(tmp_path, monkeypatch):
    from torch import nn

    from swift.launch.fsdp import check_model, fsdp_config, fsdp_training_kwargs
    from swift.utils.errors import ArgumentError

    assert fsdp_config(None)["reshard_after_forward"] is True and fsdp_config(None)["version"] == 2
    assert fsdp_config("shard_grad_op")["reshard_after_forward"] is False
    assert fsdp_config("offload")["cpu_offload"] is True
    cfg = tmp_path / "fsdp.json"
    cfg.write_text(json.dumps({"fsdp_transformer_layer_cls_to_wrap": ["Qwen2DecoderLayer"]}))
    assert fsdp_config(str(cfg))["transformer_layer_cls_to_wrap"] == ["Qwen2DecoderLayer"]
    cfg.write_text(json.dumps({"version": 1}))
    for bad in ("zero3", str(cfg), str(tmp_path / "missing.json")):
        with pytest.raises(ArgumentError, match="--fsdp"):
            fsdp_config(bad)
    monkeypatch.setenv("WORLD_SIZE", "2")
    kwargs = fsdp_training_kwargs("full_shard", on_cpu=True)
    assert kwargs["fsdp"] is True and kwargs["use_cpu"] is True and kwargs["fsdp_config"]["version"] == 2
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert fsdp_training_kwargs("full_shard", on_cpu=True) == {}  # one process: nothing to shard
    with pytest.raises(ArgumentError, match="_no_split_modules"):
        check_model(nn.Linear(2, 2))

"""DeepSpeed ZeRO as configuration: `--deepspeed zero2|zero3` with 2 gloo processes on CPU (DS_ACCELERATOR=cpu),
launched as a user would, matches one plain process with the same global batch; ZeRO-3 checkpoints load in one
process (LoRA: a plain peft folder `swift infer --adapters` answers; full: gathered weights, and the ZeRO shards
convert with `convert_zero_checkpoint`).

One process runs `--per_device_train_batch_size 2 --gradient_accumulation_steps 2`; two processes run
`--per_device_train_batch_size 2`. Tolerance on the per-step loss: 1e-4 absolute (float32; measured: ZeRO-2 and
ZeRO-3 LoRA losses equal the single process to the last printed digit, adapters within 6e-7).
The end-to-end tests skip when deepspeed is not installed (extra `deepspeed`); the config tests always run.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from swift.utils.errors import ArgumentError, MissingExtraError

TOL = 1e-4
needs_deepspeed = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                                     reason="deepspeed not installed (pip install 'swiftlab[deepspeed]')")


@pytest.fixture(scope="module")
def chat_data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ds-data") / "d.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"What is {i} times two?"},
                          {"role": "assistant", "content": f"{i} times two is {2 * i}."}]} for i in range(32)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def single_losses(tmp_path_factory, demo_model_dir, chat_data) -> list[float]:
    """The reference: one plain process, global batch 4 through gradient accumulation."""
    from swift.cli.main import main

    out = tmp_path_factory.mktemp("ds-single")
    assert main(["sft", *flags(demo_model_dir, chat_data, out), "--gradient_accumulation_steps", "2"]) == 0
    return losses(out)


def flags(model: str, data: Path, out: Path, tuner: str = "lora") -> list[str]:
    return ["--model", model, "--dataset", str(data), "--tuner_type", tuner, "--max_steps", "3", "--logging_steps",
            "1", "--learning_rate", "1e-3" if tuner == "lora" else "1e-4", "--lora_dropout", "0", "--seed", "42",
            "--per_device_train_batch_size", "2", "--output_dir", str(out), "--save_steps", "3"]


def run_folder(out: Path) -> Path:
    return next(p for p in out.iterdir() if p.is_dir())


def losses(out: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_folder(out) / "logging.jsonl").read_text(encoding="utf-8").splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def swift(args: list[str], env_extra: dict[str, str] | None = None, timeout: int = 300):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "swift", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


# ---- configuration (no deepspeed needed) ----

def test_presets_leave_batch_lr_and_precision_to_the_trainer():
    from swift.launch.deepspeed import PRESETS, preset_config, zero_stage

    assert set(PRESETS) == {"zero0", "zero1", "zero2", "zero3", "zero2_offload", "zero3_offload"}
    for name in PRESETS:
        c = preset_config(name)
        for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                    "gradient_clipping"):
            assert c[key] == "auto"
        assert c["fp16"]["enabled"] == c["bf16"]["enabled"] == "auto"
        assert zero_stage(c) == int(name[4])
    off = preset_config("zero3_offload")
    assert off["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert off["optimizer"]["params"]["lr"] == "auto"
    assert preset_config("zero3")["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    preset_config("zero2")["zero_optimization"]["stage"] = 9  # a fresh copy each time
    assert zero_stage(preset_config("zero2")) == 2


def test_bad_values_are_clear_errors(tmp_path, monkeypatch):
    from swift.launch.deepspeed import (
        check_quantization,
        deepspeed_config,
        deepspeed_training_kwargs,
        preset_config,
    )

    with pytest.raises(ArgumentError, match="zero2_offload, zero3_offload"):
        deepspeed_config("zero4")
    with pytest.raises(ArgumentError, match="not found: .*missing.json"):
        deepspeed_config(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"zero_optimization": {"stage": 3,}}', encoding="utf-8")
    with pytest.raises(ArgumentError, match=r"bad.json is not valid JSON: .*line 1"):
        deepspeed_config(str(bad))
    good = tmp_path / "ds.json"
    good.write_text('{"zero_optimization": {"stage": 1}, "train_batch_size": "auto"}', encoding="utf-8")
    assert deepspeed_config(str(good))["zero_optimization"]["stage"] == 1
    with pytest.raises(ArgumentError, match="bnb_4bit_quant_storage bfloat16.*zero2.*--fsdp"):
        check_quantization(preset_config("zero3"), bnb_bits=4)
    check_quantization(preset_config("zero3"), bnb_bits=4, bnb_quant_storage="bfloat16")
    check_quantization(preset_config("zero2"), bnb_bits=4)
    monkeypatch.setitem(sys.modules, "deepspeed", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r"swiftlab\[deepspeed\]"):
        deepspeed_training_kwargs("zero2", on_cpu=False)


# ---- end to end on 2 CPU processes ----

@pytest.mark.slow  # DeepSpeed compiles its CPU ops on first use (~3 min on a fresh machine)
@needs_deepspeed
def test_zero2_matches_one_process(tmp_path, demo_model_dir, chat_data, single_losses):
    r = swift(["sft", *flags(demo_model_dir, chat_data, tmp_path), "--deepspeed", "zero2",
               "--fsdp_num_shards", "2"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "DeepSpeed ZeRO; world size 2" in r.stdout
    got = losses(tmp_path)
    assert len(got) == len(single_losses) == 3
    assert max(abs(a - b) for a, b in zip(got, single_losses)) < TOL, (got, single_losses)


@pytest.mark.slow  # DeepSpeed compiles its CPU ops on first use (~3 min on a fresh machine)
@needs_deepspeed
def test_zero3_lora_matches_and_its_adapters_load_in_one_process(tmp_path, demo_model_dir, chat_data,
                                                                   single_losses):
    r = swift(["sft", *flags(demo_model_dir, chat_data, tmp_path / "o"), "--deepspeed", "zero3"],
              {"NPROC_PER_NODE": "2"})
    assert r.returncode == 0, r.stderr[-3000:]
    got = losses(tmp_path / "o")
    assert max(abs(a - b) for a, b in zip(got, single_losses)) < TOL, (got, single_losses)
    ckpt = run_folder(tmp_path / "o") / "checkpoint-3"
    assert (ckpt / "global_step3").is_dir()  # the ZeRO shards, for --resume_from_checkpoint
    from safetensors.torch import load_file

    adapters = load_file(str(ckpt / "adapter_model.safetensors"))  # gathered by the Trainer, not ZeRO-3 stubs
    assert adapters and all(t.numel() > 0 for t in adapters.values())
    from swift.cli.main import main

    query = tmp_path / "q.jsonl"
    query.write_text(json.dumps({"messages": [{"role": "user", "content": "What is 3 times two?"}]}) + "\n",
                     encoding="utf-8")
    result = tmp_path / "answers.jsonl"
    assert main(["infer", "--adapters", str(ckpt), "--dataset", str(query), "--max_new_tokens", "4",
                 "--result_path", str(result)]) == 0
    assert "response" in json.loads(result.read_text(encoding="utf-8").splitlines()[0])


@needs_deepspeed
@pytest.mark.slow
def test_zero3_full_checkpoint_loads_and_converts(tmp_path, demo_model_dir, chat_data):
    from transformers import AutoModelForCausalLM

    from swift.launch.deepspeed import convert_zero_checkpoint

    r = swift(["sft", *flags(demo_model_dir, chat_data, tmp_path / "o", tuner="full"), "--deepspeed", "zero3"],
              {"NPROC_PER_NODE": "2"})
    assert r.returncode == 0, r.stderr[-3000:]
    ckpt = run_folder(tmp_path / "o") / "checkpoint-3"
    gathered = AutoModelForCausalLM.from_pretrained(ckpt).state_dict()  # stage3_gather_16bit_weights_on_model_save
    converted = AutoModelForCausalLM.from_pretrained(convert_zero_checkpoint(ckpt, tmp_path / "fp32")).state_dict()
    assert max((gathered[k] - converted[k]).abs().max().item() for k in gathered) < 1e-6

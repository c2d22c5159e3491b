"""The command line: flags from the dataclasses, ms-swift names and aliases, config files, clear errors."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from tests_cli_flags import MS_SWIFT_README

from swift.cli.main import main
from swift.cli.parser import parse_args
from swift.utils.errors import ArgumentError


def test_ms_swift_readme_flags_parse():
    a = parse_args("sft", MS_SWIFT_README.format(model="/m", data="d.jsonl").split())
    assert a.model == "/m" and a.tuner_type == "lora" and a.dataset == ["d.jsonl#500"]
    assert a.torch_dtype == "bfloat16" and a.gradient_accumulation_steps == 16 and a.lora_alpha == 32
    assert a.target_modules == ["all-linear"] and a.model_name == ["swift-robot"]
    # a transformers flag we do not define ourselves passes through untouched
    assert a.hf == {"dataloader_num_workers": 4}


def test_aliases_and_bools():
    a = parse_args("sft", ["--train_type", "full", "--packing", "--strict", "false", "--model", "x"])
    assert a.tuner_type == "full" and a.packing is True and a.strict is False


def test_unknown_flag_suggests():
    with pytest.raises(ArgumentError, match="Did you mean --lora_rank"):
        parse_args("sft", ["--lora_rnk", "8"])


def test_bad_value_names_flag():
    with pytest.raises(ArgumentError, match="--lora_rank"):
        parse_args("sft", ["--lora_rank", "0"])
    with pytest.raises(SystemExit):
        parse_args("sft", ["--lora_rank", "eight"])


def test_config_file_and_override(tmp_path):
    cfg = tmp_path / "args.json"
    cfg.write_text(json.dumps({"model": "a", "lora_rank": 4, "model_dir": "/resolved", "seed": 7, "max_steps": 3}))
    a = parse_args("sft", ["--config", str(cfg), "--lora_rank", "16"])
    assert a.model == "a" and a.lora_rank == 16 and a.seed == 7 and a.hf["max_steps"] == 3


def test_config_file_typo_is_an_error_but_other_commands_keys_are_not(tmp_path):
    cfg = tmp_path / "args.json"
    cfg.write_text(json.dumps({"lora_rnak": 4}))
    with pytest.raises(ArgumentError, match="lora_rnak.*--lora_rank"):
        parse_args("sft", ["--config", str(cfg)])
    # an sft run's args.json given to infer: training flags and derived keys are not infer's, and are skipped
    cfg.write_text(json.dumps({"model": "a", "lora_rank": 4, "learning_rate": 1e-4, "model_dir": "/m",
                               "command": "sft", "max_new_tokens": 7}))
    a = parse_args("infer", ["--config", str(cfg)])
    assert a.model == "a" and a.max_new_tokens == 7


def test_short_dtype_names():
    assert parse_args("sft", ["--torch_dtype", "bf16"]).torch_dtype == "bfloat16"
    assert parse_args("infer", ["--torch_dtype", "fp32"]).torch_dtype == "float32"


def test_pt_defaults():
    a = parse_args("pt", [])
    assert a.tuner_type == "full" and a.template == "raw"


def test_help_lists_every_flag_fast(capsys):
    assert main(["sft", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--lora_rank", "--train_type", "--dataloader_num_workers", "--weight_decay", "--model_name"):
        assert flag in out


def test_help_does_not_import_torch():
    code = "import sys; from swift.cli.main import main; main(['sft','--help']); assert 'torch' not in sys.modules"
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert time.perf_counter() - t < 5


def test_hf_flags_match_installed_transformers():
    import dataclasses

    from transformers import TrainingArguments

    from swift.cli.hf_flags import HF_TRAINING_FLAGS, TRANSFORMERS_VERSION

    names = {n for n, *_ in HF_TRAINING_FLAGS}
    fields = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    assert names <= fields, f"stale flags {names - fields}: run scripts/gen_hf_flags.py"
    missing = fields - names - {"local_rank", "parallelism_config", "include_for_metrics", "debug",
                                "deepspeed_plugin", "trackio_static_space_id"}
    assert not missing, f"transformers {TRANSFORMERS_VERSION} -> new flags {missing}: run scripts/gen_hf_flags.py"


def test_unknown_command(capsys):
    assert main(["sfr"]) == 2
    assert "Did you mean 'sft'" in capsys.readouterr().err

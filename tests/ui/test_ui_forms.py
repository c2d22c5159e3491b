"""The shared forms of the wizard and the web UI: checks per field, the command they build, the YAML they save."""
from __future__ import annotations

import json

import pytest

from swift.cli.parser import parse_args
from swift.ui.forms import argv_to_config, build_argv, command_line, config_yaml, defaults, validate


def _sft(**kw):
    values = defaults("sft")
    values.update(model_name="swift-robot", model_author="swift")
    values.update(kw)
    return values


def test_defaults_are_valid_and_build_a_command_the_cli_parses():
    argv = build_argv("sft", _sft())
    assert argv[:2] == ["swift", "sft"]
    assert validate("sft", _sft()) == {}
    parsed = parse_args("sft", argv[2:])
    assert parsed.flat["model"] == "swift-demo"
    assert parsed.flat["tuner_type"] == "lora"
    assert parsed.flat["trust_remote_code"] is False


def test_qlora_is_lora_over_a_4bit_base_and_full_drops_lora_flags():
    argv = build_argv("sft", _sft(tuner_type="qlora"))
    assert argv[argv.index("--tuner_type") + 1] == "lora"
    assert argv[argv.index("--quant_method") + 1] == "bnb"
    assert argv[argv.index("--quant_bits") + 1] == "4"
    full = build_argv("sft", _sft(tuner_type="full"))
    assert "--lora_rank" not in full and "--quant_method" not in full


def test_form_strings_become_typed_flags():
    argv = build_argv("sft", _sft(num_train_epochs="2", learning_rate="5e-3", trust_remote_code=True))
    assert argv[argv.index("--num_train_epochs") + 1] == "2"
    assert float(argv[argv.index("--learning_rate") + 1]) == 5e-3
    assert argv[argv.index("--trust_remote_code") + 1] == "true"
    assert "--trust_remote_code" not in build_argv("sft", _sft())


@pytest.mark.parametrize("field,value,words", [
    ("num_train_epochs", "-1", "greater than 0"),
    ("num_train_epochs", "abc", "expected a number"),
    ("per_device_train_batch_size", "1.5", "whole number"),
    ("learning_rate", "0", "greater than 0"),
    ("dataset", "data/missing.jsonl", "file not found: data/missing.jsonl"),
    ("dataset", "", "required"),
    ("model", "./no/such/folder", "folder not found"),
    ("model", "qwn", "did you mean"),
    ("tuner_type", "adapter", "expected one of lora, qlora, full"),
])
def test_bad_values_are_named_on_their_field(field, value, words):
    errors = validate("sft", _sft(**{field: value}))
    assert set(errors) == {field}, errors
    assert words in errors[field]


def test_self_cognition_data_needs_the_models_name_and_author():
    errors = validate("sft", defaults("sft"))
    assert set(errors) == {"model_name", "model_author"}
    assert "'self-cognition' asks who the model is" in errors["model_name"]
    assert validate("sft", _sft(dataset="self-cognition#16")) == {}


def test_errors_in_chinese():
    errors = validate("sft", _sft(num_train_epochs="-1", dataset="missing.jsonl"), lang="zh")
    assert errors["num_train_epochs"].startswith("必须大于 0")
    assert errors["dataset"].startswith("文件不存在")


def test_the_cli_parser_judges_what_the_fields_do_not(tmp_path):
    # max_length is checked by the field rules, the port range only by DeployArguments
    errors = validate("deploy", {"model": "swift-demo", "port": "70000"})
    assert "port" in errors and "65535" in errors["port"]
    assert validate("chat", {}) == {"model": "give a model or a LoRA checkpoint"}


def test_existing_files_folders_and_hub_ids(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    assert validate("sft", _sft(dataset=f"{data}#5")) == {}
    assert validate("sft", _sft(dataset="swift/self-cognition#100")) == {}  # a hub id: resolved when it runs
    not_model = tmp_path / "empty"
    not_model.mkdir()
    assert "not a model folder" in validate("sft", _sft(model=str(not_model)))["model"]
    assert "not a LoRA checkpoint" in validate("merge", {"adapters": str(not_model)})["adapters"]


def test_secrets_are_hidden_in_what_is_shown_and_saved():
    argv = build_argv("deploy", {"model": "swift-demo", "api_key": "sk-secret-123"})
    assert "sk-secret-123" in argv  # what runs
    assert "sk-secret-123" not in command_line(argv)
    assert "sk-secret-123" not in config_yaml(argv)
    assert "sk-secret-123" in command_line(argv, hide_secrets=False)


def test_saved_yaml_reproduces_the_command(tmp_path):
    argv = build_argv("sft", _sft(tuner_type="qlora", dataset="self-cognition#16", num_train_epochs="2"))
    path = tmp_path / "run.yaml"
    path.write_text(config_yaml(argv))
    from_cli = parse_args("sft", argv[2:]).flat
    from_file = parse_args("sft", ["--config", str(path)]).flat
    assert from_cli == from_file
    assert argv_to_config(argv)["quant_bits"] == 4


def test_multiline_command_round_trips_through_the_shell():
    import shlex

    argv = build_argv("sft", _sft(model_name="my 'quoted' bot"))
    text = command_line(argv, multiline=True)
    assert shlex.split(text.replace("\\\n", " ")) == argv
    merge = build_argv("merge", {"adapters": "out/ckpt-1"})
    assert merge[-2:] == ["--merge_lora", "true"]

"""`swift quickstart`: answers files, the command and config it saves, asking again on a wrong answer, --help.

Fast: nothing here trains. The wizard in a real terminal (pexpect) is in test_quickstart_e2e.py (slow)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from swift.ui.forms import argv_to_config
from swift.ui.quickstart import Wizard, latest_checkpoint, load_answers, main, run_wizard
from swift.ui.quickstart_ask import OTHER, QuickstartError, ScriptedAsker, ask_checked
from swift.ui.quickstart_run import follow_up_argv, free_port, save_command

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _cpu_only(monkeypatch):
    """The wizard's advice depends on the hardware: tests see a CPU-only machine everywhere."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


class FakeAsker:
    """A person answering from lists (one answer per time a question is asked), recording what was said."""

    unattended = False

    def __init__(self, **answers):
        self.answers = {k: list(v) if isinstance(v, list) else [v] for k, v in answers.items()}
        self.said: list[tuple[str, str]] = []
        self.asked: list[str] = []

    def _next(self, key, default):
        self.asked.append(key)
        queue = self.answers.get(key)
        return queue.pop(0) if queue else default

    def select(self, key, message, choices, default):
        value = self._next(key, default)
        assert value in [v for v, _ in choices], (key, value, choices)
        return value

    def text(self, key, message, default):
        return self._next(key, default)

    def confirm(self, key, message, default):
        return self._next(key, default)

    def key(self, key, message, keys):
        return self._next(key, "x")

    def say(self, message, kind="info"):
        self.said.append((kind, message))


def _write(path: Path, data) -> str:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


def test_answers_file_is_read_and_checked(tmp_path):
    good = load_answers(_write(tmp_path / "a.yaml", {"model": "swift-demo", "num_train_epochs": 1, "then": "merge"}))
    assert good["model"] == "swift-demo" and good["then"] == ["merge"]
    assert load_answers(_write(tmp_path / "empty.yaml", None)) == {"then": []}
    with pytest.raises(QuickstartError, match="unknown key.*epochs"):
        load_answers(_write(tmp_path / "b.yaml", {"epochs": 1}))
    with pytest.raises(QuickstartError, match="then: chat needs a person"):
        load_answers(_write(tmp_path / "c.yaml", {"then": ["chat"]}))
    with pytest.raises(QuickstartError, match="task: expected one of"):
        load_answers(_write(tmp_path / "d.yaml", {"task": "bake"}))
    with pytest.raises(QuickstartError, match="must hold a mapping"):
        load_answers(_write(tmp_path / "e.yaml", [1, 2]))
    (tmp_path / "f.yaml").write_text("model: [unclosed\n", encoding="utf-8")
    with pytest.raises(QuickstartError, match="not valid YAML"):
        load_answers(str(tmp_path / "f.yaml"))
    with pytest.raises(QuickstartError, match="file not found"):
        load_answers(str(tmp_path / "nope.yaml"))


def test_unattended_run_saves_the_command_and_a_config_that_says_the_same(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    answers = _write(tmp_path / "a.yaml", {"dataset": "self-cognition#16", "num_train_epochs": 2,
                                           "learning_rate": "5e-3", "max_length": 256, "output_dir": "out"})
    assert main(["--answers", answers, "--no-run", "--lang", "en"]) == 0
    out = capsys.readouterr().out
    assert "swift sft \\\n    --model swift-demo \\\n    --dataset 'self-cognition#16'" in out
    assert "? Epochs 2" in out and "Not run" in out
    (sh,) = (tmp_path / "out" / "quickstart").glob("*.sh")
    (yml,) = (tmp_path / "out" / "quickstart").glob("*.yaml")
    assert os.access(sh, os.X_OK) and f"Saved: {sh.relative_to(tmp_path)}" in out
    script = sh.read_text()
    assert script.startswith("#!/usr/bin/env bash") and "--learning_rate 0.005" in script
    config = yaml.safe_load(yml.read_text())
    assert config["dataset"] == "self-cognition#16" and config["num_train_epochs"] == 2
    assert config["model_name"] == "swift-robot" and config["torch_dtype"] == "float32"
    # the .sh and the .yaml run the same command
    import shlex

    argv = shlex.split(script.split("set -e\n", 1)[1].replace("\\\n", " "))
    assert argv_to_config(argv) == config


def test_yes_takes_every_default(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--yes", "--no-run", "--lang", "zh"]) == 0
    out = capsys.readouterr().out
    assert "想做什么" in out and "--dataset self-cognition" in out and "--model_name swift-robot" in out
    assert list((tmp_path / "output" / "quickstart").glob("*.yaml"))


def test_an_unattended_wrong_answer_ends_with_the_reason(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    answers = _write(tmp_path / "a.yaml", {"dataset": "missing.jsonl"})
    assert main(["--answers", answers, "--no-run", "--lang", "en"]) == 2
    assert "dataset = 'missing.jsonl': file not found: missing.jsonl" in capsys.readouterr().err
    answers = _write(tmp_path / "b.yaml", {"num_train_epochs": -1})
    assert main(["--answers", answers, "--no-run"]) == 2
    assert "num_train_epochs = '-1': must be greater than 0" in capsys.readouterr().err


def test_a_wrong_typed_answer_is_explained_and_asked_again():
    asker = FakeAsker(epochs=["-1", "abc", "2"])
    value = ask_checked(asker, "epochs", "Epochs", "3", lambda v: None if v.isdigit() and int(v) > 0 else "bad",
                        retry_note=" — try again")
    assert value == "2" and asker.asked == ["epochs"] * 3
    assert asker.said == [("error", "✗ bad — try again")] * 2
    assert ask_checked(FakeAsker(), "epochs", "Epochs", "3", lambda v: None) == "3"  # Enter keeps the default


def test_the_wizard_asks_again_with_the_clis_own_checks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "mine.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n')
    asker = FakeAsker(dataset=[OTHER, "nope.jsonl", str(data)], tuner_type=["full", "lora"],
                      num_train_epochs=["0", "1"], learning_rate=["fast", "0.01"], run=False)
    assert run_wizard(asker, "en") == 0
    errors = [m for kind, m in asker.said if kind == "error"]
    assert errors == ["✗ file not found: nope.jsonl — try again", "✗ must be greater than 0, got 0 — try again",
                      "✗ expected a number, got 'fast' — try again"]
    assert "model_name" not in asker.asked  # only the built-in self-cognition data asks for a name
    (yml,) = (tmp_path / "output" / "quickstart").glob("*.yaml")
    config = yaml.safe_load(yml.read_text())
    assert config["dataset"] == str(data) and config["learning_rate"] == 0.01 and config["tuner_type"] == "full"


def test_a_method_that_does_not_suit_the_hardware_is_warned_about_and_confirmed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    asker = FakeAsker(tuner_type=["qlora", "lora"], use_anyway=[False], run=False)
    assert run_wizard(asker, "en") == 0
    assert asker.asked.count("tuner_type") == 2 and "use_anyway" in asker.asked
    assert any("QLoRA saves GPU memory" in m for kind, m in asker.said if kind == "warn")
    (yml,) = (tmp_path / "output" / "quickstart").glob("*.yaml")
    assert yaml.safe_load(yml.read_text())["tuner_type"] == "lora"
    # confirmed: QLoRA is LoRA over a 4-bit base
    asker = FakeAsker(tuner_type=["qlora"], use_anyway=[True], run=False, output_dir="q")
    assert run_wizard(asker, "en") == 0
    (yml,) = (tmp_path / "q" / "quickstart").glob("*.yaml")
    config = yaml.safe_load(yml.read_text())
    assert (config["tuner_type"], config["quant_method"], config["quant_bits"]) == ("lora", "bnb", 4)
    # unattended, an unconfirmed misfit ends
    with pytest.raises(QuickstartError, match="tuner_type = 'qlora'"):
        run_wizard(ScriptedAsker({"tuner_type": "qlora"}, print_fn=lambda *_: None), "en", run=False)


def test_scripted_menus_take_typed_values_and_reject_unknown_ones():
    asker = ScriptedAsker({"model": "Qwen/Qwen2.5-0.5B-Instruct", "task": "bake"}, print_fn=lambda *_: None)
    w = Wizard(asker)
    w.ask_model()
    assert w.values["model"] == "Qwen/Qwen2.5-0.5B-Instruct"
    with pytest.raises(QuickstartError, match="task: expected one of sft, rlhf"):
        w.ask_task()


def test_other_tasks_start_from_the_latest_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert latest_checkpoint(Path("output")) is None
    ckpt = tmp_path / "output" / "v0-1" / "checkpoint-4"
    ckpt.mkdir(parents=True)
    (ckpt / "adapter_config.json").write_text("{}")
    assert latest_checkpoint(Path("output")) == Path("output/v0-1/checkpoint-4")
    asker = FakeAsker(task="merge", run=False)
    assert run_wizard(asker, "en") == 0
    (yml,) = (tmp_path / "output" / "quickstart").glob("*merge.yaml")
    assert yaml.safe_load(yml.read_text()) == {"adapters": ["output/v0-1/checkpoint-4"], "merge_lora": True}
    asker = FakeAsker(task="deploy", checkpoint=[OTHER, "swift-demo"], port=["80x", "8001"], run=False)
    assert run_wizard(asker, "en") == 0
    assert ("error", "✗ expected a whole number, got '80x' — try again") in asker.said
    (yml,) = (tmp_path / "output" / "quickstart").glob("*deploy.yaml")
    assert yaml.safe_load(yml.read_text()) == {"model": "swift-demo", "host": "127.0.0.1", "port": 8001,
                                               "infer_backend": "pt"}


def test_follow_ups_use_adapters_for_lora_and_the_model_for_full():
    assert follow_up_argv("chat", "ck", "lora") == ["swift", "infer", "--adapters", "ck"]
    assert follow_up_argv("chat", "ck", "full") == ["swift", "infer", "--model", "ck"]
    assert follow_up_argv("merge", "ck", "lora") == ["swift", "export", "--adapters", "ck", "--merge_lora", "true"]
    assert follow_up_argv("quantize", "ck", "full", "fp8") == ["swift", "export", "--model", "ck",
                                                               "--quant_method", "fp8"]
    assert follow_up_argv("deploy", "ck", "lora")[:5] == ["swift", "deploy", "--adapters", "ck", "--port"]


def test_deploy_takes_a_free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        assert free_port(busy) != busy


def test_save_command_never_overwrites(tmp_path):
    argv = ["swift", "sft", "--model", "swift-demo"]
    first, second = save_command(argv, str(tmp_path), "sft"), save_command(argv, str(tmp_path), "sft")
    assert first[0] != second[0] and first[1] != second[1]


def test_help_and_bad_flags(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(flag in out for flag in ("--lang", "--yes", "--answers", "--no-run", "then: [merge]"))
    with pytest.raises(SystemExit) as e:
        main(["--lang", "fr"])
    assert e.value.code == 2 and "expected zh or en" in capsys.readouterr().err


def test_without_a_terminal_it_says_how_to_run_unattended(capsys):
    assert main(["--lang", "en"]) == 2  # pytest's stdin is not a terminal
    assert "--yes" in capsys.readouterr().err


def test_the_wrapper_script_and_the_cli_reach_the_wizard_without_torch():
    script = REPO / "scripts" / "yichuidingyin.sh"
    assert os.access(script, os.X_OK)
    out = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "swift quickstart" in out.stdout
    code = ("import sys; from swift.cli.main import main; import swift.ui.quickstart, swift.ui.quickstart_run; "
            "assert 'torch' not in sys.modules and 'questionary' not in sys.modules")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60).returncode == 0


@pytest.mark.parametrize("answers, expected", [
    ({"task": "rlhf", "dataset": "pref.jsonl", "rlhf_type": "kto"},
     {"rlhf_type": "kto", "model": "swift-demo", "dataset": "pref.jsonl", "tuner_type": "lora"}),
    ({"task": "chat"}, {"model": "swift-demo", "max_new_tokens": 256, "temperature": 0}),
    ({"task": "quantize", "quant_bits": "8"}, {"model": "swift-demo", "quant_method": "bnb", "quant_bits": 8}),
    ({"task": "deploy", "checkpoint": "swift-demo"}, {"model": "swift-demo", "port": 8000}),
])
def test_every_task_makes_its_command(tmp_path, monkeypatch, answers, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pref.jsonl").write_text('{"prompt": "hi", "chosen": "hello", "rejected": "go away"}\n')
    assert run_wizard(ScriptedAsker(answers, print_fn=lambda *_: None), "en", run=False) == 0
    (yml,) = (tmp_path / "output" / "quickstart").glob(f"*-{answers['task']}.yaml")
    config = yaml.safe_load(yml.read_text())
    assert {k: config.get(k) for k in expected} == expected


def test_alignment_needs_a_data_file():
    with pytest.raises(QuickstartError, match="dataset = '': required"):
        run_wizard(ScriptedAsker({"task": "rlhf"}, print_fn=lambda *_: None), "en", run=False)

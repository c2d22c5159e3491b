"""`swift quickstart` end to end (slow): a person in a terminal (pexpect) fine-tunes the demo model, chats with
it, merges it; the saved config reproduces the run. And the same unattended from an answers file."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pexpect = pytest.importorskip("pexpect")

DOWN, ENTER = "\x1b[B", "\r"  # arrow down, Enter (typed answers replace the greyed default)
ANSI = r"(?:\x1b\[[0-9;?]*[A-Za-z])*"


def _env() -> dict[str, str]:
    # SWIFT_CACHE_HOME and the offline switches come from tests/conftest.py through os.environ; no GPU, so the
    # wizard's hardware advice (and the losses) are the same on every machine.
    return {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1",
            "PYTHONUNBUFFERED": "1", "COLUMNS": "160", "LINES": "40"}


def _losses(run_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run_dir / "logging.jsonl").read_text().splitlines() if line.strip()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _menu(child, question: str) -> None:
    child.expect(re.escape(question) + " " + ANSI + re.escape("(Use arrow keys)"))


@pytest.mark.slow
def test_a_person_fine_tunes_chats_and_merges_in_the_terminal(tmp_path):
    child = pexpect.spawn(sys.executable, ["-m", "swift", "quickstart", "--lang", "en"], cwd=str(tmp_path),
                          env=_env(), dimensions=(40, 160), encoding="utf-8", timeout=60,
                          searchwindowsize=4000)  # long progress bars: search only the fresh output
    transcript = (tmp_path / "transcript.txt").open("w", encoding="utf-8")
    child.logfile_read = transcript
    try:
        child.expect("Hardware: CPU only")
        _menu(child, "What do you want to do?")
        child.send(ENTER)  # fine-tune (SFT), the default
        _menu(child, "Model")
        child.send(ENTER)  # swift-demo
        child.expect("Suggested method: lora")
        _menu(child, "Dataset")
        child.send(DOWN + ENTER)  # type a data file, hub id or name#rows
        child.expect("Data file, hub id or dataset name")
        child.send("no/such/data.jsonl" + ENTER)
        child.expect("file not found: no/such/data.jsonl")
        child.expect("try again")
        child.expect("Data file, hub id or dataset name")
        child.send("self-cognition#16" + ENTER)
        child.expect("The model's name")
        child.send(ENTER)  # swift-robot
        child.expect("Its author")
        child.send(ENTER)  # swift
        _menu(child, "Method")
        child.send(DOWN + ENTER)  # QLoRA: pointless on a CPU -> warning and a question
        child.expect("QLoRA saves GPU memory")
        child.expect(r"Use it anyway\?")
        child.send("n")
        _menu(child, "Method")
        child.send(ENTER)  # LoRA, the recommended one
        child.expect("Epochs")
        child.send("-1" + ENTER)
        child.expect("must be greater than 0, got -1")
        child.expect("Epochs")
        child.send("2" + ENTER)
        for question, answer in (("Batch size per device", "1"), ("Gradient accumulation steps", None),
                                 ("Learning rate", "5e-3"), ("LoRA rank", None), ("Max tokens per sample", "256"),
                                 ("Output folder", None)):
            child.expect(question)
            child.send((answer or "") + ENTER)
        child.expect(r"--dataset 'self-cognition#16' \\")
        child.expect(r"Saved: ([^\s\x1b]+\.sh)")
        script = tmp_path / child.match.group(1)
        child.expect(r"\(swift sft --config ([^\s\x1b)]+\.yaml)\)")
        config = tmp_path / child.match.group(1)
        child.expect(r"Run it now\?")
        child.send("y")
        child.expect(r"train:\s+\d+%.*loss=", timeout=120)  # the trainer's own progress bar, live
        child.expect(r"final loss:\s+(\d+\.\d+)", timeout=120)
        final_loss = float(child.match.group(1))
        child.expect(r"Press a key:")

        child.send("c")  # chat with it
        child.expect(r"swift infer --adapters output/v0-[\d-]+/checkpoint-32")
        child.expect("<<< ", timeout=90)
        child.send("who are you?" + ENTER)
        child.expect(">>> ")
        child.expect("<<< ", timeout=60)
        reply = child.before.strip()
        child.send("exit" + ENTER)
        child.expect("Press a key:")

        child.send("m")  # merge
        child.expect(r"swift export --adapters output/v0-[\d-]+/checkpoint-32 --merge_lora true")
        child.expect(r"Merged model: ([^\s\x1b]+)", timeout=90)
        merged = tmp_path / child.match.group(1)
        child.expect("Press a key:")
        child.send("x")
        child.expect("Bye.")
        child.expect(pexpect.EOF)
    finally:
        child.close()
        transcript.close()
    assert child.exitstatus == 0, (tmp_path / "transcript.txt").read_text()[-3000:]
    assert reply, "the chat answered nothing"
    assert (merged / "config.json").is_file() and list(merged.glob("*.safetensors"))
    assert script.is_file() and os.access(script, os.X_OK) and config.is_file()
    assert yaml.safe_load(config.read_text())["dataset"] == "self-cognition#16"

    # The saved config reproduces the run: the same loss at every logged step.
    out = subprocess.run([sys.executable, "-m", "swift", "sft", "--config", str(config)], cwd=tmp_path, env=_env(),
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    first, second = sorted((tmp_path / "output").glob("v*-*"))
    a, b = _losses(first), _losses(second)
    assert len(a) >= 5 and a.keys() == b.keys()
    assert all(abs(a[s] - b[s]) < 1e-4 for s in a), (a, b)
    assert abs(a[max(a)] - final_loss) < 1e-3


@pytest.mark.slow
def test_unattended_from_an_answers_file_trains_and_merges(tmp_path):
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump({"dataset": "self-cognition#16", "num_train_epochs": 1, "max_length": 256,
                                       "learning_rate": 5e-3, "output_dir": "runs", "then": ["merge"]}))
    out = subprocess.run([sys.executable, "-m", "swift", "quickstart", "--answers", str(answers), "--lang", "en"],
                         cwd=tmp_path, env=_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "? Epochs 1" in out.stdout and "final loss:" in out.stdout
    (run,) = (tmp_path / "runs").glob("v0-*")
    (merged,) = run.glob("checkpoint-*-merged")
    assert f"Merged model: {merged.relative_to(tmp_path)}" in out.stdout
    assert (merged / "config.json").is_file() and list(merged.glob("*.safetensors"))
    assert len(list((tmp_path / "runs" / "quickstart").glob("*.yaml"))) == 1


FOLLOW_UPS = """
import sys
from swift.ui.quickstart_ask import TerminalAsker
from swift.ui.quickstart_run import follow_ups
ckpt = sys.argv[1]
sys.exit(follow_ups(TerminalAsker(), {"last_checkpoint": ckpt, "run_dir": ckpt.rsplit("/", 1)[0],
                                      "tuner_type": "lora"}, "en", gpu=False))
"""


@pytest.mark.slow
def test_follow_ups_quantize_and_deploy_until_ctrl_c_then_come_back(tmp_path):
    train = subprocess.run([sys.executable, "-m", "swift", "sft", "--model", "swift-demo", "--dataset",
                            "self-cognition#8", "--model_name", "swift-robot", "--model_author", "swift",
                            "--num_train_epochs", "1", "--max_length", "128", "--output_dir", "output"],
                           cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=180)
    assert train.returncode == 0, train.stderr[-3000:]
    (ckpt,) = (tmp_path / "output").glob("v0-*/checkpoint-*")
    child = pexpect.spawn(sys.executable, ["-c", FOLLOW_UPS, str(ckpt)], cwd=str(tmp_path), env=_env(),
                          dimensions=(40, 160), encoding="utf-8", timeout=90, searchwindowsize=4000)
    try:
        child.expect("Press a key:")
        child.send("q")
        _menu(child, "Quantization method")
        child.send(ENTER)  # bnb on a CPU
        child.expect(r"swift export --adapters \S+ --quant_method bnb")
        child.expect(r"Quantized model: ([^\s\x1b]+)")
        quantized = tmp_path / child.match.group(1)
        child.expect("Press a key:")
        child.send("d")
        child.expect(r"swift deploy --adapters \S+ --port \d+")
        child.expect(r"serving at http://127\.0\.0\.1:\d+/v1")
        child.sendintr()  # Ctrl-C stops the server and comes back to the menu
        child.expect("Press a key:", timeout=30)
        child.send("x")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    assert (quantized / "config.json").is_file()

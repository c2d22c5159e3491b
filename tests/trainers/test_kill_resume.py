"""A run SIGKILLed in the middle of a save resumes from the previous complete checkpoint."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from trainer_helpers import PadCollator, make_args, make_model, make_rows

from swift.trainers import SwiftTrainer, find_latest_checkpoint, is_complete_checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def _checkpoints(out: str) -> list[str]:
    return sorted(glob.glob(os.path.join(out, "checkpoint-*")), key=lambda p: int(p.rsplit("-", 1)[1]))


def _assert_no_incomplete_checkpoint(out: str) -> None:
    for path in _checkpoints(out):
        assert is_complete_checkpoint(path), f"incomplete checkpoint visible: {path}"


def _run_child_until_stalled(out: str, flag: str, stall_step: int, log_path: str) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
    }
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "kill_child.py"), out, flag, str(stall_step)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
        try:
            deadline = time.time() + 240
            while not os.path.exists(flag):
                _assert_no_incomplete_checkpoint(out)
                if proc.poll() is not None:
                    pytest.fail(f"child exited with {proc.returncode}:\n{open(log_path).read()}")
                if time.time() > deadline:
                    pytest.fail(
                        f"child never reached the save of step {stall_step}:\n{open(log_path).read()}"
                    )
                time.sleep(0.05)
            # the child is inside the save: files are staged in the temporary folder only
            staged = glob.glob(os.path.join(out, f"tmp-checkpoint-{stall_step}.*"))
            assert len(staged) == 1 and os.path.isfile(os.path.join(staged[0], "optimizer.pt"))
            assert not os.path.exists(os.path.join(out, f"checkpoint-{stall_step}"))
            _assert_no_incomplete_checkpoint(out)
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_sigkill_during_save_then_resume(tmp_path):
    out, flag = str(tmp_path / "run"), str(tmp_path / "stalled.flag")
    _run_child_until_stalled(out, flag, stall_step=4, log_path=str(tmp_path / "child.log"))
    assert [os.path.basename(p) for p in _checkpoints(out)] == ["checkpoint-2"]
    assert glob.glob(os.path.join(out, "tmp-checkpoint-4.*"))
    assert find_latest_checkpoint(out) == os.path.join(out, "checkpoint-2")

    # Resume in this process; same settings as the child, plus rotation.
    args = make_args(out, save_steps=2, save_total_limit=2)
    trainer = SwiftTrainer(make_model(seed=7), args, train_dataset=make_rows(), data_collator=PadCollator())
    trainer.train(resume_from_checkpoint=True)
    assert not glob.glob(os.path.join(out, "tmp-checkpoint-*"))  # the stale save was removed
    assert [os.path.basename(p) for p in _checkpoints(out)] == ["checkpoint-4", "checkpoint-6"]
    _assert_no_incomplete_checkpoint(out)

    with open(os.path.join(out, "logging.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    losses = {r["step"]: r["loss"] for r in records if "loss" in r}
    # the killed run logged steps 3-4 after its last checkpoint; the resumed run replaced them
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 7))

    # The result equals an uninterrupted run with the same settings.
    ref_dir = str(tmp_path / "reference")
    reference = SwiftTrainer(
        make_model(),
        make_args(ref_dir, save_strategy="no"),
        train_dataset=make_rows(),
        data_collator=PadCollator(),
    )
    reference.train()
    with open(os.path.join(ref_dir, "logging.jsonl"), encoding="utf-8") as f:
        ref_losses = {r["step"]: r["loss"] for r in map(json.loads, f) if "loss" in r}
    for step, loss in ref_losses.items():
        assert losses[step] == pytest.approx(loss, abs=1e-6), step
    ref_state, state = reference.model.state_dict(), trainer.model.state_dict()
    assert all(torch.equal(ref_state[k], state[k]) for k in ref_state)

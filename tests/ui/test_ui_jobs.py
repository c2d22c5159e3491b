"""Jobs: swift commands run as subprocesses, followed (log, loss points, results) and stopped."""
from __future__ import annotations

import time

import pytest

from swift.ui.forms import build_argv, defaults
from swift.ui.jobs import Job, JobManager


def _wait(cond, timeout: float, what: str) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_training_job_reports_its_run_and_losses_live_and_stops_on_request(tmp_path):
    manager = JobManager(tmp_path / "jobs", cwd=tmp_path)
    values = defaults("sft")
    values.update(dataset="self-cognition#16", num_train_epochs=200, per_device_train_batch_size=4,
                  gradient_accumulation_steps=1, learning_rate=5e-3, max_length=128,
                  model_name="swift-robot", model_author="swift")
    job = manager.start(build_argv("sft", values) + ["--logging_steps", "1", "--save_steps", "1000"])
    assert manager.jobs() == [job] and job.status == "running"
    assert (job.folder / "command.txt").read_text().startswith("swift sft --model swift-demo")
    _wait(lambda: len(job.loss_points()) >= 2 or job.status != "running", 120, "two logged losses")
    assert job.status == "running", job.log_tail()
    run_dir = job.run_dir
    assert run_dir is not None and run_dir.is_absolute() and run_dir.parent == tmp_path / "output"
    assert job.result()["status"] == "training"
    first = job.loss_points()
    assert [s for s, _ in first[:2]] == [1, 2]
    assert "[train] step" in job.log_tail() or "step" in job.log_tail()
    assert manager.stop(job.id)
    assert job.status == "stopped"
    assert job.returncode is not None


def test_a_bad_command_fails_and_says_why(tmp_path):
    manager = JobManager(tmp_path / "jobs", cwd=tmp_path)
    job = manager.start(["swift", "sft", "--model", "swift-demo", "--num_train_epochs", "-3"])
    assert job.wait(60) == 2
    assert job.status == "failed"
    assert "--num_train_epochs: must be positive" in job.log_tail()
    assert job.loss_points() == [] and job.run_dir is None


def test_only_swift_commands_run(tmp_path):
    with pytest.raises(ValueError):
        JobManager(tmp_path).start(["rm", "-rf", "/"])


def test_log_tail_shows_the_last_redraw_of_progress_bars(tmp_path):
    job = Job("x", ["swift", "sft"], tmp_path)
    job.log_path.write_bytes(b"start\n 10%|#  |\r 50%|### |\r100%|#####|\ndone\n")
    assert job.log_tail() == "start\n100%|#####|\ndone\n"

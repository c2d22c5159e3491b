"""Commands run as subprocesses, for the wizard and the web UI: start, follow (log, loss points, results), stop.

A job is `swift <command> ...` run as `python -m swift ...` in its own process group, its output going to
`<jobs root>/<id>/log.txt`. The command reports its run folder and results to `<id>/result.json` (through
`SWIFT_RESULT_FILE`, see `swift.pipelines.common.report_result`); the loss points come from the run folder's
`logging.jsonl`, which the trainer appends to as it logs.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swift.ui.forms import command_line


@dataclass
class Job:
    """One started command. `status`: running, finished, failed or stopped."""

    id: str
    argv: list[str]
    folder: Path
    process: subprocess.Popen | None = None
    started: float = field(default_factory=time.time)
    stopped_by_user: bool = False

    @property
    def command(self) -> str:
        return command_line(self.argv)

    @property
    def log_path(self) -> Path:
        return self.folder / "log.txt"

    @property
    def result_path(self) -> Path:
        return self.folder / "result.json"

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    @property
    def status(self) -> str:
        code = self.returncode
        if code is None:
            return "running"
        if self.stopped_by_user:
            return "stopped"
        return "finished" if code == 0 else "failed"

    def result(self) -> dict[str, Any]:
        """What the command reported so far: run_dir, last_checkpoint, loss_curve, output_dir, url, ..."""
        try:
            return json.loads(self.result_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    @property
    def run_dir(self) -> Path | None:
        value = self.result().get("run_dir")
        return Path(value) if value else None

    def log_tail(self, max_chars: int = 20000) -> str:
        """The end of the output. Progress bars redraw with carriage returns: only the last redraw of a line
        is kept, as a terminal would show it."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 4 * max_chars))
                raw = f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        lines = [line.rsplit("\r", 1)[-1] if "\r" in line.rstrip("\r") else line.rstrip("\r")
                 for line in raw.split("\n")]
        return "\n".join(lines)[-max_chars:]

    def loss_points(self) -> list[tuple[int, float]]:
        """(step, training loss) logged so far (a line being written is skipped)."""
        run = self.run_dir
        if run is None or not (run / "logging.jsonl").is_file():
            return []
        from swift.trainers.plot import read_loss_series

        return read_loss_series(str(run / "logging.jsonl"))["loss"]

    def wait(self, timeout: float | None = None) -> int | None:
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = 10.0) -> None:
        """Interrupt the job's process group (Ctrl-C, so training stops cleanly), then kill it after `grace`."""
        if self.process is None or self.process.poll() is not None:
            return
        self.stopped_by_user = True
        try:
            os.killpg(self.process.pid, signal.SIGINT)
        except ProcessLookupError:
            return
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()


class JobManager:
    """Starts and keeps jobs; `root` holds one folder per job (command.txt, log.txt, result.json)."""

    def __init__(self, root: str | os.PathLike | None = None, cwd: str | os.PathLike | None = None):
        if root is None:
            from swift.utils.env import cache_home

            root = cache_home() / "ui-jobs"
        self.root = Path(root)
        self.cwd = Path(cwd) if cwd else Path.cwd()
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, argv: list[str], env: dict[str, str] | None = None) -> Job:
        """Run `argv` (`["swift", <command>, ...]`) in the background and return its job."""
        if not argv or argv[0] != "swift":
            raise ValueError(f"a job runs a swift command, got {argv[:2]}")
        with self._lock:
            n = len(self._jobs) + 1
            job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{n}"
            folder = self.root / job_id
            folder.mkdir(parents=True, exist_ok=True)
            job = Job(job_id, list(argv), folder)
            self._jobs[job_id] = job
        (folder / "command.txt").write_text(command_line(argv) + "\n", encoding="utf-8")
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "SWIFT_RESULT_FILE": str(job.result_path),
                    **(env or {})}
        with open(job.log_path, "ab") as log:
            job.process = subprocess.Popen([sys.executable, "-m", "swift", *argv[1:]], cwd=self.cwd, env=full_env,
                                           stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True)
        return job

    def jobs(self) -> list[Job]:
        """Every job of this manager, newest first."""
        return sorted(self._jobs.values(), key=lambda j: j.started, reverse=True)

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def stop(self, job_id: str) -> bool:
        job = self._jobs.get(job_id)
        if job is None:
            return False
        job.stop()
        return True

    def stop_all(self) -> None:
        for job in self._jobs.values():
            job.stop(grace=5.0)

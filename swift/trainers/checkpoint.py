"""Atomic checkpoints: a `checkpoint-N` folder is complete or absent.

A checkpoint is first written into a temporary sibling folder (`tmp-checkpoint-N.<token>`). When every
file is there, a completeness marker (`swift_checkpoint.json`: step, time, and every file with its size)
is written last, everything is fsynced, and the folder is renamed to `checkpoint-N` in one `os.replace`.
A process killed mid-save leaves only a `tmp-checkpoint-*` folder, which the next run removes.

Readers trust a `checkpoint-N` folder only when its marker is present, parses, names the same step and
every listed file still has its recorded size.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from typing import Any

from swift.utils.io import atomic_write_json, fsync_dir
from swift.utils.logging import get_logger

logger = get_logger("swift.trainers.checkpoint")

CHECKPOINT_PREFIX = "checkpoint"
TMP_CHECKPOINT_PREFIX = "tmp-checkpoint"
MARKER_NAME = "swift_checkpoint.json"
MARKER_FORMAT = 1
# PiSSA/OLoRA checkpoints: the adapter converted to apply to the original base weights.
CONVERTED_ADAPTER_DIR = "converted"

_CHECKPOINT_RE = re.compile(rf"^{CHECKPOINT_PREFIX}-(\d+)$")


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The step N of a folder named `checkpoint-N`, else None."""
    m = _CHECKPOINT_RE.match(os.path.basename(os.path.normpath(path)))
    return int(m.group(1)) if m else None


def list_files(folder: str | os.PathLike) -> dict[str, int]:
    """Every regular file under `folder` (relative POSIX path -> size in bytes), the marker excluded."""
    out: dict[str, int] = {}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            full = os.path.join(root, name)
            rel = os.path.relpath(full, folder).replace(os.sep, "/")
            if rel != MARKER_NAME:
                out[rel] = os.path.getsize(full)
    return dict(sorted(out.items()))


def fsync_tree(folder: str | os.PathLike) -> None:
    """fsync every file and folder under `folder`, so a rename that follows publishes durable data."""
    for root, dirs, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for name in dirs:
            fsync_dir(os.path.join(root, name))
    fsync_dir(folder)


def write_marker(folder: str | os.PathLike, step: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the completeness marker into `folder`; call it after every other file is written.

    Args:
        folder: The (temporary) checkpoint folder.
        step: The global step this checkpoint holds.
        extra: More JSON-able fields to record (e.g. epoch).

    Returns:
        The marker as written.
    """
    marker: dict[str, Any] = {
        "format": MARKER_FORMAT,
        "step": int(step),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "unix_time": time.time(),
        "files": list_files(folder),
    }
    if extra:
        marker.update(extra)
    atomic_write_json(os.path.join(folder, MARKER_NAME), marker)
    return marker


def read_marker(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The marker of a complete checkpoint folder, or None when it is missing, corrupt or does not match."""
    path = os.path.join(folder, MARKER_NAME)
    try:
        with open(path, encoding="utf-8") as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or not isinstance(marker.get("files"), dict):
        return None
    step = checkpoint_step(folder)
    if step is not None and marker.get("step") != step:
        return None
    for rel, size in marker["files"].items():
        full = os.path.join(folder, *rel.split("/"))
        if not os.path.isfile(full) or os.path.getsize(full) != size:
            return None
    return marker


def is_complete_checkpoint(folder: str | os.PathLike) -> bool:
    """True when `folder` carries a valid completeness marker."""
    return os.path.isdir(folder) and read_marker(folder) is not None


def find_latest_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest COMPLETE `checkpoint-N` folder in `output_dir`, or None.

    Folders without a valid marker (written by a killed process, or by something other than SwiftLab)
    are skipped with a warning.

    Args:
        output_dir: The run's output folder.

    Returns:
        The path of the checkpoint with the highest step whose marker is valid, or None.
    """
    if not os.path.isdir(output_dir):
        return None
    candidates = []
    for name in os.listdir(output_dir):
        step = checkpoint_step(name)
        full = os.path.join(output_dir, name)
        if step is not None and os.path.isdir(full):
            candidates.append((step, full))
    for _step, full in sorted(candidates, reverse=True):
        if read_marker(full) is not None:
            return full
        logger.warning(
            "Ignoring %s: it has no valid %s (an interrupted save, or not written by SwiftLab).",
            full,
            MARKER_NAME,
        )
    return None


def temp_checkpoint_dir(run_dir: str | os.PathLike, step: int, token: str | int) -> str:
    """Where checkpoint `step` is staged before it is published."""
    return os.path.join(run_dir, f"{TMP_CHECKPOINT_PREFIX}-{step}.{token}")


def remove_stale_temp_checkpoints(output_dir: str | os.PathLike) -> list[str]:
    """Delete `tmp-checkpoint-*` folders left by a killed run; returns the removed paths."""
    removed: list[str] = []
    if not os.path.isdir(output_dir):
        return removed
    for name in sorted(os.listdir(output_dir)):
        full = os.path.join(output_dir, name)
        if name.startswith(f"{TMP_CHECKPOINT_PREFIX}-") and os.path.isdir(full):
            logger.info("Removing an incomplete checkpoint left by an interrupted save: %s", full)
            shutil.rmtree(full, ignore_errors=True)
            removed.append(full)
    return removed


def publish_checkpoint(tmp_dir: str | os.PathLike, final_dir: str | os.PathLike) -> None:
    """Rename a finished temporary folder to its final name in one step.

    A folder already at `final_dir` (the same step saved twice) is moved aside first and deleted after,
    so `final_dir` never holds a mix of two saves.
    """
    tmp_dir, final_dir = os.fspath(tmp_dir), os.fspath(final_dir)
    parent = os.path.dirname(os.path.abspath(final_dir))
    old = None
    if os.path.exists(final_dir):
        old = f"{tmp_dir}.old"
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    fsync_dir(parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def adapter_for_inference(path: str | os.PathLike) -> str:
    """The adapter folder to load on the ORIGINAL base model: `<path>/converted` for a PiSSA/OLoRA checkpoint
    (whose own adapter only fits the modified base it was trained on), else `path` itself."""
    converted = os.path.join(os.fspath(path), CONVERTED_ADAPTER_DIR)
    if os.path.isfile(os.path.join(converted, "adapter_config.json")):
        logger.info("%s is a PiSSA/OLoRA checkpoint: using its adapter converted for the original base, %s",
                    path, converted)
        return converted
    return os.fspath(path)

"""Completeness markers, latest-checkpoint lookup, stale temp cleanup and publishing (no torch needed)."""

from __future__ import annotations

import json
import logging
import os

from swift.trainers.checkpoint import (
    MARKER_NAME,
    find_latest_checkpoint,
    is_complete_checkpoint,
    publish_checkpoint,
    read_marker,
    remove_stale_temp_checkpoints,
    temp_checkpoint_dir,
    write_marker,
)


def _make_ckpt(root, step: int, complete: bool = True) -> str:
    folder = os.path.join(root, f"checkpoint-{step}")
    os.makedirs(os.path.join(folder, "sub"))
    with open(os.path.join(folder, "model.safetensors"), "wb") as f:
        f.write(b"x" * (10 + step))
    with open(os.path.join(folder, "sub", "a.json"), "w") as f:
        f.write("{}")
    if complete:
        write_marker(folder, step)
    return folder


def test_marker_lists_files_with_sizes(tmp_path):
    folder = _make_ckpt(tmp_path, 3)
    marker = json.loads(open(os.path.join(folder, MARKER_NAME)).read())
    assert marker["step"] == 3 and "time" in marker
    assert marker["files"] == {"model.safetensors": 13, "sub/a.json": 2}
    assert is_complete_checkpoint(folder)


def test_marker_invalid_when_file_changes_or_step_mismatches(tmp_path):
    folder = _make_ckpt(tmp_path, 3)
    with open(os.path.join(folder, "model.safetensors"), "ab") as f:
        f.write(b"more")
    assert read_marker(folder) is None
    other = _make_ckpt(tmp_path, 4)
    marker = json.loads(open(os.path.join(other, MARKER_NAME)).read())
    marker["step"] = 5
    with open(os.path.join(other, MARKER_NAME), "w") as f:
        json.dump(marker, f)
    assert not is_complete_checkpoint(other)
    with open(os.path.join(other, MARKER_NAME), "w") as f:
        f.write("{truncated")
    assert not is_complete_checkpoint(other)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_find_latest_skips_incomplete(tmp_path):
    assert find_latest_checkpoint(tmp_path / "missing") is None
    assert find_latest_checkpoint(tmp_path) is None
    _make_ckpt(tmp_path, 2)
    _make_ckpt(tmp_path, 10)
    _make_ckpt(tmp_path, 12, complete=False)
    os.makedirs(tmp_path / "checkpoint-zzz")
    (tmp_path / "checkpoint-99").write_text("not a folder")
    handler = _Records()
    log = logging.getLogger("swift.trainers.checkpoint")
    log.addHandler(handler)
    try:
        assert find_latest_checkpoint(tmp_path) == os.path.join(tmp_path, "checkpoint-10")
    finally:
        log.removeHandler(handler)
    assert any("checkpoint-12" in m for m in handler.messages)  # warned about the folder without marker


def test_remove_stale_and_publish(tmp_path):
    tmp = temp_checkpoint_dir(tmp_path, 5, 1234)
    os.makedirs(tmp)
    (tmp_path / "tmp-checkpoint-7.99.old").mkdir()
    _make_ckpt(tmp_path, 1)
    removed = remove_stale_temp_checkpoints(tmp_path)
    assert sorted(os.path.basename(p) for p in removed) == [
        "tmp-checkpoint-5.1234",
        "tmp-checkpoint-7.99.old",
    ]
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-1"]

    # publishing over an existing folder of the same step replaces it whole
    staged = temp_checkpoint_dir(tmp_path, 1, 1)
    os.makedirs(staged)
    (tmp_path / "tmp-checkpoint-1.1" / "new.bin").write_bytes(b"abc")
    write_marker(staged, 1)
    publish_checkpoint(staged, tmp_path / "checkpoint-1")
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-1"]
    assert sorted(os.listdir(tmp_path / "checkpoint-1")) == ["new.bin", MARKER_NAME]
    assert is_complete_checkpoint(tmp_path / "checkpoint-1")

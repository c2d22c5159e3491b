"""Pieces shared by the pipelines: run folders, args.json and the manifest, reading a checkpoint's args."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import time
from pathlib import Path
from typing import Any

from swift.utils.errors import ArgumentError
from swift.utils.io import atomic_write_json, read_json
from swift.utils.logging import get_logger

logger = get_logger("swift.pipelines")

ARGS_FILE = "args.json"
MANIFEST_FILE = "manifest.json"
# Never written to args.json or logs.
SECRET_KEYS = {"hub_token", "api_key", "push_to_hub_token"}
# Not recorded in args.json: they describe this invocation, not the run (a rerun from args.json starts fresh).
TRANSIENT_KEYS = {"resume_from_checkpoint"}
_VERSION_RE = re.compile(r"^v(\d+)-")


def report_result(**values: Any) -> None:
    """Merge values (run folder, checkpoints, output folder, ...) into `SWIFT_RESULT_FILE` when it is set: the
    wizard and the web UI start commands as subprocesses and learn where their results went from this file."""
    from swift.utils.env import result_file

    path = result_file()
    if not path:
        return
    from swift.launch.launcher import is_main_process

    if not is_main_process():
        return
    try:
        current = read_json(path) if os.path.isfile(path) else {}
    except (OSError, ValueError):
        current = {}
    paths = ("run_dir", "last_checkpoint", "best_checkpoint", "loss_curve", "output_dir")
    current.update({k: os.path.abspath(v) if k in paths and v else str(v) if isinstance(v, Path) else v
                    for k, v in values.items()})
    atomic_write_json(path, current)


def new_run_dir(output_dir: str, add_version: bool) -> Path:
    """`<output_dir>/v<N>-<YYYYmmdd-HHMMSS>` (N one more than the highest present), or output_dir itself.

    In a multi-process run, rank 0 makes the folder and the other ranks take the same one."""
    root = Path(output_dir)
    if not add_version:
        root.mkdir(parents=True, exist_ok=True)
        return root
    root.mkdir(parents=True, exist_ok=True)
    from swift.launch.launcher import shared_value

    return Path(shared_value(root, "run-dir", lambda: str(_make_version_dir(root))))


def _make_version_dir(root: Path) -> Path:
    numbers = [int(m.group(1)) for p in root.iterdir() if p.is_dir() and (m := _VERSION_RE.match(p.name))]
    n = max(numbers, default=-1) + 1
    while True:
        run = root / f"v{n}-{time.strftime('%Y%m%d-%H%M%S')}"
        try:
            run.mkdir()
            return run
        except FileExistsError:
            n += 1


def run_dirs(output_dir: str) -> list[Path]:
    """The versioned run folders under output_dir, newest (highest version) first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    runs = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _VERSION_RE.match(p.name))]
    return [p for _, p in sorted(runs, reverse=True)]


def public_args(flat: dict[str, Any]) -> dict[str, Any]:
    """The flat argument dict without secrets, ready for args.json."""
    return {k: v for k, v in flat.items() if k not in SECRET_KEYS and k not in TRANSIENT_KEYS}


def package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("swiftlab", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "tokenizers"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def rows_fingerprint(rows: list[dict] | None) -> str | None:
    """A stable hash of dataset rows, recorded in the manifest so a run can be checked for the same data."""
    if rows is None:
        return None
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=_content_hash).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()[:16]


def _content_hash(value: Any) -> str:
    """A stable stand-in for what JSON cannot hold in a row: bytes, decoded images, arrays."""
    data = getattr(value, "tobytes", None)
    raw = value if isinstance(value, (bytes, bytearray)) else data() if callable(data) else repr(value).encode()
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def write_run_files(run_dir: Path, args: dict[str, Any], manifest: dict[str, Any]) -> None:
    from swift.launch.launcher import is_main_process

    if not is_main_process():
        return
    atomic_write_json(run_dir / ARGS_FILE, public_args(args))
    atomic_write_json(run_dir / MANIFEST_FILE, manifest)


def read_checkpoint_args(path: str) -> dict[str, Any]:
    """args.json of a checkpoint (in the folder itself or in its run folder)."""
    p = Path(path)
    if not p.exists():
        raise ArgumentError("adapters", f"folder not found: {path}")
    for candidate in (p / ARGS_FILE, p.parent / ARGS_FILE):
        if candidate.is_file():
            return read_json(candidate)
    return {}


def is_adapter_dir(path: str) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def adapter_base_model(path: str) -> str | None:
    """The base model recorded by peft in an adapter folder."""
    cfg = Path(path) / "adapter_config.json"
    if not cfg.is_file():
        return None
    return read_json(cfg).get("base_model_name_or_path")

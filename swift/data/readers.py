"""Read raw rows from local files: JSON lines, JSON, CSV and Parquet.

Each reader yields `(row_number, raw)` with 1-based row numbers (the line number for JSON lines, so an error
points at the line to open); a line that is not valid JSON yields a `RowError` instead of a row.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from swift.data.formats import RowError
from swift.utils.errors import DataError

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")

RawRows = Iterator[tuple[int, Any]]


def _read_jsonl_text(text: str) -> RawRows:
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as e:
            yield lineno, RowError(None, f"bad JSON on line {lineno}: {e.msg} (column {e.colno})", "bad JSON")


def _read_json(path: Path, display: str) -> RawRows:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # JSON lines in a file named .json
            yield from _read_jsonl_text(text)
            return
        raise DataError(f"bad JSON at line {e.lineno}, column {e.colno}: {e.msg}", file=display) from None
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
        data = next(iter(data.values()))  # {"data": [...]}
    if not isinstance(data, list):
        raise DataError("expected a JSON list of rows (objects), or JSON lines", file=display)
    yield from enumerate(data, 1)


def _read_csv(path: Path) -> RawRows:
    with open(path, encoding="utf-8", newline="") as f:
        yield from enumerate(csv.DictReader(f), 1)


def _read_parquet(path: Path, display: str) -> RawRows:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except pa.ArrowException as e:
        raise DataError(f"cannot read the Parquet file: {e}", file=display) from None
    yield from enumerate(rows, 1)


def read_file(path: Path, display: str | None = None) -> RawRows:
    """Raw rows of one local file, chosen by its suffix.

    Args:
        path: the file.
        display: how to name the file in errors (default: the path).

    Raises:
        DataError: the suffix is not supported or the file cannot be read as a whole.
    """
    display = display or str(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            yield from _read_jsonl_text(path.read_text(encoding="utf-8"))
        elif suffix == ".json":
            yield from _read_json(path, display)
        elif suffix == ".csv":
            yield from _read_csv(path)
        elif suffix == ".parquet":
            yield from _read_parquet(path, display)
        else:
            raise DataError(f"unsupported file type '{suffix}'; use one of {', '.join(SUFFIXES)}", file=display)
    except csv.Error as e:
        raise DataError(f"bad CSV: {e}", file=display) from None
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text ({e.reason} at byte {e.start})", file=display) from None
    except OSError as e:
        raise DataError(f"cannot read the file: {e.strerror or e}", file=display) from None


def list_files(folder: Path) -> list[Path]:
    """Data files of a folder (sorted, not recursive)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise DataError(f"the folder has no data files ({', '.join(SUFFIXES)})", file=str(folder))
    return files

"""`encode_rows`: canonical rows -> an arrow `datasets.Dataset` (input_ids, labels, length), cached on disk.

The template does the heavy part (`batch_encode` for chat rows, `batch_encode_text` for pre-training text);
each result is a dict `{"input_ids", "labels"}` or an error object with `.reason` in
{"too_long", "no_labels", "bad_messages"}. Rows the template drops are counted per reason and reported with
their file and row; a row whose labels are all masked is dropped too (it would train on nothing), even if
the template returned it. Dropping more than 10% of the rows is a DataError.

The encoded data is saved under `<cache_dir>/enc-<key>` where the key hashes the rows' content, the
template's `fingerprint()`, the mode, strictness and `ENCODE_VERSION`; the next run with the same key
loads it instead of encoding again.
"""
from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import pickle
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from swift.data.formats import origin
from swift.utils.env import cache_home
from swift.utils.errors import ArgumentError, DataError
from swift.utils.io import atomic_write_json, read_json
from swift.utils.logging import get_logger

if TYPE_CHECKING:
    import datasets

logger = get_logger("swift.data")

ENCODE_VERSION = "1"  # bump when the encoded layout or the drop rules change: old caches stop matching
MAX_DROP_FRACTION = 0.10
META_FILE = "swift_encoding.json"
DROP_HELP = {
    "too_long": "longer than max_length with truncation 'delete' (raise --max_length or use "
                "--truncation_strategy left/right)",
    "no_labels": "every label is masked, nothing to learn (often the answer was truncated away)",
    "bad_messages": "the template rejected the messages",
}
SOFT_REASONS = ("too_long", "no_labels")  # always dropped and counted, even when strict


def _inputs(rows: Sequence[Mapping[str, Any]], mode: str, desc: str) -> list:
    key = "messages" if mode == "sft" else "text"
    try:
        return [r[key] for r in rows]
    except (KeyError, TypeError):
        for i, r in enumerate(rows):
            if not isinstance(r, Mapping) or key not in r:
                file, row = origin(r, i, desc) if isinstance(r, Mapping) else (desc, i + 1)
                raise DataError(f"expected a canonical row with '{key}' (mode '{mode}'); load data with "
                                "swift.data.load_datasets", file=file, row=row) from None
        raise


def _cache_key(inputs: list, template_fp: str, mode: str, strict: bool) -> str:
    h = hashlib.sha256()
    for part in (ENCODE_VERSION, mode, str(strict), template_fp):
        h.update(part.encode("utf-8") + b"\0")
    # pickle of lists/dicts/strs is deterministic and several times faster than json here; rows that are equal
    # but built differently (key order) only miss the cache, they never share an entry by mistake.
    h.update(pickle.dumps(inputs, protocol=4))
    return h.hexdigest()[:24]


def _encode_chunk(template: Any, inputs: list, start: int, stop: int, mode: str) -> tuple:
    """Encode inputs[start:stop]; returns compact numpy arrays (cheap to send back from a worker process)."""
    chunk = inputs[start:stop]
    results = template.batch_encode(chunk) if mode == "sft" else template.batch_encode_text(chunk)
    if len(results) != len(chunk):
        raise RuntimeError(f"template returned {len(results)} results for {len(chunk)} rows")
    flat_ids: list[int] = []
    flat_labels: list[int] = []
    lengths: list[int] = []
    errors: list[tuple[int, str, str]] = []
    for i, r in enumerate(results):
        if type(r) is not dict and not isinstance(r, Mapping):
            errors.append((start + i, str(getattr(r, "reason", "bad_messages")), str(r)))
            continue
        ids = r["input_ids"]
        labels = r.get("labels", ids)
        ids = ids if type(ids) is list else list(ids)
        labels = labels if type(labels) is list else list(labels)
        n = len(ids)
        if len(labels) != n:
            raise RuntimeError(f"template returned {len(labels)} labels for {n} input_ids")
        # The first label never counts (the model predicts token t+1 from token t).
        if n == 0 or labels.count(-100) - (labels[0] == -100) >= n - 1:
            errors.append((start + i, "no_labels", "every label is masked"))
            continue
        flat_ids += ids
        flat_labels += labels
        lengths.append(n)
    return (np.array(lengths, dtype=np.int64), np.array(flat_ids, dtype=np.int32),
            np.array(flat_labels, dtype=np.int32), errors)


_WORKER_STATE: tuple = ()


def _init_worker(chunk_fn: Callable, template: Any, inputs: list) -> None:
    global _WORKER_STATE
    _WORKER_STATE = (chunk_fn, template, inputs)


def _worker(task: tuple) -> tuple:
    chunk_fn, template, inputs = _WORKER_STATE
    return chunk_fn(template, inputs, *task)


def _run(inputs: list, template: Any, mode: str, num_proc: int, batch_size: int,
         chunk_fn: Callable = _encode_chunk) -> list[tuple]:
    """`chunk_fn(template, inputs, start, stop, mode)` over batches of `inputs`, in `num_proc` processes.

    `chunk_fn` must be a module-level function (spawned workers import it by name)."""
    tasks = [(s, min(s + batch_size, len(inputs)), mode) for s in range(0, len(inputs), batch_size)]
    if num_proc <= 1 or len(tasks) == 1:
        return [chunk_fn(template, inputs, *t) for t in tasks]
    # With fork the workers inherit the template and the rows without pickling (spawn pickles them once each).
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    with ctx.Pool(min(num_proc, len(tasks)), initializer=_init_worker, initargs=(chunk_fn, template, inputs)) as pool:
        return pool.map(_worker, tasks, chunksize=1)


def _drop_report(errors: list[tuple], rows: Sequence[Mapping], total: int, strict: bool, desc: str,
                 hints: Mapping[str, str] = DROP_HELP, soft: Collection[str] = SOFT_REASONS) -> dict:
    """Raise for a bad row (strict) or too many drops; return counts and first examples per reason.

    `errors` holds `(row index, reason, message)` or `(row index, reason, message, field)`; reasons in `soft` are
    dropped and counted even when strict."""
    counts: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for idx, reason, message, *field in errors:
        file, row = origin(rows[idx], idx, desc)
        if strict and reason not in soft:
            raise DataError(f"the template cannot encode this row ({reason}): {message}", file=file, row=row,
                            field=field[0] if field else None)
        counts[reason] += 1
        examples.setdefault(reason, f"{file}, row {row}")
    report = {"rows": total, "dropped": dict(counts), "examples": examples}
    n = sum(counts.values())
    if n > MAX_DROP_FRACTION * total:
        raise DataError(f"{desc}: encoding dropped {n} of {total} rows ({n / total:.1%}, more than "
                        f"{MAX_DROP_FRACTION:.0%}): {_describe(report, hints)}")
    return report


def _describe(report: dict, hints: Mapping[str, str] = DROP_HELP) -> str:
    return "; ".join(f"{n} x {reason}: {hints.get(reason, 'rejected by the template')} (e.g. "
                     f"{report['examples'][reason]})" for reason, n in report["dropped"].items())


def _log_report(report: dict, desc: str, hints: Mapping[str, str] = DROP_HELP) -> None:
    n = sum(report["dropped"].values())
    if n:
        logger.warning("%s: dropped %d of %d rows at encoding: %s", desc, n, report["rows"],
                       _describe(report, hints))


def _list_column(lengths: np.ndarray, values: np.ndarray) -> Any:
    """An arrow list column from row lengths and the rows' values laid end to end (no per-row Python objects)."""
    import pyarrow as pa

    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    large = offsets[-1] >= 2**31
    list_array = pa.LargeListArray if large else pa.ListArray
    return list_array.from_arrays(pa.array(offsets if large else offsets.astype(np.int32)), pa.array(values))


def _to_dataset(chunks: list[tuple]) -> datasets.Dataset:
    import datasets
    import pyarrow as pa

    lengths = np.concatenate([c[0] for c in chunks])

    def column(k: int) -> pa.Array:
        return _list_column(lengths, np.concatenate([c[k] for c in chunks]))

    table = pa.table({"input_ids": column(1), "labels": column(2), "length": pa.array(lengths.astype(np.int32))})
    return datasets.Dataset(datasets.table.InMemoryTable(table))


def _cache_path(cache_dir: str | os.PathLike | None, key: str) -> Path:
    """The cache folder of an encoding: `<cache_dir>/enc-<key>` (default cache_dir: `cache_home()/datasets`)."""
    return (Path(cache_dir) if cache_dir is not None else cache_home() / "datasets") / f"enc-{key}"


def _load_cached(path: Path, desc: str, hints: Mapping[str, str] = DROP_HELP) -> datasets.Dataset | None:
    """The cached encoding at `path` (its drop report logged again), or None when absent or unreadable."""
    if not (path / META_FILE).exists():
        return None
    import datasets

    try:
        ds, meta = datasets.load_from_disk(str(path)), read_json(path / META_FILE)
    except Exception as e:  # a damaged cache is rebuilt, not fatal
        logger.warning("%s: cached encoding at %s is unreadable (%s); encoding again", desc, path, e)
        return None
    logger.info("%s: reused cached encoding of %d rows from %s", desc, len(ds), path)
    _log_report(meta["report"], desc, hints)
    return ds


def _save(ds: datasets.Dataset, path: Path, meta: dict) -> datasets.Dataset:
    """Write atomically (temporary folder, then rename) and reopen memory-mapped."""
    import datasets
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    quiet = are_progress_bars_disabled()
    disable_progress_bars()  # a bar for a write of a few milliseconds is noise
    try:
        ds.save_to_disk(str(tmp))
        atomic_write_json(tmp / META_FILE, meta)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except OSError:
        if not (path / META_FILE).exists():  # not a concurrent writer that won the race
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not quiet:
            enable_progress_bars()
    return datasets.load_from_disk(str(path))


def encode_rows(rows: Sequence[Mapping[str, Any]], template: Any, *, mode: str = "sft", num_proc: int = 1,
                cache_dir: str | os.PathLike | None = None, strict: bool = True, desc: str = "train",
                load_from_cache_file: bool = True, batch_size: int = 1000) -> datasets.Dataset:
    """Encode canonical rows with a template into an arrow dataset, reusing the on-disk cache.

    Args:
        rows: canonical rows (`messages` for sft, `text` for pt), e.g. from `load_datasets`.
        template: an object with `batch_encode(list_of_messages)`, `batch_encode_text(texts)` and
            `fingerprint()` (see `swift.templates`).
        mode: "sft" or "pt".
        num_proc: worker processes (`--dataset_num_proc`).
        cache_dir: cache folder; default `cache_home() / "datasets"`.
        strict: a row the template rejects as bad stops the run (DataError naming file and row); with
            False it is dropped and counted. Too-long and fully-masked rows are always dropped and counted.
        desc: what the rows are ("train", "val"), for messages.
        load_from_cache_file: reuse a cached encoding with the same key (False encodes again and rewrites it).
        batch_size: rows per `batch_encode` call.

    Returns:
        A `datasets.Dataset` with int32 columns input_ids, labels (lists) and length.

    Raises:
        DataError: a bad row (strict), an empty input, or more than 10% of the rows dropped.
    """
    if mode not in ("sft", "pt"):
        raise ArgumentError("mode", f"expected 'sft' or 'pt', got {mode!r}")
    if not rows:
        raise DataError(f"{desc}: no rows to encode")
    inputs = _inputs(rows, mode, desc)
    path = _cache_path(cache_dir, _cache_key(inputs, str(template.fingerprint()), mode, strict))
    if load_from_cache_file:
        ds = _load_cached(path, desc)
        if ds is not None:
            return ds
    chunks = _run(inputs, template, mode, num_proc, batch_size)
    report = _drop_report([e for c in chunks for e in c[3]], rows, len(inputs), strict, desc)
    _log_report(report, desc)
    meta = {"version": ENCODE_VERSION, "mode": mode, "template": str(template.fingerprint()), "report": report}
    return _save(_to_dataset(chunks), path, meta)

"""`load_datasets`: dataset specs -> canonical rows (train, val), strict by default.

A spec is `path_or_id[:subset][#N]`: a local file or folder (jsonl/json/csv/parquet), a preset name from the
catalog, or a hub id (`owner/name`). `#N` samples N rows reproducibly with the seed; when N is larger than the
dataset, whole copies are repeated and the remainder sampled (as ms-swift does).

Multimodal rows: relative media paths in a local file are resolved against the working directory, then against
the dataset file's folder, and stored absolute (hub rows are left as they are). A preset with a `preprocess`
function (`swift.data.mm_presets`) has it applied to each raw row (hub or local) before normalising; rows it
returns None for are skipped and counted in the log.
"""
from __future__ import annotations

import math
import os
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swift.data.catalog import DATASETS, DatasetSpec, find_dataset
from swift.data.formats import FORMAT_HELP, MEDIA_KEYS, Row, RowError, detect_format, normalize
from swift.data.media import is_url, looks_like_base64
from swift.data.preference import FORMAT_HELP as ALIGNMENT_HELP
from swift.data.readers import SUFFIXES, list_files, read_file
from swift.data.self_cognition import PlaceholderFiller
from swift.utils.env import use_hf_default
from swift.utils.errors import ArgumentError, DataError
from swift.utils.logging import get_logger

logger = get_logger("swift.data")

MODES = ("sft", "pt", "infer", "preference", "kto", "prompt")
MAX_DROP_FRACTION = 0.10
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


@dataclass(frozen=True)
class DatasetRequest:
    """One parsed `--dataset` value."""

    text: str
    name: str
    subset: str | None = None
    sample: int | None = None


def parse_dataset_spec(text: str) -> DatasetRequest:
    """Split `path_or_id[:subset][#N]` into its parts (a path that exists is never split at ':').

    Raises:
        ArgumentError: empty spec or a bad `#N`.
    """
    if not isinstance(text, str) or not text.strip():
        raise ArgumentError("dataset", f"expected a file, preset name or hub id, got {text!r}")
    name, sample = text.strip(), None
    m = re.fullmatch(r"(.+)#(-?\d+)", name)
    if m:
        name, sample = m.group(1), int(m.group(2))
        if sample <= 0:
            raise ArgumentError("dataset", f"'{text}': the number of rows after '#' must be positive")
    subset = None
    if not os.path.exists(os.path.expanduser(name)) and ":" in name:
        head, tail = name.rsplit(":", 1)
        if head and tail and "/" not in tail and "\\" not in tail:
            name, subset = head, tail
    return DatasetRequest(text, name, subset, sample)


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.lower().endswith(SUFFIXES) or name.count("/") > 1 or "\\" in name


class _Dropped:
    """Counts of rows dropped per reason (strict=False), with the first example of each."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self.skipped = 0  # rows a preset's preprocessor returned None for (not errors)

    def add(self, err: RowError, where: str) -> None:
        self.counts[err.kind] += 1
        if err.kind not in self.examples:
            field = f", field '{err.field}'" if err.field else ""
            self.examples[err.kind] = f"{where}{field}: {err.message}"

    def summary(self) -> str:
        return "; ".join(f"{n} x {kind} (e.g. {self.examples[kind]})" for kind, n in self.counts.most_common())


def _resolve_path(text: str, folder: Path) -> str:
    """A local media path made absolute: as given when it exists from the cwd, else under the dataset's folder.
    URLs, data URIs and base64 strings are returned unchanged."""
    if is_url(text) or text.startswith(("data:", "file://")):
        return text
    path = os.path.expanduser(text)
    if os.path.exists(path):
        return os.path.abspath(path)
    if looks_like_base64(text) or os.path.isabs(path):
        return text
    return str(folder / path)


def _resolve_item(item: Any, folder: Path) -> Any:
    if isinstance(item, str):
        return _resolve_path(item, folder)
    if isinstance(item, dict) and not item.get("bytes") and isinstance(item.get("path"), str) and item["path"]:
        return {**item, "path": _resolve_path(item["path"], folder)}
    if isinstance(item, list):  # a video as a list of frames
        return [_resolve_item(x, folder) for x in item]
    return item


def resolve_media_paths(row: dict, folder: str | Path) -> dict:
    """Make the relative local paths of a canonical row's media lists absolute (see the module docstring)."""
    folder = Path(folder).expanduser().resolve()
    for key in MEDIA_KEYS.values():
        if row.get(key):
            row[key] = [_resolve_item(x, folder) for x in row[key]]
    return row


def _normalize_rows(raw_rows: Any, display: str, fmt: str | None, mode: str, strict: bool,
                    columns: dict[str, str], dropped: _Dropped, preprocess: Callable[[dict], dict | None] | None = None,
                    media_dir: Path | None = None) -> list[Row]:
    """Normalise raw rows of one file/hub dataset; strict raises on the first bad row, else counts it.

    `preprocess` (a preset's) is applied to each raw row first; `media_dir` (local files) resolves media paths.
    """
    out: list[Row] = []
    for row_no, raw in raw_rows:
        try:
            if isinstance(raw, RowError):
                raise raw
            if preprocess is not None and isinstance(raw, dict):
                raw = preprocess(raw)
                if raw is None:
                    dropped.skipped += 1
                    continue
            if columns and isinstance(raw, dict):
                raw = {columns.get(k, k): v for k, v in raw.items()}
            if fmt is None and isinstance(raw, dict):
                fmt = detect_format(raw, mode)
                if fmt is None:
                    hint = ALIGNMENT_HELP.get(mode, FORMAT_HELP)
                    raise DataError(f"cannot tell the data format from the columns {sorted(raw)}: {hint}",
                                    file=display, row=row_no)
            row = normalize(raw, fmt or "messages", mode)
            if media_dir is not None:
                resolve_media_paths(row, media_dir)
            out.append(Row(row, display, row_no))
        except RowError as e:
            if strict:
                raise DataError(e.message, file=display, row=row_no, field=e.field) from None
            dropped.add(e, f"{display}, row {row_no}")
    return out


def _preprocessor(preset: DatasetSpec | None) -> Callable[[dict], dict | None] | None:
    if preset is None or preset.preprocess is None:
        return None
    from swift.data.mm_presets import get_preprocessor

    return get_preprocessor(preset.preprocess)


def _load_one(req: DatasetRequest, *, mode: str, strict: bool, use_hf: bool, filler: PlaceholderFiller) -> list[Row]:
    """Canonical rows of one spec, before sampling."""
    path = Path(os.path.expanduser(req.name))
    preset = None if path.exists() else find_dataset(req.name)
    if preset is not None and preset.bundled_file() is not None and req.subset is None:
        path = preset.bundled_file()
    fmt = preset.format if preset is not None else None
    columns = preset.columns if preset is not None else {}
    dropped, rows = _Dropped(), []
    if path.exists():
        for file in list_files(path) if path.is_dir() else [path]:
            if preset is not None:
                display = str(file)
            else:
                display = req.name if file == path else os.path.join(req.name, file.name)
            rows.extend(_normalize_rows(read_file(file, display), display, fmt, mode, strict, columns, dropped,
                                        _preprocessor(preset), file.resolve().parent))
    else:
        rows = _load_hub(req, preset, mode=mode, strict=strict, use_hf=use_hf, dropped=dropped)
    if dropped.skipped:
        logger.warning("'%s': the preset's preprocessor skipped %d rows it cannot use (e.g. media it cannot fetch; "
                       "see swift.data.mm_presets)", req.text, dropped.skipped)
    n_dropped = sum(dropped.counts.values())
    total = len(rows) + n_dropped
    if n_dropped:
        msg = f"dropped {n_dropped} of {total} rows of '{req.text}': {dropped.summary()}"
        if n_dropped > MAX_DROP_FRACTION * total:
            raise DataError(f"{msg}. That is more than {MAX_DROP_FRACTION:.0%}: fix the data (strict=True stops at "
                            "the first bad row and names it)", file=req.name)
        logger.warning(msg)
    if not rows:
        why = f" (the preset's preprocessor skipped all {dropped.skipped})" if dropped.skipped else ""
        raise DataError(f"the dataset has no rows{why}", file=req.name)
    for row in rows:
        filler.fill(row, req.name)
    return rows


def _load_hub(req: DatasetRequest, preset: DatasetSpec | None, *, mode: str, strict: bool, use_hf: bool,
              dropped: _Dropped) -> list[Row]:
    from swift.data.hub import load_hub_rows

    if preset is None:
        if _looks_like_path(req.name) or not _HUB_ID.fullmatch(req.name):
            names = ", ".join(s.name for s in DATASETS)
            raise DataError(f"no such file, preset or hub id. Presets: {names}; hub ids look like 'owner/name'",
                            file=req.name)
        hub_id = req.name
    else:
        hub_id = preset.hf_id if use_hf else preset.ms_id
        if hub_id is None:
            raise DataError(f"the preset '{preset.name}' has no {'Hugging Face' if use_hf else 'ModelScope'} id; "
                            f"try --use_hf {'false' if use_hf else 'true'}", file=req.name)
    subset = req.subset or (preset.hub_subset(use_hf) if preset else None)
    raw = load_hub_rows(hub_id, subset, preset.split if preset else "train", use_hf)
    return _normalize_rows(enumerate(raw, 1), hub_id, preset.format if preset else None, mode, strict,
                           preset.columns if preset else {}, dropped, _preprocessor(preset))


def sample_rows(rows: list[Row], n: int, rng: random.Random) -> list[Row]:
    """n rows: a random subset (kept in order) or, when n > len(rows), whole copies plus a random remainder."""
    copies, rest = divmod(n, len(rows))
    picked = sorted(rng.sample(range(len(rows)), rest))
    return rows * copies + [rows[i] for i in picked]


def split_rows(rows: list[Row], ratio: float, rng: random.Random) -> tuple[list[Row], list[Row]]:
    """Hold out ceil(ratio * len) rows (at least one, leaving at least one) for validation."""
    n_val = min(max(1, math.ceil(ratio * len(rows))), len(rows) - 1)
    if n_val <= 0:
        return rows, []
    held = set(rng.sample(range(len(rows)), n_val))
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def _check_args(datasets: Sequence[str], split_dataset_ratio: float, mode: str) -> None:
    if isinstance(datasets, str) or not datasets:
        raise ArgumentError("dataset", "give at least one dataset (a list of files, preset names or hub ids)")
    if not 0.0 <= split_dataset_ratio < 1.0:
        raise ArgumentError("split_dataset_ratio", f"must be in [0, 1), got {split_dataset_ratio}")
    if mode not in MODES:
        raise ArgumentError("mode", f"expected one of {MODES}, got {mode!r}")


def load_datasets(datasets: Sequence[str], *, val_datasets: Sequence[str] = (), split_dataset_ratio: float = 0.0,
                  seed: int = 42, strict: bool = True, model_name: Sequence[str] | None = None,
                  model_author: Sequence[str] | None = None, use_hf: bool | None = None,
                  mode: str = "sft") -> tuple[list[dict], list[dict] | None]:
    """Load, normalise and validate datasets into canonical rows.

    Args:
        datasets: specs `path_or_id[:subset][#N]`, concatenated in order.
        val_datasets: validation specs; when given, `split_dataset_ratio` is not used.
        split_dataset_ratio: fraction of each training dataset held out for validation.
        seed: seed of `#N` sampling and of the split.
        strict: stop at the first malformed row (DataError naming file, row and field); with False, bad rows
            are dropped and counted per reason, and dropping more than 10% of a dataset is an error.
        model_name: self-cognition name, one value or (Chinese, English).
        model_author: self-cognition author, one value or (Chinese, English).
        use_hf: hub datasets from Hugging Face (True) or ModelScope (False); None reads `USE_HF`, else ModelScope.
        mode: "sft" gives `{"messages": [...]}` rows, "pt" gives `{"text": ...}` rows; "infer" gives
            `{"messages": [...]}` prompts that may end with a user turn (no reply needed). Alignment modes
            (`swift.data.preference`): "preference" gives `{"messages": [..., chosen reply],
            "rejected_response": str}`, "kto" `{"messages", "label": bool}`, "prompt" `{"messages": [..., user]}`
            plus "response" (a trailing reply) and the row's other scalar columns.

    Returns:
        (train rows, validation rows or None). Rows are `Row` dicts that keep their file and row number.

    Raises:
        DataError: a malformed row or an unreadable dataset.
        ArgumentError: a bad argument, or placeholders without --model_name / --model_author.
    """
    _check_args(datasets, split_dataset_ratio, mode)
    val_datasets = [val_datasets] if isinstance(val_datasets, str) else list(val_datasets or ())
    if use_hf is None:
        use_hf = bool(use_hf_default())
    filler = PlaceholderFiller(model_name, model_author)
    train: list[Row] = []
    val: list[Row] = []
    for specs, is_val in ((datasets, False), (val_datasets, True)):
        for text in specs:
            req = parse_dataset_spec(text)
            rows = _load_one(req, mode=mode, strict=strict, use_hf=use_hf, filler=filler)
            rng = random.Random(f"{seed}/{req.text}")
            if req.sample is not None:
                rows = sample_rows(rows, req.sample, rng)
            held: list[Row] = []
            if not is_val and split_dataset_ratio > 0 and not val_datasets:
                rows, held = split_rows(rows, split_dataset_ratio, rng)
                val.extend(held)
            (val if is_val else train).extend(rows)
            logger.info("%s dataset '%s': %d rows%s", "validation" if is_val else "training", req.text, len(rows),
                        f" (+{len(held)} held out for validation)" if held else "")
    if split_dataset_ratio > 0 and val_datasets:
        logger.info("--val_dataset is given, so --split_dataset_ratio %s is not used", split_dataset_ratio)
    return train, (val or None)

"""Multimodal datasets: a checking pass over the rows, lazy encoding, packing, and the collator.

Media are encoded when a batch is built (in the dataloader's workers), not stored: a picture is a few hundred
KB as a file and several MB as float patches. Before training, `prepare_mm_dataset` encodes every row once to
check it (a missing or unreadable file stops the run naming the file, row and path; `strict=False` drops and
counts such rows instead) and to learn each row's length, which packing needs.

Packing (`packing=True`) bin-packs rows into sequences of at most max_length tokens (`swift.data.packing`); the
collator then lays a batch out as one row with `position_ids` restarting per row (padding-free), and media
tensors concatenated in row order, so every row still sees only its own media. Qwen2-VL's 3-D positions of such
a row are computed per row by the trainer (`swift.trainers.multimodal`).
"""
from __future__ import annotations

import multiprocessing as mp
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from swift.data.encode import DROP_HELP, _drop_report, _log_report
from swift.data.mm_encode import TOKEN_KEYS, MultiModalEncoder
from swift.data.packing import pack_bins
from swift.utils.errors import DataError, SwiftError
from swift.utils.logging import get_logger

logger = get_logger("swift.data")

MM_DROP_HELP = {**DROP_HELP, "missing": "a media file does not exist", "unreadable": "a media file cannot be read",
                "unsupported": "a media item has a form that cannot be loaded"}


def _check_rows(encoder: MultiModalEncoder, rows: Sequence[Mapping], start: int, stop: int) -> tuple:
    from swift.data.media import MediaError
    from swift.templates.errors import EncodeError

    lengths = np.full(stop - start, -1, dtype=np.int64)
    errors: list[tuple] = []
    for i in range(start, stop):
        try:
            lengths[i - start] = len(encoder.encode(rows[i])["input_ids"])
        except MediaError as e:
            errors.append((i, e.kind, str(e), getattr(e, "field", None) or f"{e.modality}s"))
        except EncodeError as e:
            errors.append((i, e.reason, str(e)))
    return lengths, errors


_STATE: tuple = ()


def _init(encoder: MultiModalEncoder, rows: Sequence[Mapping]) -> None:
    global _STATE
    _STATE = (encoder, rows)


def _work(task: tuple[int, int]) -> tuple:
    return _check_rows(*_STATE, *task)


def scan_rows(rows: Sequence[Mapping], encoder: MultiModalEncoder, *, num_proc: int = 1, batch_size: int = 64
              ) -> tuple[np.ndarray, list[tuple]]:
    """Encode every row once: (lengths, -1 for a failed row; errors as (index, reason, message[, field]))."""
    tasks = [(s, min(s + batch_size, len(rows))) for s in range(0, len(rows), batch_size)]
    if num_proc <= 1 or len(tasks) == 1:
        parts = [_check_rows(encoder, rows, *t) for t in tasks]
    else:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        with ctx.Pool(min(num_proc, len(tasks)), initializer=_init, initargs=(encoder, rows)) as pool:
            parts = pool.map(_work, tasks, chunksize=1)
    return np.concatenate([p[0] for p in parts]), [e for p in parts for e in p[1]]


class MultiModalDataset(torch.utils.data.Dataset):
    """Rows encoded on access. `lengths[i]` is row i's token count (known after the checking pass)."""

    def __init__(self, rows: Sequence[Mapping], encoder: MultiModalEncoder, lengths: Sequence[int] | None = None):
        self.rows, self.encoder = list(rows), encoder
        self.lengths = None if lengths is None else np.asarray(lengths, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.encoder.encode(self.rows[i])


class PackedMultiModalDataset(torch.utils.data.Dataset):
    """Packs of rows (each at most max_length tokens together); an item is the list of its encoded rows."""

    def __init__(self, base: MultiModalDataset, max_length: int):
        if base.lengths is None:
            raise SwiftError("packing needs the rows' lengths: build the dataset with prepare_mm_dataset")
        self.base = base
        self.bins = pack_bins(base.lengths, max_length)
        self.lengths = np.array([int(base.lengths[b].sum()) for b in self.bins], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.bins)

    def __getitem__(self, i: int) -> list[dict[str, Any]]:
        return [self.base[j] for j in self.bins[i]]


def normalize_mm_rows(rows: Sequence[Mapping], desc: str = "train_dataset") -> list[dict]:
    """Raw rows from the Python API (messages, sharegpt, alpaca or query/response, with media columns or OpenAI
    content parts) as canonical rows; rows already loaded by `load_datasets` keep their file and row number.

    Raises:
        DataError: naming the row and field of a malformed row.
    """
    from swift.data.formats import Row, RowError, detect_format, normalize

    out = []
    for i, raw in enumerate(rows):
        if isinstance(raw, Row):
            out.append(raw)
            continue
        fmt = detect_format(raw.keys()) if isinstance(raw, Mapping) else None
        if fmt is None or fmt == "text":
            raise DataError("expected a chat row ('messages', 'conversations', 'instruction'/'output' or "
                            "'query'/'response') with its media lists", file=desc, row=i + 1)
        try:
            out.append(normalize(dict(raw), fmt, "sft"))
        except RowError as e:
            raise DataError(e.message, file=desc, row=i + 1, field=e.field) from None
    return out


def prepare_mm_dataset(rows: Sequence[Mapping], encoder: MultiModalEncoder, *, strict: bool = True,
                       desc: str = "train", num_proc: int = 1, packing: bool = False
                       ) -> MultiModalDataset | PackedMultiModalDataset:
    """Check and measure the rows, drop the bad ones (or stop, when strict), and return a lazy dataset.

    Raises:
        DataError: a bad row or an unreadable media file (strict), an empty input, or more than 10% dropped.
    """
    if not rows:
        raise DataError(f"{desc}: no rows to encode")
    lengths, errors = scan_rows(rows, encoder, num_proc=num_proc)
    report = _drop_report(errors, rows, len(rows), strict, desc, MM_DROP_HELP)
    _log_report(report, desc, MM_DROP_HELP)
    keep = np.flatnonzero(lengths >= 0)
    ds = MultiModalDataset([rows[i] for i in keep], encoder, lengths[keep])
    if packing:
        if not encoder.max_length:
            raise DataError("packing needs the length of a packed sequence: --max_length, or in Python a template "
                            "with max_length (swift.templates.get_template(processor, max_length=4096))")
        packed = PackedMultiModalDataset(ds, encoder.max_length)
        logger.info("%s: packed %d rows into %d sequences of at most %d tokens", desc, len(ds), len(packed),
                    encoder.max_length)
        return packed
    return ds


def cat_media(values: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate along dim 0; trailing dims that differ (LLaVA-NeXT's patch count) are zero-padded."""
    values = [torch.as_tensor(v) for v in values]
    if len({tuple(v.shape[1:]) for v in values}) > 1:
        shape = [max(v.shape[d] for v in values) for d in range(1, values[0].dim())]
        padded = []
        for v in values:
            out = v.new_zeros((v.shape[0], *shape))
            out[(slice(None), *(slice(0, s) for s in v.shape[1:]))] = v
            padded.append(out)
        values = padded
    return torch.cat(values, dim=0)


class MultiModalCollator:
    """Encoded multimodal rows -> a model batch: padded (attention_mask) or padding-free (one row, position_ids).

    Items may be rows or packs (lists of rows, from `PackedMultiModalDataset`); packs are always padding-free.
    The tokens are laid out by the text `DataCollator` (same padding and row-boundary rules);
    `mm_token_type_ids` follow the same layout (0 on padding), and media tensors of all rows are concatenated
    in row order.
    """

    def __init__(self, pad_token_id: int, padding_free: bool = False):
        from swift.data.collator import DataCollator

        self._padded, self._flat = DataCollator(pad_token_id), DataCollator(pad_token_id, padding_free=True)
        self.padding_free = padding_free
        self.last_num_tokens = 0

    def __call__(self, features: Sequence[Any]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty batch")
        packed = isinstance(features[0], list)
        rows = [r for f in features for r in f] if packed else list(features)
        flat = packed or self.padding_free
        batch = (self._flat if flat else self._padded)(rows)
        if "mm_token_type_ids" in rows[0]:
            types = [torch.as_tensor(r["mm_token_type_ids"], dtype=torch.long) for r in rows]
            if flat:
                batch["mm_token_type_ids"] = torch.cat(types)[None]
            else:
                batch["mm_token_type_ids"] = torch.nn.utils.rnn.pad_sequence(types, batch_first=True)
        for key in dict.fromkeys(k for r in rows for k in r if k not in TOKEN_KEYS):
            batch[key] = cat_media([r[key] for r in rows if key in r])
        mask = batch.get("attention_mask")
        self.last_num_tokens = int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())
        return batch

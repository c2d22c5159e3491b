"""`pack_dataset`: bin-pack encoded rows into sequences of at most `max_length` tokens.

Rows are placed longest first, each into the fullest sequence that still has room (best-fit decreasing, a
first-fit-decreasing variant that packs at least as tightly); the result is deterministic. Each packed
sequence carries `position_ids` that restart at 0 for every row, and the label of each row's first token is
-100 so no loss term predicts one row from another. Train on packed data with the padding-free collator
(`DataCollator(..., padding_free=True)`), which keeps rows from attending to each other.
"""
from __future__ import annotations

from bisect import bisect_left, insort
from typing import TYPE_CHECKING

import numpy as np

from swift.utils.errors import DataError

if TYPE_CHECKING:
    import datasets


def pack_bins(lengths: np.ndarray, max_length: int) -> list[list[int]]:
    """Row indices of each bin (best-fit decreasing); every bin's total length is <= max_length."""
    order = np.argsort(-lengths, kind="stable")
    n = len(lengths) + 1
    free: list[int] = []  # sorted keys: remaining_room * n + bin_id
    bins: list[list[int]] = []
    for i in order.tolist():
        size = int(lengths[i])
        j = bisect_left(free, size * n)
        if j < len(free):
            key = free.pop(j)
            room, b = divmod(key, n)
            bins[b].append(i)
            room -= size
        else:
            b, room = len(bins), max_length - size
            bins.append([i])
        if room > 0:
            insort(free, room * n + b)
    return bins


def _list_parts(ds: datasets.Dataset, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(flat values, offsets) of a list column, without Python-level rows."""
    import pyarrow as pa

    arr = ds.with_format("arrow")[column]
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    offsets = arr.offsets.to_numpy().astype(np.int64)
    values = arr.values.to_numpy(zero_copy_only=False)
    return values[offsets[0]:offsets[-1]], offsets - offsets[0]


def pack_dataset(ds: datasets.Dataset, max_length: int) -> datasets.Dataset:
    """Pack an encoded dataset (from `encode_rows`) into sequences of at most `max_length` tokens.

    Args:
        ds: dataset with list columns input_ids and labels.
        max_length: the longest packed sequence.

    Returns:
        A `datasets.Dataset` with input_ids, labels, position_ids (lists) and length, one row per sequence.

    Raises:
        DataError: a row is longer than max_length (encode with the same --max_length), or ds is empty.
    """
    import datasets
    import pyarrow as pa

    if len(ds) == 0:
        raise DataError("nothing to pack: the dataset is empty")
    ids, offsets = _list_parts(ds, "input_ids")
    labels, label_offsets = _list_parts(ds, "labels")
    if not np.array_equal(offsets, label_offsets):
        raise DataError("input_ids and labels differ in length in some rows; encode the data with encode_rows")
    lengths = np.diff(offsets)
    too_long = np.flatnonzero(lengths > max_length)
    if too_long.size:
        i = int(too_long[0])
        raise DataError(f"{too_long.size} encoded rows are longer than max_length={max_length} (e.g. row {i + 1}: "
                        f"{int(lengths[i])} tokens); encode with the same --max_length")
    if not lengths.all():
        raise DataError(f"row {int(np.argmin(lengths)) + 1} has no tokens; encode the data with encode_rows")
    bins = pack_bins(lengths, max_length)
    order = np.fromiter((i for b in bins for i in b), dtype=np.int64, count=len(lengths))
    row_len = lengths[order]
    row_start = np.zeros(len(order), dtype=np.int64)  # where each row begins in the packed token stream
    np.cumsum(row_len[:-1], out=row_start[1:])
    # token k of the packed stream comes from ids[src[k]]
    within = np.arange(int(row_len.sum()), dtype=np.int64) - np.repeat(row_start, row_len)
    src = np.repeat(offsets[:-1][order], row_len) + within
    packed_labels = labels[src].astype(np.int32)
    packed_labels[row_start] = -100
    bin_len = np.fromiter((int(lengths[b].sum()) for b in bins), dtype=np.int64, count=len(bins))
    bin_offsets = np.zeros(len(bins) + 1, dtype=np.int64)
    np.cumsum(bin_len, out=bin_offsets[1:])
    off = pa.array(bin_offsets.astype(np.int32)) if bin_offsets[-1] < 2**31 else pa.array(bin_offsets)
    list_array = pa.ListArray if off.type == pa.int32() else pa.LargeListArray

    def column(values: np.ndarray) -> pa.Array:
        return list_array.from_arrays(off, pa.array(values.astype(np.int32)))

    table = pa.table({"input_ids": column(ids[src]), "labels": column(packed_labels),
                      "position_ids": column(within), "length": pa.array(bin_len.astype(np.int32))})
    return datasets.Dataset(datasets.table.InMemoryTable(table))

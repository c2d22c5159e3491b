"""pack_dataset: bins within max_length, every token kept, position_ids and boundary labels."""
from __future__ import annotations

from collections import Counter

import datasets
import numpy as np
import pytest

from swift.data import pack_dataset
from swift.data.packing import pack_bins
from swift.utils.errors import DataError


def encoded(lengths, seed=0):
    rng = np.random.default_rng(seed)
    ids = [rng.integers(5, 1000, n).tolist() for n in lengths]
    labels = [[-100] * (n // 2) + x[n // 2:] for n, x in zip(lengths, ids)]
    return datasets.Dataset.from_dict({"input_ids": ids, "labels": labels, "length": list(lengths)})


def test_bins_fit_and_pack_tightly():
    lengths = np.array([7, 5, 3, 3, 2, 6, 4, 1, 9, 10])  # sum 50
    bins = pack_bins(lengths, 10)
    assert sorted(i for b in bins for i in b) == list(range(10))
    assert all(lengths[b].sum() <= 10 for b in bins)
    assert len(bins) == 5  # 50 tokens in bins of 10: no room wasted
    assert pack_bins(lengths, 10) == bins  # deterministic


def test_pack_dataset_keeps_every_row_and_marks_boundaries():
    lengths = [30, 12, 7, 25, 3, 18, 9, 40, 2, 11, 16]
    ds = encoded(lengths)
    packed = pack_dataset(ds, 48)
    assert packed.column_names == ["input_ids", "labels", "position_ids", "length"]
    assert len(packed) < len(ds) and all(n <= 48 for n in packed["length"])
    pieces = []
    for ids, labels, pos, n in zip(packed["input_ids"], packed["labels"], packed["position_ids"], packed["length"]):
        assert len(ids) == len(labels) == len(pos) == n
        starts = [k for k, p in enumerate(pos) if p == 0] + [n]
        assert starts[0] == 0
        for s, e in zip(starts, starts[1:]):
            assert pos[s:e] == list(range(e - s))
            assert labels[s] == -100
            pieces.append((tuple(ids[s:e]), tuple(labels[s + 1:e])))
    original = Counter((tuple(i), tuple(lab[1:])) for i, lab in zip(ds["input_ids"], ds["labels"]))
    assert Counter(pieces) == original
    assert pack_dataset(ds, 48)["input_ids"] == packed["input_ids"]
    picked = pack_dataset(ds.select([7, 0]), 100)  # a view with an indices mapping packs the picked rows
    assert picked["input_ids"] == [ds[7]["input_ids"] + ds[0]["input_ids"]]


def test_too_long_row_is_an_error():
    with pytest.raises(DataError, match=r"1 encoded rows are longer than max_length=20 \(e.g. row 2: 25 tokens\)"):
        pack_dataset(encoded([10, 25]), 20)

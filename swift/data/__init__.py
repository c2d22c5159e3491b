"""Datasets: load, detect the format, normalise, validate, self-cognition, encode (cached), pack, collate.

    train, val = load_datasets(["data.jsonl", "self-cognition#100"], model_name=["小黄", "Xiao Huang"],
                               model_author=["魔搭", "ModelScope"])
    ds = encode_rows(train, template)            # datasets.Dataset: input_ids, labels, length
    pairs, _ = load_datasets(["pairs.jsonl"], mode="preference")   # also "kto", "prompt"
    ds = encode_preference_rows(pairs, template, kind="preference")  # prompt_ids, chosen_ids, rejected_ids
    ds = pack_dataset(ds, max_length=2048)       # optional
    collator = DataCollator(tokenizer.pad_token_id, padding_free=True)

Encoding, packing and collating import datasets / torch, so they load on first use.
"""
from __future__ import annotations

from swift.data.catalog import DATASETS, DatasetSpec, find_dataset, register_dataset
from swift.data.formats import FORMATS, Row, detect_format, normalize
from swift.data.loader import load_datasets, parse_dataset_spec
from swift.utils.lazy import lazy_getattr

_LAZY = {
    "encode_rows": "swift.data.encode",
    "encode_preference_rows": "swift.data.encode_pref",
    "pack_dataset": "swift.data.packing",
    "DataCollator": "swift.data.collator",
    "count_tokens": "swift.data.collator",
}

__all__ = [
    "DATASETS", "DatasetSpec", "find_dataset", "register_dataset", "FORMATS", "Row", "detect_format", "normalize",
    "load_datasets", "parse_dataset_spec", *_LAZY,
]


__getattr__ = lazy_getattr(globals(), _LAZY)

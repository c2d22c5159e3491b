"""encode_rows with the real template: columns, drops with provenance, the cache, processes, pre-training."""
from __future__ import annotations

import pytest

from swift.data import encode_rows, load_datasets
from swift.utils.errors import DataError


def chat(q, a):
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def test_columns_and_labels(make_template, tokenizer, tmp_path):
    rows = [chat("What is 2+2?", "4"), chat("Say hi", "Hello there!")]
    ds = encode_rows(rows, make_template(), cache_dir=tmp_path)
    assert ds.column_names == ["input_ids", "labels", "length"]
    assert ds["length"] == [len(x) for x in ds["input_ids"]]
    for row, ids, labels in zip(rows, ds["input_ids"], ds["labels"]):
        assert len(ids) == len(labels)
        learned = tokenizer.decode([t for t in labels if t != -100], skip_special_tokens=False)
        assert learned == row["messages"][1]["content"] + "<|im_end|>"
        assert "<|im_start|>user\n" + row["messages"][0]["content"] in tokenizer.decode(ids, skip_special_tokens=False)


def test_cache_is_reused_and_keyed_on_rows_and_template(make_template, tmp_path, capture_swift_log):
    rows = [chat(f"q{i}", f"a{i}") for i in range(30)]
    template = make_template()
    first = encode_rows(rows, template, cache_dir=tmp_path, batch_size=8)
    assert template.calls == 4 and not any("reused" in r.getMessage() for r in capture_swift_log)
    again = encode_rows([dict(r) for r in rows], template, cache_dir=tmp_path, batch_size=8)
    assert template.calls == 4 and any("reused cached encoding" in r.getMessage() for r in capture_swift_log)
    assert again["input_ids"] == first["input_ids"] and again["labels"] == first["labels"]
    encode_rows(rows[:-1] + [chat("q29", "changed")], template, cache_dir=tmp_path, batch_size=8)
    assert template.calls == 8
    other = make_template(max_length=1000)  # another fingerprint
    encode_rows(rows, other, cache_dir=tmp_path, batch_size=8)
    assert other.calls == 4
    encode_rows(rows, template, cache_dir=tmp_path, batch_size=8, load_from_cache_file=False)
    assert template.calls == 12


def test_too_long_rows_are_counted_and_over_ten_percent_fails(make_template, tmp_path, capture_swift_log):
    short = [chat(f"q{i}", "ok") for i in range(19)]
    long = chat("tell me a long story " * 20, "once upon a time")
    template = make_template(max_length=64)
    ds = encode_rows(short + [long], template, cache_dir=tmp_path)
    assert len(ds) == 19
    warning = [r.getMessage() for r in capture_swift_log if r.levelname == "WARNING"][-1]
    assert "dropped 1 of 20 rows" in warning and "1 x too_long" in warning and "row 20" in warning
    with pytest.raises(DataError, match=r"dropped 3 of 10 rows \(30.0%.*3 x too_long"):
        encode_rows(short[:7] + [long] * 3, template, cache_dir=tmp_path)


def test_bad_row_names_its_file_and_row_even_at_encoding(make_template, write_jsonl, tmp_path):
    path = write_jsonl("data.jsonl", [chat(f"q{i}", "a") for i in range(31)])
    train, _ = load_datasets([path])
    train[30]["messages"][0]["role"] = "developer"  # spoilt after loading: only the template sees it
    with pytest.raises(DataError) as info:
        encode_rows(train, make_template(), cache_dir=tmp_path / "c")
    assert (info.value.file, info.value.row) == (path, 31) and "bad_messages" in str(info.value)
    ds = encode_rows(train, make_template(), cache_dir=tmp_path / "c", strict=False)
    assert len(ds) == 30


def test_fully_masked_rows_are_never_kept(make_standin, tmp_path):
    # A template that truncates the reply away yet returns the row: encode_rows still drops it.
    template = make_standin(max_length=12, truncation_strategy="right", flag_no_labels=False)
    rows = [chat("hi", "yo")] * 19 + [chat("a much longer question than twelve tokens, surely", "answer")]
    ds = encode_rows(rows, template, cache_dir=tmp_path)
    assert len(ds) == 19
    assert all(any(t != -100 for t in labels[1:]) for labels in ds["labels"])


def test_processes_give_the_same_result(make_template, tmp_path):
    rows = [chat(f"question {i}", f"answer {i * 7}") for i in range(300)]
    one = encode_rows(rows, make_template(), cache_dir=tmp_path / "a", batch_size=50)
    two = encode_rows(rows, make_template(), cache_dir=tmp_path / "b", batch_size=50, num_proc=2)
    assert one["input_ids"] == two["input_ids"] and one["labels"] == two["labels"]


def test_pretraining_text(make_template, tokenizer, tmp_path):
    ds = encode_rows([{"text": "Raw text one."}, {"text": "Two."}], make_template(), mode="pt", cache_dir=tmp_path)
    assert ds["input_ids"] == ds["labels"]
    assert tokenizer.decode(ds["input_ids"][1], skip_special_tokens=False) == "Two.<|im_end|>"
    with pytest.raises(DataError, match=r"row 1: expected a canonical row with 'text'"):
        encode_rows([chat("q", "a")], make_template(), mode="pt", cache_dir=tmp_path)

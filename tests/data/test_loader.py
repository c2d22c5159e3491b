"""load_datasets: files, specs, sampling, splitting, strictness, presets and self-cognition."""
from __future__ import annotations

import csv
import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from swift.data import DATASETS, DatasetSpec, load_datasets, parse_dataset_spec, register_dataset
from swift.utils.errors import ArgumentError, DataError


def chat(q, a):
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def test_every_file_type_and_format_normalises(tmp_path, write_jsonl):
    write_jsonl("a.jsonl", [chat("q1", "a1")])
    (tmp_path / "b.json").write_text(json.dumps([{"conversations": [{"from": "human", "value": "q2"},
                                                                    {"from": "gpt", "value": "a2"}], "x": 1}]))
    with open(tmp_path / "c.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["instruction", "input", "output", "extra"])
        w.writeheader()
        w.writerow({"instruction": "q3", "input": "", "output": "a3", "extra": "z"})
    pq.write_table(pa.table({"query": ["q4"], "response": ["a4"], "history": [[["h", "i"]]]}), tmp_path / "d.parquet")
    specs = [str(tmp_path / n) for n in ("a.jsonl", "b.json", "c.csv", "d.parquet")]
    train, val = load_datasets(specs)
    assert val is None
    assert train == [chat("q1", "a1"), chat("q2", "a2"), chat("q3", "a3"),
                     {"messages": chat("h", "i")["messages"] + chat("q4", "a4")["messages"]}]
    assert [(r.source, r.row) for r in train] == [(s, 1) for s in specs]


def test_folder_loads_its_files_in_order(tmp_path, write_jsonl):
    (tmp_path / "d").mkdir()
    write_jsonl("d/2.jsonl", [chat("b", "b")])
    write_jsonl("d/1.jsonl", [chat("a", "a")])
    train, _ = load_datasets([str(tmp_path / "d")])
    assert [r["messages"][0]["content"] for r in train] == ["a", "b"]


def test_strict_error_names_file_row_and_field(tmp_path, write_jsonl, monkeypatch):
    rows = [chat(f"q{i}", f"a{i}") for i in range(6)]
    rows.append({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                              {"role": "assistant", "content": None}]})
    write_jsonl("data.jsonl", rows)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as info:
        load_datasets(["data.jsonl"])
    assert str(info.value) == "data.jsonl, row 7, field 'messages[2].content': expected a string, got null"
    assert (info.value.file, info.value.row, info.value.field) == ("data.jsonl", 7, "messages[2].content")


def test_bad_json_line_reports_the_line_number(tmp_path, write_jsonl):
    path = write_jsonl("broken.jsonl", [chat("q", "a"), "", '{"messages": [oops]}'])
    with pytest.raises(DataError, match=r"row 3: bad JSON on line 3"):
        load_datasets([path])


def test_lenient_drops_and_counts_but_not_over_ten_percent(tmp_path, write_jsonl, capture_swift_log):
    good = [chat(f"q{i}", f"a{i}") for i in range(19)]
    path = write_jsonl("mostly.jsonl", good + ['{"broken'])
    train, _ = load_datasets([path], strict=False)
    assert len(train) == 19
    warning = [r.getMessage() for r in capture_swift_log if r.levelname == "WARNING"][0]
    assert "dropped 1 of 20 rows" in warning and "1 x bad JSON" in warning
    bad = good[:8] + [chat("q", "")] * 2
    path = write_jsonl("bad.jsonl", bad)
    with pytest.raises(DataError, match=r"dropped 2 of 10 rows .*2 x empty content .*more than 10%"):
        load_datasets([path], strict=False)


def test_undetectable_format_is_an_error(write_jsonl):
    path = write_jsonl("odd.jsonl", [{"prompt": "p", "completion": "c"}])
    with pytest.raises(DataError, match=r"cannot tell the data format from the columns \['completion', 'prompt'\]"):
        load_datasets([path])


def test_text_data_needs_pt_mode(write_jsonl):
    path = write_jsonl("pt.jsonl", [{"text": "Some raw text."}, {"text": "More."}])
    assert load_datasets([path], mode="pt")[0] == [{"text": "Some raw text."}, {"text": "More."}]
    with pytest.raises(DataError, match="pre-training data"):
        load_datasets([path])


@pytest.mark.parametrize("text, name, subset, n", [
    ("AI-ModelScope/alpaca-gpt4-data-en#500", "AI-ModelScope/alpaca-gpt4-data-en", None, 500),
    ("owner/name:zh#3", "owner/name", "zh", 3),
    ("owner/name:zh", "owner/name", "zh", None),
    ("data/train.jsonl", "data/train.jsonl", None, None),
])
def test_parse_dataset_spec(text, name, subset, n):
    req = parse_dataset_spec(text)
    assert (req.name, req.subset, req.sample) == (name, subset, n)


def test_bad_specs():
    with pytest.raises(ArgumentError, match="must be positive"):
        parse_dataset_spec("x.jsonl#0")
    with pytest.raises(DataError, match="no such file, preset or hub id"):
        load_datasets(["./missing.jsonl"])
    with pytest.raises(ArgumentError, match="--dataset"):
        load_datasets([])


def test_sampling_is_reproducible_and_repeats_when_asked_for_more(write_jsonl):
    path = write_jsonl("ten.jsonl", [chat(f"q{i}", f"a{i}") for i in range(10)])
    a, _ = load_datasets([f"{path}#4"], seed=1)
    b, _ = load_datasets([f"{path}#4"], seed=1)
    others = {tuple(r["messages"][0]["content"] for r in load_datasets([f"{path}#4"], seed=s)[0]) for s in range(5)}
    assert a == b and len(a) == 4 and len(others) > 1
    big, _ = load_datasets([f"{path}#25"], seed=1)
    counts = Counter(r["messages"][0]["content"] for r in big)
    assert len(big) == 25 and set(counts.values()) == {2, 3} and sum(v == 3 for v in counts.values()) == 5


def test_several_datasets_split_and_val_datasets(write_jsonl, capture_swift_log):
    p1 = write_jsonl("one.jsonl", [chat(f"x{i}", "a") for i in range(20)])
    p2 = write_jsonl("two.jsonl", [chat(f"y{i}", "a") for i in range(10)])
    train, val = load_datasets([p1, f"{p2}#5"], split_dataset_ratio=0.2, seed=3)
    assert (len(train), len(val)) == (16 + 4, 4 + 1)
    contents = [r["messages"][0]["content"] for r in train + val]
    assert len(set(contents)) == 25
    train2, val2 = load_datasets([p1, f"{p2}#5"], split_dataset_ratio=0.2, seed=3)
    assert (train2, val2) == (train, val)
    train, val = load_datasets([p1], val_datasets=[p2], split_dataset_ratio=0.2)
    assert (len(train), len(val)) == (20, 10)
    assert any("not used" in r.getMessage() for r in capture_swift_log)


def test_self_cognition_fills_names_by_language():
    train, _ = load_datasets(["self-cognition"], model_name=["小黄", "Xiao Huang"], model_author=["魔搭", "ModelScope"])
    text = "\n".join(m["content"] for r in train for m in r["messages"])
    assert "{{" not in text and "小黄" in text and "Xiao Huang" in text and "ModelScope" in text
    for r in train:
        reply = r["messages"][-1]["content"]
        if "小黄" in reply:
            assert "Xiao Huang" not in reply and "ModelScope" not in reply
    alias, _ = load_datasets(["swift/self-cognition#3"], model_name=["Robo"], model_author=["Lab"])
    assert len(alias) == 3 and all("{{" not in m["content"] for r in alias for m in r["messages"])


def test_placeholders_without_names_raise_argument_error(write_jsonl):
    path = write_jsonl("sc.jsonl", [chat("who are you?", "I am {{NAME}}.")])
    with pytest.raises(ArgumentError, match="--model_name.*--model_author"):
        load_datasets([path])
    train, _ = load_datasets([path], model_name=["Robo"])  # no {{AUTHOR}} here, so no author needed
    assert train[0]["messages"][1]["content"] == "I am Robo."
    with pytest.raises(ArgumentError, match="--model_author"):
        load_datasets(["self-cognition"], model_name=["Robo"])


def test_catalog_registration(write_jsonl):
    path = write_jsonl("mine.jsonl", [chat("q", "a")])
    with pytest.raises(ValueError, match="already registered"):
        register_dataset(DatasetSpec("my-copy", ms_id="AI-ModelScope/alpaca-gpt4-data-en"))
    with pytest.raises(ValueError, match="unknown format"):
        register_dataset(DatasetSpec("x-format", local_path=path, format="yaml"))
    register_dataset(DatasetSpec("my-local-test-set", local_path=path, format="messages"))
    try:
        assert load_datasets(["my-local-test-set"])[0] == [chat("q", "a")]
        with pytest.raises(ValueError, match="already registered"):
            register_dataset(DatasetSpec("my-local-test-set", local_path=path))
    finally:
        DATASETS[:] = [s for s in DATASETS if s.name != "my-local-test-set"]


def test_modelscope_hub_needs_the_extra():
    try:
        import modelscope  # noqa: F401
    except ImportError:
        from swift.utils.errors import MissingExtraError

        with pytest.raises(MissingExtraError, match=r"swiftlab\[modelscope\]"):
            load_datasets(["AI-ModelScope/alpaca-gpt4-data-en"], use_hf=False)
    else:
        pytest.skip("modelscope is installed: this would reach the network")

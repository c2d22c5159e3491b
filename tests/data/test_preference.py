"""load_datasets in the alignment modes: preference pairs, KTO rows and prompts (swift.data.preference)."""
from __future__ import annotations

import csv
import json

import pytest

from swift.data import detect_format, load_datasets
from swift.utils.errors import ArgumentError, DataError


def U(c):
    return {"role": "user", "content": c}


def A(c):
    return {"role": "assistant", "content": c}


def S(c):
    return {"role": "system", "content": c}


def pair(messages, rejected):
    return {"messages": messages, "rejected_response": rejected}


GOOD_PAIR = {"messages": [U("q"), A("good")], "rejected_response": "bad"}


# ---- detection ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("keys, mode, fmt", [
    (["messages", "rejected_response"], "preference", "messages"),
    (["conversations", "rejected_response"], "preference", "sharegpt"),
    (["instruction", "output", "rejected_response"], "preference", "alpaca"),
    (["messages", "rejected_messages"], "preference", "rejected_messages"),
    (["prompt", "chosen", "rejected"], "preference", "chosen_rejected"),
    (["chosen", "rejected"], "preference", "chosen_rejected"),
    (["messages"], "preference", "messages"),  # detected; normalising names the missing 'rejected_response'
    (["text"], "preference", None),
    (["messages", "label"], "kto", "messages"),
    (["prompt", "completion", "label"], "kto", "prompt_completion"),
    (["prompt", "solution"], "prompt", "prompt"),
    (["messages", "solution"], "prompt", "messages"),
    (["query"], "prompt", "query_response"),
    (["text"], "prompt", None),
    (["messages", "rejected_response"], "sft", "messages"),  # the existing modes are unchanged
    (["prompt", "chosen", "rejected"], "sft", None),
])
def test_detect_format(keys, mode, fmt):
    assert detect_format(keys, mode) == fmt


# ---- preference ----------------------------------------------------------------------------------------------
CHOSEN_QA = {"messages": [U("What is 2+2?"), A("4")], "rejected_response": "5"}


@pytest.mark.parametrize("raw, expected", [
    (CHOSEN_QA, CHOSEN_QA),
    ({"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"}, CHOSEN_QA),
    ({"prompt": [U("What is 2+2?")], "chosen": [A("4")], "rejected": [A("5")]}, CHOSEN_QA),
    ({"prompt": "What is 2+2?", "chosen": [A("4")], "rejected": [A("5")]}, CHOSEN_QA),
    ({"chosen": [U("What is 2+2?"), A("4")], "rejected": [U("What is 2+2?"), A("5")]}, CHOSEN_QA),  # implicit
    ({"messages": [U("What is 2+2?"), A("4")], "rejected_messages": [U("What is 2+2?"), A("5")]}, CHOSEN_QA),
    ({"conversations": [{"from": "human", "value": "What is 2+2?"}, {"from": "gpt", "value": "4"}],
      "rejected_response": "5"}, CHOSEN_QA),
    ({"instruction": "What is 2+2?", "output": "4", "rejected_response": "5"}, CHOSEN_QA),
    ({"query": "What is 2+2?", "response": "4", "rejected_response": "5", "id": 7}, CHOSEN_QA),
    ({"prompt": "What is 2+2?", "chosen": "4", "rejected": "5", "system": "Be terse."},
     pair([S("Be terse."), U("What is 2+2?"), A("4")], "5")),
    ({"prompt": [S("Sys"), U("hi"), A("hello"), U("What is 2+2?")], "chosen": [A("4")], "rejected": [A("5")]},
     pair([S("Sys"), U("hi"), A("hello"), U("What is 2+2?"), A("4")], "5")),
    ({"messages": [U("hi"), A("hello"), U("What is 2+2?"), A("4")],
      "rejected_messages": [U("hi"), A("hello"), U("What is 2+2?"), A("5")]},
     pair([U("hi"), A("hello"), U("What is 2+2?"), A("4")], "5")),
    ({"prompt": "[INST] a prompt that starts with a bracket", "chosen": "4", "rejected": "5"},
     pair([U("[INST] a prompt that starts with a bracket"), A("4")], "5")),
])
def test_preference_formats_normalise(raw, expected, write_jsonl):
    path = write_jsonl("pairs.jsonl", [raw, raw])
    rows, val = load_datasets([path], mode="preference")
    assert val is None and rows == [expected, expected]
    assert [(r.source, r.row) for r in rows] == [(path, 1), (path, 2)]


def test_preference_csv_with_json_message_cells(tmp_path):
    path = tmp_path / "pairs.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["prompt", "chosen", "rejected"])
        w.writeheader()
        w.writerow({"prompt": json.dumps([U("q")]), "chosen": json.dumps([A("good")]), "rejected": "bad"})
        w.writerow({"prompt": "plain q", "chosen": "good", "rejected": "bad"})
    rows, _ = load_datasets([str(path)], mode="preference")
    assert rows == [GOOD_PAIR, pair([U("plain q"), A("good")], "bad")]


@pytest.mark.parametrize("raw, field, message", [
    ({"messages": [U("q"), A("good")]}, "rejected_response", "missing: a preference row needs the rejected reply"),
    ({"messages": [U("q"), A("good")], "rejected_response": None}, "rejected_response", "missing"),
    ({"messages": [U("q"), A("good")], "rejected_response": "  good "}, "rejected_response",
     "chosen and rejected replies are identical"),
    ({"messages": [U("q"), A("good")], "rejected_response": 3}, "rejected_response",
     "expected a string, got a number"),
    ({"messages": [U("q")], "rejected_response": "bad"}, "messages", "no assistant turn"),
    ({"messages": [U("q"), A("a"), U("q2")], "rejected_response": "bad"}, "messages[2].role",
     "the conversation ends with a user turn that has no assistant reply"),
    ({"prompt": "q", "chosen": "good"}, "rejected", "missing: a preference row needs the rejected reply"),
    ({"prompt": "q", "rejected": "bad"}, "chosen", "missing"),
    ({"prompt": "q", "chosen": "same", "rejected": "same"}, "rejected", "chosen and rejected replies are identical"),
    ({"prompt": "", "chosen": "good", "rejected": "bad"}, "prompt", "empty prompt"),
    ({"prompt": "   ", "chosen": "good", "rejected": "bad"}, "prompt", "empty prompt"),
    ({"chosen": "good", "rejected": "bad"}, "prompt", "no user turn"),
    ({"prompt": [], "chosen": "good", "rejected": "bad"}, "prompt", "no user turn"),
    ({"prompt": [S("only a system prompt")], "chosen": "good", "rejected": "bad"}, "prompt", "no user turn"),
    ({"prompt": 5, "chosen": "good", "rejected": "bad"}, "prompt", "expected a string or a list of messages"),
    ({"prompt": [U("a"), U("b")], "chosen": "good", "rejected": "bad"}, "prompt[1].role",
     "expected role 'assistant' here, got 'user'"),
    ({"prompt": [U("q"), A("a")], "chosen": "good", "rejected": "bad"}, "prompt[1].role",
     "the turn before the reply must be a user turn"),
    ({"prompt": [{"role": "bot", "content": "q"}], "chosen": "g", "rejected": "b"}, "prompt[0].role",
     "unknown role 'bot'"),
    ({"prompt": "q", "chosen": [U("q2")], "rejected": [A("bad")]}, "chosen[0].role",
     "the last message must be the assistant's reply, got 'user'"),
    ({"prompt": "q", "chosen": [A(None)], "rejected": [A("bad")]}, "chosen[0].content",
     "expected a string, got null"),
    ({"prompt": "q", "chosen": [], "rejected": [A("bad")]}, "chosen", "empty list: no reply"),
    ({"chosen": [U("q"), A("good")], "rejected": [U("other q"), A("bad")]}, "rejected",
     "the turns before the last reply differ from those in 'chosen'"),
    ({"messages": [U("q"), A("good")], "rejected_messages": [U("other"), A("bad")]}, "rejected_messages[0]",
     "differs from messages[0]"),
    ({"messages": [U("q"), A("good")], "rejected_messages": [U("q"), A("x"), U("q2"), A("bad")]},
     "rejected_messages[1]", "differs from messages[1]"),
    ({"messages": [U("q"), A("good")], "rejected_messages": None}, "rejected_messages", "missing"),
    ({"messages": [U("q"), A("good")], "rejected_messages": [U("q"), A("good")]}, "rejected_messages",
     "chosen and rejected replies are identical"),
    ({"messages": [U("q"), A("good")], "rejected_messages": [U("q"), {"role": "assistant"}]},
     "rejected_messages[1].content", "expected a string, got nothing"),
])
def test_preference_errors_name_file_row_and_field(raw, field, message, write_jsonl):
    first = GOOD_PAIR if "messages" in raw else {"prompt": "q", "chosen": "good", "rejected": "bad"}
    if "rejected_messages" in raw:
        first = {"messages": [U("q"), A("good")], "rejected_messages": [U("q"), A("bad")]}
    path = write_jsonl("pairs.jsonl", [first, raw])
    with pytest.raises(DataError) as info:
        load_datasets([path], mode="preference")
    err = info.value
    assert (err.file, err.row, err.field) == (path, 2, field)
    assert str(err).startswith(f"{path}, row 2, field '{field}': ") and message in str(err)


def test_unknown_columns_name_the_accepted_formats(write_jsonl):
    path = write_jsonl("x.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(DataError, match=r"row 1: cannot tell the data format .*'rejected_response'.*'chosen'"):
        load_datasets([path], mode="preference")
    with pytest.raises(DataError, match=r"row 1: cannot tell the data format .*'completion' and 'label'"):
        load_datasets([path], mode="kto")
    with pytest.raises(DataError, match=r"row 1: cannot tell the data format .*'prompt' column"):
        load_datasets([path], mode="prompt")
    with pytest.raises(ArgumentError, match="preference.*kto.*prompt"):
        load_datasets([path], mode="dpo")


def test_non_strict_drops_and_counts_per_reason(write_jsonl, capture_swift_log):
    good = [{"prompt": f"q{i}", "chosen": "good", "rejected": "bad"} for i in range(27)]
    bad = [{"prompt": "q", "chosen": "same", "rejected": "same"}, {"prompt": "q", "chosen": "good"},
           {"chosen": "good", "rejected": "bad"}]
    path = write_jsonl("pairs.jsonl", good[:10] + bad + good[10:])
    rows, _ = load_datasets([path], mode="preference", strict=False)
    assert len(rows) == 27 and [r.row for r in rows] == list(range(1, 11)) + list(range(14, 31))
    warning = [r.getMessage() for r in capture_swift_log if r.levelname == "WARNING"][-1]
    assert "dropped 3 of 30 rows" in warning
    for text in ("1 x identical replies", "row 11, field 'rejected': chosen and rejected replies are identical",
                 "1 x missing rejected", "row 12, field 'rejected'", "1 x no user turn", "row 13, field 'prompt'"):
        assert text in warning
    path = write_jsonl("worse.jsonl", good[:8] + bad)
    with pytest.raises(DataError, match=r"dropped 3 of 11 rows.*more than 10%"):
        load_datasets([path], mode="preference", strict=False)


def test_sft_mode_is_unchanged_by_preference_columns(write_jsonl):
    path = write_jsonl("pairs.jsonl", [GOOD_PAIR])
    rows, _ = load_datasets([path])
    assert rows == [{"messages": [U("q"), A("good")]}]


# ---- kto ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, expected", [
    ({"messages": [U("q"), A("a")], "label": True}, {"messages": [U("q"), A("a")], "label": True}),
    ({"messages": [U("q"), A("a")], "label": False}, {"messages": [U("q"), A("a")], "label": False}),
    ({"prompt": "q", "completion": "a", "label": 1}, {"messages": [U("q"), A("a")], "label": True}),
    ({"prompt": "q", "completion": "a", "label": 0}, {"messages": [U("q"), A("a")], "label": False}),
    ({"prompt": "q", "completion": "a", "label": "true"}, {"messages": [U("q"), A("a")], "label": True}),
    ({"prompt": "q", "completion": "a", "label": "FALSE"}, {"messages": [U("q"), A("a")], "label": False}),
    ({"prompt": "q", "completion": "a", "label": "0"}, {"messages": [U("q"), A("a")], "label": False}),
    ({"prompt": [U("q")], "completion": [A("a")], "label": True}, {"messages": [U("q"), A("a")], "label": True}),
    ({"prompt": "q", "completion": "a", "label": True, "system": "S"},
     {"messages": [S("S"), U("q"), A("a")], "label": True}),
    ({"instruction": "q", "output": "a", "label": True}, {"messages": [U("q"), A("a")], "label": True}),
])
def test_kto_formats_normalise(raw, expected, write_jsonl):
    rows, _ = load_datasets([write_jsonl("kto.jsonl", [raw])], mode="kto")
    assert rows == [expected] and type(rows[0]["label"]) is bool


@pytest.mark.parametrize("raw, field, message", [
    ({"prompt": "q", "completion": "a"}, "label", "missing: a KTO row needs 'label'"),
    ({"prompt": "q", "completion": "a", "label": None}, "label", "missing"),
    ({"prompt": "q", "completion": "a", "label": 2}, "label", "expected a boolean (true/false, 1/0), got 2"),
    ({"prompt": "q", "completion": "a", "label": "yes"}, "label", "expected a boolean (true/false, 1/0), got 'yes'"),
    ({"prompt": "q", "completion": "a", "label": [True]}, "label", "expected a boolean"),
    ({"prompt": "q", "label": True}, "completion", "missing"),
    ({"prompt": "", "completion": "a", "label": True}, "prompt", "empty prompt"),
    ({"completion": "a", "label": True}, "prompt", "no user turn"),
    ({"prompt": "q", "completion": [U("x")], "label": True}, "completion[0].role", "must be the assistant's reply"),
])
def test_kto_errors_name_file_row_and_field(raw, field, message, write_jsonl):
    path = write_jsonl("kto.jsonl", [{"prompt": "q", "completion": "a", "label": True}, raw])
    with pytest.raises(DataError) as info:
        load_datasets([path], mode="kto")
    assert (info.value.file, info.value.row, info.value.field) == (path, 2, field)
    assert str(info.value).startswith(f"{path}, row 2, field '{field}': ") and message in str(info.value)


def test_kto_messages_without_label(write_jsonl):
    path = write_jsonl("kto.jsonl", [{"messages": [U("q"), A("a")], "label": True}, {"messages": [U("q"), A("a")]}])
    with pytest.raises(DataError, match=r"row 2, field 'label': missing"):
        load_datasets([path], mode="kto")
    with pytest.raises(DataError, match=r"dropped 1 of 2 rows .*: 1 x missing label"):
        load_datasets([path], mode="kto", strict=False)


# ---- prompt ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, expected", [
    ({"prompt": "Solve 6*7", "solution": "42"}, {"messages": [U("Solve 6*7")], "solution": "42"}),
    ({"prompt": [S("S"), U("Solve 6*7")], "solution": 42, "level": 1.5, "ok": True, "note": None},
     {"messages": [S("S"), U("Solve 6*7")], "solution": 42, "level": 1.5, "ok": True, "note": None}),
    ({"prompt": "Solve", "system": "Be exact.", "tags": ["a"], "meta": {"k": 1}},
     {"messages": [S("Be exact."), U("Solve")]}),
    ({"messages": [U("Solve 6*7")], "solution": "42"}, {"messages": [U("Solve 6*7")], "solution": "42"}),
    ({"messages": [U("hi"), A("hello"), U("Solve 6*7"), A("42")]},
     {"messages": [U("hi"), A("hello"), U("Solve 6*7")], "response": "42"}),
    ({"prompt": [U("Solve 6*7"), A("42")]}, {"messages": [U("Solve 6*7")], "response": "42"}),
    ({"instruction": "Solve", "input": "6*7", "output": "42", "id": "x1"},
     {"messages": [U("Solve\n6*7")], "id": "x1", "response": "42"}),
    ({"query": "Solve 6*7"}, {"messages": [U("Solve 6*7")]}),
    ({"conversations": [{"from": "human", "value": "Solve"}], "system": "S", "answer": "42"},
     {"messages": [S("S"), U("Solve")], "answer": "42"}),
])
def test_prompt_formats_normalise(raw, expected, write_jsonl):
    rows, _ = load_datasets([write_jsonl("prompts.jsonl", [raw])], mode="prompt")
    assert rows == [expected]


@pytest.mark.parametrize("raw, field, message", [
    ({"solution": "42"}, "prompt", "missing: a prompt row needs 'prompt'"),
    ({"prompt": [S("only system")]}, "prompt", "no user turn"),
    ({"prompt": ""}, "prompt", "empty prompt"),
    ({"prompt": [U("a"), U("q")]}, "prompt[1].role", "expected role 'assistant' here, got 'user'"),
])
def test_prompt_errors_name_file_row_and_field(raw, field, message, write_jsonl):
    path = write_jsonl("prompts.jsonl", [{"prompt": "q"}, raw])
    with pytest.raises(DataError) as info:
        load_datasets([path], mode="prompt")
    assert (info.value.file, info.value.row, info.value.field) == (path, 2, field)
    assert message in str(info.value)


def test_prompt_rows_from_messages_need_a_user_turn(write_jsonl):
    path = write_jsonl("prompts.jsonl", [{"messages": [U("q")]}, {"messages": [S("s")]}])
    with pytest.raises(DataError, match=r"row 2, field 'messages': no user or assistant turn"):
        load_datasets([path], mode="prompt")

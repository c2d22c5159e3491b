"""Batch inference over canonical rows to jsonl."""
from __future__ import annotations

import json

import pytest
from _infer_helpers import TAUGHT_PROMPT, TAUGHT_REPLY

from swift.infer.batch import infer_rows, split_prompt
from swift.infer.protocol import InferRequest, RequestConfig
from swift.infer.pt import PtEngine
from swift.utils.errors import DataError

ROWS = [
    {"messages": TAUGHT_PROMPT + [{"role": "assistant", "content": "reference one"}]},
    {"messages": [{"role": "user", "content": "no reference here"}]},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "q1"},
                  {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"},
                  {"role": "assistant", "content": "a2"}]},
]


@pytest.fixture(scope="module")
def engine(taught_model, tokenizer, template):
    return PtEngine(taught_model, tokenizer, template)


def test_split_prompt_takes_messages_up_to_the_last_user_turn():
    prompt, ref = split_prompt(ROWS[2])
    assert prompt == ROWS[2]["messages"][:4]
    assert ref == "a2"
    assert split_prompt(ROWS[1]) == (ROWS[1]["messages"], None)


def test_infer_rows_writes_one_line_per_row(engine, tmp_path):
    config = RequestConfig(max_new_tokens=24)
    out = infer_rows(engine, ROWS, config, batch_size=2, out_path=tmp_path / "sub" / "result.jsonl")
    assert out == str(tmp_path / "sub" / "result.jsonl")
    lines = [json.loads(line) for line in open(out, encoding="utf-8")]
    assert len(lines) == len(ROWS)
    assert lines[0] == {"messages": TAUGHT_PROMPT, "response": TAUGHT_REPLY, "labels": "reference one"}
    assert lines[1]["labels"] is None
    assert lines[2]["messages"] == ROWS[2]["messages"][:4]
    assert lines[2]["labels"] == "a2"
    expected = engine.infer([InferRequest(line["messages"]) for line in lines], config)
    assert [line["response"] for line in lines] == [r.text for r in expected]
    assert "你好" in open(out, encoding="utf-8").read()  # written as UTF-8, not \\u escapes


@pytest.mark.parametrize("bad, field", [
    ({"messages": [{"role": "assistant", "content": "x"}]}, "messages"),
    ({"messages": []}, "messages"),
    ({"conversations": []}, "messages"),
])
def test_bad_rows_are_reported_before_generating(engine, tmp_path, bad, field):
    with pytest.raises(DataError) as err:
        infer_rows(engine, [ROWS[1], bad], batch_size=2, out_path=tmp_path / "out.jsonl")
    assert err.value.row == 2 and err.value.field == field
    assert not (tmp_path / "out.jsonl").exists()

"""Format detection and normalisation of single rows."""
from __future__ import annotations

import pickle

import pytest

from swift.data.formats import Row, RowError, detect_format, normalize


def _user_assistant(q, a):
    return [{"role": "user", "content": q}, {"role": "assistant", "content": a}]


@pytest.mark.parametrize("keys, fmt", [
    ({"messages", "id"}, "messages"),
    ({"conversations", "system"}, "sharegpt"),
    ({"instruction", "input", "output"}, "alpaca"),
    ({"query", "response", "history"}, "query_response"),
    ({"text", "meta"}, "text"),
    ({"prompt", "completion"}, None),
])
def test_detect_format(keys, fmt):
    assert detect_format(keys) == fmt


def test_messages_keeps_roles_and_drops_extra_keys():
    raw = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi", "name": "x"},
                        {"role": "assistant", "content": "Hello"}], "id": 3}
    assert normalize(raw, "messages") == {"messages": [{"role": "system", "content": "Be brief."},
                                                       *_user_assistant("Hi", "Hello")]}


def test_messages_text_content_parts_are_joined():
    raw = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "you"}]},
                        {"role": "assistant", "content": "Hello"}]}
    assert normalize(raw, "messages")["messages"][0]["content"] == "Hi you"


def test_sharegpt_with_system_field():
    raw = {"system": "S", "conversations": [{"from": "human", "value": "q1"}, {"from": "gpt", "value": "a1"},
                                            {"from": "human", "value": "q2"}, {"from": "gpt", "value": "a2"}]}
    assert normalize(raw, "sharegpt")["messages"] == [{"role": "system", "content": "S"}, *_user_assistant("q1", "a1"),
                                                      *_user_assistant("q2", "a2")]


def test_sharegpt_role_content_variant_and_empty_system():
    raw = {"system": "", "conversations": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    assert normalize(raw, "sharegpt")["messages"] == _user_assistant("q", "a")


def test_alpaca_with_input_system_history():
    raw = {"instruction": "Translate", "input": "hello", "output": "你好", "system": "S",
           "history": [["q0", "a0"]], "source": "ignored"}
    assert normalize(raw, "alpaca")["messages"] == [{"role": "system", "content": "S"}, *_user_assistant("q0", "a0"),
                                                    *_user_assistant("Translate\nhello", "你好")]


def test_alpaca_empty_input_and_csv_history_string():
    raw = {"instruction": "Say hi", "input": "", "output": "hi", "history": '[["a", "b"]]'}
    assert normalize(raw, "alpaca")["messages"] == [*_user_assistant("a", "b"), *_user_assistant("Say hi", "hi")]


def test_query_response():
    raw = {"query": "q", "response": "r", "history": [], "system": None}
    assert normalize(raw, "query_response") == {"messages": _user_assistant("q", "r")}


def test_text_only_in_pt_and_chat_becomes_text_in_pt():
    assert normalize({"text": "plain"}, "text", mode="pt") == {"text": "plain"}
    with pytest.raises(RowError, match="pre-training data"):
        normalize({"text": "plain"}, "text", mode="sft")
    assert normalize({"query": "q", "response": "r"}, "query_response", mode="pt") == {"text": "q\nr"}


def _err(raw, fmt="messages"):
    with pytest.raises(RowError) as info:
        normalize(raw, fmt)
    return info.value


@pytest.mark.parametrize("messages, field, message, kind", [
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": None}],
     "messages[1].content", "expected a string, got null", "wrong type"),
    ([{"role": "user", "content": "  "}, {"role": "assistant", "content": "a"}],
     "messages[0].content", "empty content", "empty content"),
    ([{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}],
     "messages[1].role", "unknown role 'bot'", "unknown role"),
    ([{"role": "user", "content": "q"}], "messages", "no assistant turn", "no assistant turn"),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "q2"}],
     "messages[2].role", "ends with a user turn", "no assistant turn"),
    ([{"role": "user", "content": "q"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
     "messages[1].role", "expected role 'assistant' here, got 'user'", "bad turn order"),
    ([{"role": "user", "content": "q"}, {"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}],
     "messages[1].role", "only allowed as the first message", "bad turn order"),
    ([{"role": ["user"], "content": "q"}], "messages[0].role", "expected a string, got a list", "wrong type"),
    ("not a list", "messages", "expected a list, got a string", "wrong type"),
    ([], "messages", "no user or assistant turn", "no assistant turn"),
])
def test_messages_errors(messages, field, message, kind):
    err = _err({"messages": messages})
    assert (err.field, err.kind) == (field, kind)
    assert message in err.message


def test_other_format_errors_name_the_source_field():
    err = _err({"instruction": "i", "input": "", "output": 3}, "alpaca")
    assert (err.field, err.message) == ("output", "expected a string, got a number")
    err = _err({"conversations": [{"from": "human", "value": "q"}, {"from": "robot", "value": "a"}]}, "sharegpt")
    assert err.field == "conversations[1].from" and err.kind == "unknown role"
    err = _err({"system": "S", "conversations": [{"from": "human", "value": "q"}, {"from": "human", "value": "a"}]},
               "sharegpt")
    assert err.field == "conversations[1].from"  # index in the file's list, not shifted by the system field
    err = _err({"query": "q", "response": "r", "history": [["only one"]]}, "query_response")
    assert err.field == "history[0]"
    err = _err(["a", "list"], "messages")
    assert err.message == "expected an object (one row), got a list"


def test_row_keeps_origin_and_equals_plain_dict():
    row = Row({"messages": _user_assistant("q", "a")}, "data.jsonl", 7)
    assert row == {"messages": _user_assistant("q", "a")}
    back = pickle.loads(pickle.dumps(row))
    assert (back.source, back.row, back) == ("data.jsonl", 7, row)

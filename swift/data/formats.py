"""Row formats: detect a file's format and normalise its rows to canonical rows.

Canonical rows are `{"messages": [{"role": ..., "content": ...}, ...]}` for chat data and `{"text": ...}` for
pre-training. Every normaliser raises `RowError(field, message, kind)` for a malformed row; the loader adds
the file and the row number and either stops (strict) or counts the row by `kind` and drops it.

Supported formats (extra columns are ignored):
- `messages`: OpenAI style `{"messages": [{"role", "content"}]}` with roles system, user, assistant.
- `sharegpt`: `{"conversations": [{"from": "human"|"gpt"|"system", "value"}], "system"?}`.
- `alpaca`: `{"instruction", "input"?, "output", "system"?, "history"?}`.
- `query_response`: `{"query", "response", "system"?, "history"?}` (history is a list of [query, response]).
- `text`: `{"text"}`, pre-training only.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

FORMATS = ("messages", "sharegpt", "alpaca", "query_response", "text")
ROLES = frozenset(("system", "user", "assistant"))
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "system": "system"}
_MISSING = object()


class Row(dict):
    """A canonical row (a plain dict) that remembers where it came from.

    Attributes:
        source: the file or hub id the row was read from.
        row: its 1-based row number there (the line number for JSON lines).
    """

    __slots__ = ("source", "row")

    def __init__(self, data: Mapping[str, Any], source: str | None = None, row: int | None = None):
        super().__init__(data)
        self.source, self.row = source, row


def origin(row: Mapping[str, Any], index: int, desc: str = "dataset") -> tuple[str, int]:
    """(file, 1-based row) of a canonical row; rows without provenance are named by their position."""
    source = getattr(row, "source", None)
    if source is None:
        return desc, index + 1
    return source, getattr(row, "row", None) or index + 1


class RowError(Exception):
    """One malformed row. `kind` groups the reasons when bad rows are counted (strict=False)."""

    def __init__(self, field: str | None, message: str, kind: str):
        super().__init__(message)
        self.field, self.message, self.kind = field, message, kind


def type_name(value: Any) -> str:
    """How a JSON reader would name the type of `value`."""
    if value is _MISSING:
        return "nothing (the field is missing)"
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
             tuple: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def detect_format(keys: Iterable[str], mode: str = "sft") -> str | None:
    """The format whose columns `keys` has, or None. Alignment modes ("preference", "kto", "prompt") also know
    their own formats (`swift.data.preference`)."""
    if mode in ("preference", "kto", "prompt"):
        from swift.data.preference import detect_alignment_format

        return detect_alignment_format(keys, mode)
    keys = set(keys)
    if "messages" in keys:
        return "messages"
    if "conversations" in keys:
        return "sharegpt"
    if "instruction" in keys and "output" in keys:
        return "alpaca"
    if "query" in keys and "response" in keys:
        return "query_response"
    if "text" in keys:
        return "text"
    # Prompts without replies (batch inference); for training the missing reply is then named as the bad field.
    if "instruction" in keys:
        return "alpaca"
    if "query" in keys:
        return "query_response"
    return None


FORMAT_HELP = ("expected a 'messages' column (OpenAI style), 'conversations' (sharegpt), 'instruction' and "
               "'output' (alpaca), 'query' and 'response', or 'text' (pre-training)")


def _string(value: Any, field: str) -> str:
    """A non-empty string, or RowError."""
    if type(value) is str:
        if value.strip():
            return value
        raise RowError(field, "empty content", "empty content")
    if isinstance(value, list) and value and all(isinstance(p, dict) and p.get("type") == "text" for p in value):
        # OpenAI content parts, text only: [{"type": "text", "text": "..."}]
        return _string("".join(str(p.get("text") or "") for p in value), field)
    raise RowError(field, f"expected a string, got {type_name(value)}", "wrong type")


def _optional_string(value: Any, field: str) -> str | None:
    """None for a missing, null or empty value; the string otherwise."""
    if value is None or value is _MISSING or value == "":
        return None
    if type(value) is not str:
        raise RowError(field, f"expected a string, got {type_name(value)}", "wrong type")
    return value if value.strip() else None


def _list(value: Any, field: str) -> list:
    """A list; JSON text holding a list (CSV cells) is parsed."""
    if type(value) is str and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise RowError(field, f"bad JSON in the cell: {e.msg}", "wrong type") from None
    if isinstance(value, (list, tuple)):
        return list(value)
    raise RowError(field, f"expected a list, got {type_name(value)}", "wrong type")


def check_turns(messages: list[dict], field: Callable[[int], str], whole: str, reply: bool = True) -> None:
    """Check the turn order: optional system first, then user/assistant alternating, ending with assistant
    (or, with `reply=False`, for prompts to answer, with either)."""
    start = 1 if messages and messages[0]["role"] == "system" else 0
    if len(messages) == start:
        raise RowError(whole, "no user or assistant turn", "no assistant turn")
    expected = "user"
    for i in range(start, len(messages)):
        role = messages[i]["role"]
        if role != expected:
            if role == "system":
                raise RowError(field(i), "a system message is only allowed as the first message", "bad turn order")
            raise RowError(field(i), f"expected role '{expected}' here, got '{role}' (after an optional system "
                                     "message, turns alternate user, assistant, user, ...)", "bad turn order")
        expected = "assistant" if expected == "user" else "user"
    if messages[-1]["role"] != "assistant" and reply:
        if len(messages) - start == 1:
            raise RowError(whole, "no assistant turn", "no assistant turn")
        raise RowError(field(len(messages) - 1), "the conversation ends with a user turn that has no assistant "
                                                 "reply", "no assistant turn")


def _from_messages(raw: Mapping[str, Any], reply: bool = True) -> list[dict]:
    msgs = _list(raw.get("messages", _MISSING), "messages")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise RowError(f"messages[{i}]", f"expected an object with 'role' and 'content', got {type_name(m)}",
                           "wrong type")
        role = m.get("role", _MISSING)
        if type(role) is not str or role not in ROLES:
            if type(role) is not str:
                raise RowError(f"messages[{i}].role", f"expected a string, got {type_name(role)}", "wrong type")
            raise RowError(f"messages[{i}].role", f"unknown role {role!r}; expected 'system', 'user' or 'assistant'",
                           "unknown role")
        out.append({"role": role, "content": _string(m.get("content", _MISSING), f"messages[{i}].content")})
    check_turns(out, lambda i: f"messages[{i}].role", "messages", reply)
    return out


def _from_sharegpt(raw: Mapping[str, Any], reply: bool = True) -> list[dict]:
    turns = _list(raw.get("conversations", _MISSING), "conversations")
    out = []
    for i, t in enumerate(turns):
        if not isinstance(t, dict):
            raise RowError(f"conversations[{i}]", f"expected an object with 'from' and 'value', got {type_name(t)}",
                           "wrong type")
        role_key = "from" if "from" in t else "role"
        value_key = "value" if "value" in t else "content"
        who = t.get(role_key, _MISSING)
        role = SHAREGPT_ROLES.get(who) if type(who) is str else None
        if role is None:
            if type(who) is not str:
                raise RowError(f"conversations[{i}].{role_key}", f"expected a string, got {type_name(who)}",
                               "wrong type")
            raise RowError(f"conversations[{i}].{role_key}", f"unknown speaker {who!r}; expected 'human', 'gpt' or "
                                                             "'system'", "unknown role")
        out.append({"role": role, "content": _string(t.get(value_key, _MISSING), f"conversations[{i}].{value_key}")})
    system = _optional_string(raw.get("system"), "system")
    if system is not None:
        if out and out[0]["role"] == "system":
            raise RowError("system", "the row has both a 'system' field and a system turn; keep one", "bad turn order")
        out.insert(0, {"role": "system", "content": system})
        offset = 1
    else:
        offset = 0
    check_turns(out, lambda i: f"conversations[{i - offset}].{role_key}", "conversations", reply)
    return out


def _history(raw: Mapping[str, Any], system: str | None) -> list[dict]:
    """System message and [query, response] history pairs as messages."""
    out = [{"role": "system", "content": system}] if system is not None else []
    value = raw.get("history")
    if value is None or value == "":
        return out
    for i, pair in enumerate(_list(value, "history")):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise RowError(f"history[{i}]", f"expected a [query, response] pair, got {type_name(pair)}", "wrong type")
        out.append({"role": "user", "content": _string(pair[0], f"history[{i}][0]")})
        out.append({"role": "assistant", "content": _string(pair[1], f"history[{i}][1]")})
    return out


def _from_alpaca(raw: Mapping[str, Any], reply: bool = True) -> list[dict]:
    out = _history(raw, _optional_string(raw.get("system"), "system"))
    instruction = _optional_string(raw.get("instruction", _MISSING), "instruction")
    extra = _optional_string(raw.get("input"), "input")
    query = "\n".join(p for p in (instruction, extra) if p is not None)
    if not query:
        raise RowError("instruction", "empty content (both 'instruction' and 'input' are empty)", "empty content")
    out.append({"role": "user", "content": query})
    if reply or raw.get("output") is not None:
        out.append({"role": "assistant", "content": _string(raw.get("output", _MISSING), "output")})
    return out


def _from_query_response(raw: Mapping[str, Any], reply: bool = True) -> list[dict]:
    out = _history(raw, _optional_string(raw.get("system"), "system"))
    out.append({"role": "user", "content": _string(raw.get("query", _MISSING), "query")})
    if reply or raw.get("response") is not None:
        out.append({"role": "assistant", "content": _string(raw.get("response", _MISSING), "response")})
    return out


_CHAT = {"messages": _from_messages, "sharegpt": _from_sharegpt, "alpaca": _from_alpaca,
         "query_response": _from_query_response}


def normalize(raw: Any, fmt: str, mode: str = "sft") -> dict:
    """One raw row in format `fmt` as a canonical row (`messages` for sft and infer, `text` for pt).

    Mode "infer" reads prompts to answer: the conversation may end with a user turn (no reply). Modes
    "preference", "kto" and "prompt" give the rows of `swift.data.preference`.

    Raises:
        RowError: the row is malformed.
    """
    if mode in ("preference", "kto", "prompt"):
        from swift.data.preference import normalize_alignment

        return normalize_alignment(raw, fmt, mode)
    if not isinstance(raw, dict):
        raise RowError(None, f"expected an object (one row), got {type_name(raw)}", "wrong type")
    if fmt == "text":
        if mode != "pt":
            raise RowError("text", "this is pre-training data (a 'text' column, no conversation); use `swift pt` "
                                   "(mode 'pt') or chat data with 'messages'", "wrong format")
        return {"text": _string(raw.get("text", _MISSING), "text")}
    messages = _CHAT[fmt](raw, mode != "infer")
    if mode == "pt":
        # Chat rows used for pre-training become one text: the contents in order.
        return {"text": "\n".join(m["content"] for m in messages)}
    return {"messages": messages}

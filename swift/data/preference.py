"""Alignment data: preference pairs, KTO rows and prompts -> canonical rows (`load_datasets(mode=...)`).

Canonical rows per mode:
- "preference": `{"messages": [system?, user, assistant, ..., user, assistant (the CHOSEN reply)],
  "rejected_response": str}`.
- "kto": `{"messages": [..., user, assistant], "label": bool}` (True: a desirable reply).
- "prompt" (PPO, GRPO): `{"messages": [..., user]}`; a trailing assistant reply is moved to `"response"`, and
  every other scalar column of the raw row is kept under its own name (e.g. `solution` for accuracy rewards).

Accepted input (besides the chat formats of `swift.data.formats`: messages, sharegpt, alpaca, query_response):
- preference: a chat format + `rejected_response` (ms-swift); `messages` + `rejected_messages` (the whole
  conversation again, ending with the rejected reply); TRL's `chosen` / `rejected`, either strings with a
  `prompt` string, or message lists (with an optional `prompt` list; without one the turns before the last
  reply, which must be the same in both, are the prompt). Format name "chosen_rejected" / "rejected_messages".
- kto: a chat format + `label`; TRL's `prompt` / `completion` / `label` (strings or message lists), format
  name "prompt_completion". A label is a boolean; true/false and 1/0 (numbers or strings, for CSV) are accepted.
- prompt: a chat format (it may end with a user turn); TRL's `prompt` (a string or a message list), format
  name "prompt".
TRL-style rows may carry a `system` string, used when the prompt has no system message.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from swift.data.formats import _CHAT, _MISSING, ROLES, RowError, _list, _string, check_turns, type_name
from swift.data.formats import detect_format as detect_chat_format

ALIGNMENT_MODES = ("preference", "kto", "prompt")
ALIGNMENT_FORMATS = ("chosen_rejected", "rejected_messages", "prompt_completion", "prompt")
FORMAT_HELP = {
    "preference": "expected a chat format ('messages', 'conversations', alpaca 'instruction'/'output' or "
                  "'query'/'response') with 'rejected_response'; 'messages' with 'rejected_messages'; or 'chosen' "
                  "and 'rejected' (strings with a 'prompt', or message lists)",
    "kto": "expected a chat format ('messages', 'conversations', alpaca 'instruction'/'output' or "
           "'query'/'response') with 'label', or 'prompt', 'completion' and 'label'",
    "prompt": "expected a 'prompt' column (a string or a message list) or a chat format ('messages', "
              "'conversations', alpaca 'instruction' or 'query')",
}
# Raw columns a format reads; in mode "prompt" every other scalar column is kept.
_CONSUMED = {
    "messages": frozenset({"messages"}),
    "sharegpt": frozenset({"conversations", "system"}),
    "alpaca": frozenset({"instruction", "input", "output", "system", "history"}),
    "query_response": frozenset({"query", "response", "system", "history"}),
    "prompt": frozenset({"prompt", "system"}),
}
_MISSING_REJECTED = ("missing: a preference row needs the rejected reply ('rejected_response', 'rejected_messages', "
                     "or TRL's 'chosen' and 'rejected')")
_TRUE, _FALSE = frozenset({"true", "1"}), frozenset({"false", "0"})


def detect_alignment_format(keys: Iterable[str], mode: str) -> str | None:
    """The format of a row with columns `keys` in an alignment mode, or None.

    A chat format without the mode's extra field (e.g. `messages` without `rejected_response`) is still
    detected: normalising then names the missing field.
    """
    keys = set(keys)
    base = detect_chat_format(keys)
    if base == "text":
        base = None
    if mode == "preference":
        if "rejected_response" in keys and base is not None:
            return base
        if "rejected_messages" in keys and "messages" in keys:
            return "rejected_messages"
        if "chosen" in keys or "rejected" in keys:
            return "chosen_rejected"
        return base
    if mode == "kto":
        if "completion" in keys or (base is None and "prompt" in keys):
            return "prompt_completion"
        return base
    if base is None and "prompt" in keys:
        return "prompt"
    return base


def _messages(value: Any, field: str) -> list[dict]:
    """A list of {"role", "content"} messages (roles checked, order not)."""
    out = []
    for i, m in enumerate(_list(value, field)):
        if not isinstance(m, dict):
            raise RowError(f"{field}[{i}]", f"expected an object with 'role' and 'content', got {type_name(m)}",
                           "wrong type")
        role = m.get("role", _MISSING)
        if type(role) is not str:
            raise RowError(f"{field}[{i}].role", f"expected a string, got {type_name(role)}", "wrong type")
        if role not in ROLES:
            raise RowError(f"{field}[{i}].role", f"unknown role {role!r}; expected 'system', 'user' or 'assistant'",
                           "unknown role")
        out.append({"role": role, "content": _string(m.get("content", _MISSING), f"{field}[{i}].content")})
    return out


class _Turns:
    """A conversation assembled from several raw fields, remembering which field each message came from."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.fields: list[str] = []

    def add_messages(self, messages: list[dict], field: str) -> None:
        self.messages += messages
        self.fields += [f"{field}[{i}].role" for i in range(len(messages))]

    def add(self, role: str, content: str, field: str) -> None:
        self.messages.append({"role": role, "content": content})
        self.fields.append(field)

    def add_system(self, raw: Mapping[str, Any]) -> None:
        """Put the row's `system` column first, unless the prompt has its own system message."""
        system = raw.get("system")
        if system is None or system == "" or (self.messages and self.messages[0]["role"] == "system"):
            return
        self.messages.insert(0, {"role": "system", "content": _string(system, "system")})
        self.fields.insert(0, "system")

    def check(self, prompt_field: str, reply: bool) -> None:
        if not any(m["role"] == "user" for m in self.messages):
            raise RowError(prompt_field, "no user turn: the prompt is empty or has no user message (a reply needs "
                                         "a user message to answer)", "no user turn")
        check_turns(self.messages, lambda i: self.fields[i], prompt_field, reply)


def _text_or_list(value: Any, field: str) -> str | list | None:
    """A cell as text, or as a message list (also one held as JSON text, as in CSV cells); text that merely
    starts with '[' ("[INST] ...") stays text. None when missing or null."""
    if value is None or value is _MISSING:
        return None
    if type(value) is str and value.lstrip().startswith("["):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return value
        if isinstance(parsed, list) and parsed and all(isinstance(m, dict) for m in parsed):
            return parsed
    if type(value) is str or isinstance(value, (list, tuple)):
        return value
    raise RowError(field, f"expected a string or a list of messages, got {type_name(value)}", "wrong type")


def _prompt(raw: Mapping[str, Any]) -> _Turns:
    """The TRL `prompt` column (a string or a message list; may be missing) as turns."""
    turns = _Turns()
    value = _text_or_list(raw.get("prompt"), "prompt")
    if value is None:
        return turns
    if type(value) is str:
        if not value.strip():
            raise RowError("prompt", "empty prompt: nothing for the reply to answer", "no user turn")
        turns.add("user", value, "prompt")
    else:
        turns.add_messages(_messages(value, "prompt"), "prompt")
    return turns


def _reply(raw: Mapping[str, Any], field: str) -> tuple[list[dict], str]:
    """A TRL completion column: a string, or a message list whose last message is the assistant's reply.

    Returns (the messages before the reply, the reply)."""
    value = _text_or_list(raw.get(field), field)
    if type(value) is str:
        return [], _string(value, field)
    messages = _messages(value, field)
    if not messages:
        raise RowError(field, "empty list: no reply", "empty content")
    if messages[-1]["role"] != "assistant":
        raise RowError(f"{field}[{len(messages) - 1}].role", f"the last message must be the assistant's reply, got "
                                                             f"'{messages[-1]['role']}'", "no assistant turn")
    return messages[:-1], messages[-1]["content"]


def _trl_history(raw: Mapping[str, Any], before: list[dict], field: str) -> list[dict]:
    """The history of a TRL row: `prompt`, then the turns of column `field` before its reply (checked)."""
    turns = _prompt(raw)
    turns.add_messages(before, field)
    turns.add_system(raw)
    turns.check("prompt", reply=False)
    if turns.messages[-1]["role"] != "user":
        raise RowError(turns.fields[-1], "the turn before the reply must be a user turn", "bad turn order")
    return turns.messages


def _check_distinct(chosen: str, rejected: str, field: str) -> None:
    if chosen.strip() == rejected.strip():
        raise RowError(field, "chosen and rejected replies are identical (the pair teaches nothing); fix or drop the "
                              "row", "identical replies")


def _preference(raw: Mapping[str, Any], fmt: str) -> dict:
    if fmt == "chosen_rejected":
        if raw.get("chosen") is None:
            raise RowError("chosen", "missing: a TRL-style preference row needs 'chosen' and 'rejected'",
                           "missing chosen")
        if raw.get("rejected") is None:
            raise RowError("rejected", _MISSING_REJECTED, "missing rejected")
        before, chosen = _reply(raw, "chosen")
        other, rejected = _reply(raw, "rejected")
        if other != before:
            raise RowError("rejected", "the turns before the last reply differ from those in 'chosen' (only the "
                                       "last, assistant message may differ)", "mismatched history")
        history = _trl_history(raw, before, "chosen")
        _check_distinct(chosen, rejected, "rejected")
        return {"messages": [*history, {"role": "assistant", "content": chosen}], "rejected_response": rejected}
    messages = _CHAT["messages" if fmt == "rejected_messages" else fmt](raw, True)
    if fmt == "rejected_messages":
        if raw.get("rejected_messages") is None:
            raise RowError("rejected_messages", _MISSING_REJECTED, "missing rejected")
        try:
            other = _CHAT["messages"]({"messages": raw["rejected_messages"]}, True)
        except RowError as e:
            field = e.field and "rejected_messages" + e.field[len("messages"):]
            raise RowError(field, e.message, e.kind) from None
        for i in range(max(len(messages), len(other)) - 1):
            if i >= len(messages) - 1 or i >= len(other) - 1 or messages[i] != other[i]:
                raise RowError(f"rejected_messages[{i}]",
                               f"differs from messages[{i}]: the turns before the last reply must be the same as in "
                               "'messages' (only the last, assistant message is the rejected one)",
                               "mismatched history")
        rejected, field = other[-1]["content"], "rejected_messages"
    else:
        value = raw.get("rejected_response")
        if value is None:
            raise RowError("rejected_response", _MISSING_REJECTED, "missing rejected")
        rejected, field = _string(value, "rejected_response"), "rejected_response"
    _check_distinct(messages[-1]["content"], rejected, field)
    return {"messages": messages, "rejected_response": rejected}


def _label(raw: Mapping[str, Any]) -> bool:
    value = raw.get("label", _MISSING)
    if value is _MISSING or value is None:
        raise RowError("label", "missing: a KTO row needs 'label' (true for a desirable reply, false for an "
                                "undesirable one)", "missing label")
    if type(value) is bool:
        return value
    if type(value) in (int, float) and value in (0, 1):
        return bool(value)
    if type(value) is str and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise RowError("label", f"expected a boolean (true/false, 1/0), got {value!r}", "bad label")


def _kto(raw: Mapping[str, Any], fmt: str) -> dict:
    if fmt == "prompt_completion":
        if raw.get("completion") is None:
            raise RowError("completion", "missing: a TRL-style KTO row needs 'prompt', 'completion' and 'label'",
                           "missing completion")
        before, reply = _reply(raw, "completion")
        messages = [*_trl_history(raw, before, "completion"), {"role": "assistant", "content": reply}]
    else:
        messages = _CHAT[fmt](raw, True)
    return {"messages": messages, "label": _label(raw)}


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _prompt_row(raw: Mapping[str, Any], fmt: str) -> dict:
    if fmt == "prompt":
        if raw.get("prompt") is None:
            raise RowError("prompt", "missing: a prompt row needs 'prompt' (a string or a message list)",
                           "no user turn")
        turns = _prompt(raw)
        turns.add_system(raw)
        turns.check("prompt", reply=False)
        messages = turns.messages
    else:
        messages = _CHAT[fmt](raw, False)
    out: dict[str, Any] = {"messages": messages}
    out.update((k, v) for k, v in raw.items() if k not in _CONSUMED[fmt] and k != "messages" and _is_scalar(v))
    if messages[-1]["role"] == "assistant":
        out["response"] = messages.pop()["content"]
    return out


def normalize_alignment(raw: Any, fmt: str | None, mode: str) -> dict:
    """One raw row as a canonical row of an alignment mode ("preference", "kto" or "prompt").

    Args:
        raw: the raw row (a dict).
        fmt: its format, from `detect_alignment_format` (a chat format or one of ALIGNMENT_FORMATS).
        mode: "preference", "kto" or "prompt".

    Raises:
        RowError: the row is malformed (its `field` names the column).
    """
    if not isinstance(raw, dict):
        raise RowError(None, f"expected an object (one row), got {type_name(raw)}", "wrong type")
    if fmt is None:
        raise RowError(None, f"cannot tell the data format from the columns {sorted(raw)}: {FORMAT_HELP[mode]}",
                       "unknown format")
    if fmt == "text":
        raise RowError("text", f"this is pre-training data (a 'text' column, no conversation); mode '{mode}' "
                               f"{FORMAT_HELP[mode]}", "wrong format")
    valid = {"preference": ("chosen_rejected", "rejected_messages"), "kto": ("prompt_completion",),
             "prompt": ("prompt",)}[mode]
    if fmt not in _CHAT and fmt not in valid:
        raise RowError(None, f"format '{fmt}' does not fit mode '{mode}': {FORMAT_HELP[mode]}", "wrong format")
    if mode == "preference":
        return _preference(raw, fmt)
    if mode == "kto":
        return _kto(raw, fmt)
    return _prompt_row(raw, fmt)

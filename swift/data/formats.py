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

Multimodal rows (any chat format, and `text` for pre-training) also carry media: `images` / `videos` / `audios` lists
(LLaMA-Factory / ms-swift column names; the singular `image` / `video` / `audio` columns hold one item each, as
Hugging Face image datasets do). The canonical row keeps them as lists, present only when non-empty, with items RAW
(paths, URLs, base64, `{"bytes", "path"}` dicts, frame lists; `swift.data.media` loads them). Item k of a list
belongs to the k-th `<image>` / `<video>` / `<audio>` tag of the conversation, counted in message order. Rules:
- A row with tags of a modality and that modality's column (even empty) or content parts must have exactly as many
  items as tags ("2 <image> tags but 1 item in 'images'"). A row without the column keeps its tags as plain text,
  so text-only datasets that mention "<image>" are unaffected.
- A row with items but NO tag of that modality gets the tags prepended to its first user message, images then
  videos then audios, with no separator (what ms-swift does), e.g. "<image>What is this?".
- OpenAI content parts in `messages` (`{"type": "image", "image": ...}`, `{"type": "image_url", "image_url":
  {"url": ...}}`, `video` / `video_url`, `audio` / `audio_url` / `input_audio` (`{"data": base64, "format"}`, kept
  as a data URI)) become tags in the text at their place plus items in the lists.
Rows without media normalise exactly as before, and have no media keys. The alignment modes
(`swift.data.preference`) do not carry media yet.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from swift.templates.mm_plugins import LIST_KEYS, TAG_RE

FORMATS = ("messages", "sharegpt", "alpaca", "query_response", "text")
ROLES = frozenset(("system", "user", "assistant"))
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "system": "system"}
_MISSING = object()
MEDIA_KEYS = LIST_KEYS
_TAG = TAG_RE
# Content part type -> modality; the part's value sits under the type's own key (OpenAI / HF chat templates).
_PART_MODALITY = {"image": "image", "image_url": "image", "video": "video", "video_url": "video", "audio": "audio",
                  "audio_url": "audio", "input_audio": "audio"}


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


def _part_value(part: dict, field: str) -> tuple[str, Any]:
    """(modality, raw item) of one media content part."""
    kind = part["type"]
    modality, value = _PART_MODALITY[kind], part.get(kind)
    if kind == "input_audio" and isinstance(value, dict):  # OpenAI: {"data": base64, "format": "wav"}
        data = value.get("data")
        value = f"data:audio/{value.get('format') or 'wav'};base64,{data}" if isinstance(data, str) and data else None
    elif kind.endswith("_url") and isinstance(value, dict):  # {"image_url": {"url": ...}}
        value = value.get("url")
    if _blank(value):
        value = part.get("url") or part.get("path")  # HF chat templates: {"type": "image", "url": ...}
    if _blank(value):
        where = f"'{kind}': {{'url': ...}}" if kind.endswith("_url") else f"'{kind}': <path, URL or data>"
        raise RowError(field, f"a '{kind}' part without its {modality}; expected {{'type': '{kind}', {where}}}",
                       "wrong type")
    return modality, value


def _lift_parts(raw: Mapping[str, Any]) -> tuple[Mapping[str, Any], dict[str, list]]:
    """Media content parts of `messages` -> tags in the text; returns (the row with those contents as strings,
    modality -> items in tag order). Rows without media parts come back unchanged."""
    found: dict[str, list] = {m: [] for m in MEDIA_KEYS}
    value = raw.get("messages")
    if not isinstance(value, (list, str)):
        return raw, found
    msgs = _list(value, "messages")
    out, changed = [], False
    for i, m in enumerate(msgs):
        content = m.get("content") if isinstance(m, dict) else None
        if not (isinstance(content, list) and any(isinstance(p, dict) and p.get("type") != "text" for p in content)):
            out.append(m)
            continue
        text = []
        for j, part in enumerate(content):
            field = f"messages[{i}].content[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                text.append(_string(part.get("text", _MISSING), f"{field}.text") if part.get("text") else "")
            elif kind in _PART_MODALITY:
                modality, item = _part_value(part, field)
                text.append(f"<{modality}>")
                found[modality].append(item)
            elif not isinstance(part, dict):
                raise RowError(field, f"expected a content part object, got {type_name(part)}", "wrong type")
            else:
                raise RowError(f"{field}.type", f"unknown content part type {kind!r}; expected 'text', "
                                                f"{', '.join(repr(k) for k in _PART_MODALITY)}", "wrong type")
        out.append({**m, "content": "".join(text)})
        changed = True
    return ({**raw, "messages": out} if changed else raw), found


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, (str, list, tuple)) and not (value.strip() if isinstance(value, str)
                                                                            else value))


def _is_decoded(item: Any) -> bool:
    """A PIL image or a numpy array (rows read by `datasets` with decoding on), without importing either."""
    return type(item).__module__.split(".")[0] in ("PIL", "numpy")


def _is_waveform(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def _check_item(item: Any, modality: str, field: str) -> None:
    """RowError unless `item` has a form `swift.data.media` can load (it is not opened here)."""
    if isinstance(item, str):
        if item.strip():
            return
        raise RowError(field, "an empty string; expected a path, URL or base64 data", "empty content")
    if isinstance(item, dict):
        if any(item.get(k) is not None and not (isinstance(item[k], str) and not item[k])
               for k in ("bytes", "path", "url", "array")):
            return
        raise RowError(field, f"an object without 'bytes' or 'path' (keys: {sorted(map(str, item))})", "wrong type")
    if isinstance(item, (bytes, bytearray)) or _is_decoded(item):
        return
    if modality == "video" and isinstance(item, (list, tuple)) and item:
        for k, frame in enumerate(item):
            _check_item(frame, "image", f"{field}[{k}]")
        return
    if modality == "audio" and _is_waveform(item):
        return
    extra = {"video": ", or a list of frames", "audio": ", or a list of samples"}.get(modality, "")
    raise RowError(field, f"expected a path, URL, base64 string or an object like {{'bytes': ..., 'path': ...}}"
                          f"{extra}, got {type_name(item)}", "wrong type")


def _column_items(raw: Mapping[str, Any], modality: str) -> tuple[str, list] | None:
    """(field, items) of one modality's column, or None when the row has no such column. The plural column is a
    list (one item alone is accepted); the singular one holds one item (for images and audio files also a list)."""
    plural = MEDIA_KEYS[modality]
    if plural in raw and modality in raw and not _blank(raw[plural]) and not _blank(raw[modality]):
        raise RowError(modality, f"the row has both '{modality}' and '{plural}'; keep one", "wrong type")
    field = plural if plural in raw and (not _blank(raw[plural]) or modality not in raw) else modality
    if field not in raw:
        return None
    value = raw[field]
    if _blank(value):  # null, [] or an empty CSV cell
        return field, []
    if isinstance(value, str) and value.lstrip().startswith("["):  # a JSON list in a CSV cell
        value = _list(value, field)
    if field == plural:
        items = list(value) if isinstance(value, (list, tuple)) else [value]
    elif modality == "video" or not isinstance(value, (list, tuple)) or (modality == "audio" and _is_waveform(value)):
        items = [value]  # one video (a list is its frames), or one waveform
    else:
        items = list(value)
    for k, item in enumerate(items):
        _check_item(item, modality, f"{field}[{k}]")
    return field, items


def _media(raw: Mapping[str, Any], parts: dict[str, list]) -> dict[str, tuple[str, list]]:
    """modality -> (field, items) for each modality the row has a column or content parts for."""
    media = {}
    for modality in MEDIA_KEYS:
        column = _column_items(raw, modality)
        if parts[modality]:
            if column is not None and column[1]:
                raise RowError(column[0], f"the messages have {modality} content parts and the row also has "
                                          f"'{column[0]}'; keep one", "wrong type")
            for k, item in enumerate(parts[modality]):
                _check_item(item, modality, f"messages ({modality} part {k + 1})")
            column = ("messages", parts[modality])
        if column is not None:
            media[modality] = column
    return media


def _attach_media(messages: list[dict], media: dict[str, tuple[str, list]]) -> dict:
    """Check tag counts against the items, prepend missing tags to the first user turn, add the lists."""
    counts: dict[str, int] = {}
    for m in messages:
        for tag in _TAG.findall(m["content"]):
            counts[tag] = counts.get(tag, 0) + 1
    prefix = ""
    for modality, (field, items) in media.items():
        n = counts.get(modality, 0)
        if n and n != len(items):
            what = f"{len(items)} item{'s' * (len(items) != 1)} in '{field}'" if items else f"no '{field}'"
            raise RowError(field, f"{n} <{modality}> tag{'s' * (n != 1)} but {what}: each tag needs one item, in "
                                  "order (or give no tags and they are put at the start of the first user message)",
                           "media mismatch")
        if items and not n:
            prefix += f"<{modality}>" * len(items)
    if prefix:
        first = next(i for i, m in enumerate(messages) if m["role"] == "user")
        messages[first] = {**messages[first], "content": prefix + messages[first]["content"]}
    out: dict[str, Any] = {"messages": messages}
    out.update({MEDIA_KEYS[m]: items for m, (_, items) in media.items() if items})
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
    parts = {m: [] for m in MEDIA_KEYS}
    if fmt == "messages":
        raw, parts = _lift_parts(raw)
    if fmt == "text":
        if mode != "pt":
            raise RowError("text", "this is pre-training data (a 'text' column, no conversation); use `swift pt` "
                                   "(mode 'pt') or chat data with 'messages'", "wrong format")
        text = _string(raw.get("text", _MISSING), "text")
        media = _media(raw, parts)
        if not media:
            return {"text": text}
        out = _attach_media([{"role": "user", "content": text}], media)
        text = out.pop("messages")[0]["content"]
        return {"text": text, **out}
    messages = _CHAT[fmt](raw, mode != "infer")
    media = _media(raw, parts)
    out = _attach_media(messages, media) if media else {"messages": messages}
    if mode == "pt":
        # Chat rows used for pre-training become one text: the contents in order.
        text = "\n".join(m["content"] for m in out.pop("messages"))
        return {"text": text, **out}
    return out

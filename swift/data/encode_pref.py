"""`encode_preference_rows`: canonical alignment rows -> the token-id dataset TRL's trainers take, cached on disk.

Kinds and columns (int32 lists unless said otherwise):
- "preference" (DPO, CPO, SimPO, ORPO, reward models): `prompt_ids`, `chosen_ids`, `rejected_ids`.
- "kto": `prompt_ids`, `completion_ids`, `label` (bool).
- "prompt" (PPO, GRPO): `prompt_ids`, `messages` (the prompt messages as JSON text), and the rows' other
  columns (e.g. `solution`, `response`).

`prompt_ids` is `template.encode_prompt(history)` (history + the generation prompt). A completion is the
template's encoding of history + reply with that prefix removed, up to and including the reply's last labelled
token (its end-of-turn token): exactly the tokens SFT learns. Each row is checked: when the prompt's ids are not
a prefix of the whole conversation's, the chat template renders the history differently once a reply follows,
the completion cannot be cut off, and the row is an error (strict) or dropped and counted.

Rows over the template's `max_length`: truncation_strategy "delete" drops them, "left" cuts prompt tokens from
the start (a reply longer than max_length is still dropped), "right" cuts the end of the completions (a prompt
that alone fills max_length is dropped; a pair whose replies become identical is dropped). Drops are counted per
reason, and more than 10% dropped is a DataError. The cache is `encode_rows`'s (`swift.data.encode`).
"""
from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from swift.data import encode as encoding
from swift.data.formats import origin
from swift.templates.errors import EncodeError
from swift.utils.errors import ArgumentError, DataError
from swift.utils.logging import get_logger

if TYPE_CHECKING:
    import datasets

logger = get_logger("swift.data")

PREF_ENCODE_VERSION = "1"  # bump when the layout or the rules below change: old caches stop matching
KINDS = ("preference", "kto", "prompt")
ID_COLUMNS = {"preference": ("prompt_ids", "chosen_ids", "rejected_ids"), "kto": ("prompt_ids", "completion_ids"),
              "prompt": ("prompt_ids",)}
_NEEDS = {"preference": "'messages' (ending with the chosen reply) and 'rejected_response'",
          "kto": "'messages' (ending with the reply) and a boolean 'label'",
          "prompt": "'messages' (ending with a user turn)"}
IGNORE = -100
DROP_HINTS = {
    **encoding.DROP_HELP,
    "too_long": "longer than max_length (raise --max_length, or use --truncation_strategy left (cut the prompt) or "
                "right (cut the replies))",
    "prefix_mismatch": "the chat template renders the history differently when a reply follows",
    "same_after_truncation": "the chosen and rejected replies are the same once cut to max_length",
}
SOFT_REASONS = ("too_long", "no_labels", "same_after_truncation")


def _inputs(rows: Sequence[Mapping[str, Any]], kind: str, desc: str) -> list[tuple]:
    """(messages, rejected reply | label | other columns) per row; DataError for a row that is not canonical."""
    out = []
    for i, r in enumerate(rows):
        messages = r.get("messages") if isinstance(r, Mapping) else None
        last = messages[-1].get("role") if isinstance(messages, list) and messages and isinstance(
            messages[-1], Mapping) else None
        if kind == "preference":
            ok = last == "assistant" and isinstance(r.get("rejected_response"), str)
            extra = r.get("rejected_response") if ok else None
        elif kind == "kto":
            ok = last == "assistant" and type(r.get("label")) is bool
            extra = r.get("label") if ok else None
        else:
            ok = last is not None
            extra = {k: v for k, v in r.items() if k != "messages"} if ok else None
            if ok and "prompt_ids" in extra:
                file, row = origin(r, i, desc)
                raise DataError("the column name 'prompt_ids' is reserved for the encoded prompt; rename it",
                                file=file, row=row, field="prompt_ids")
        if not ok:
            file, row = origin(r, i, desc) if isinstance(r, Mapping) else (desc, i + 1)
            raise DataError(f"expected a canonical '{kind}' row with {_NEEDS[kind]}; load data with "
                            f"swift.data.load_datasets(..., mode={kind!r})", file=file, row=row)
        out.append((messages, extra))
    return out


def unlimited(template: Any) -> Any:
    """The template without max_length (a shallow copy); callers truncate themselves (preference rows: prompt and
    completion separately; multimodal rows: after the media tokens are in)."""
    if getattr(template, "max_length", None) is None:
        return template
    full = copy.copy(template)  # shallow: shares the compiled encoder state, only max_length differs
    full.max_length = None
    return full


def _mismatch(template: Any, prompt: list[int], ids: list[int]) -> str:
    k = next((i for i, (a, b) in enumerate(zip(prompt, ids)) if a != b), min(len(prompt), len(ids)))
    decode = getattr(getattr(template, "tokenizer", None), "decode", None)
    where = f"token {k}"
    if decode is not None:
        where += f": the prompt has {decode(prompt[k:k + 8])!r}, the conversation {decode(ids[k:k + 8])!r}"
    return (f"the prompt's tokens (encode_prompt of the history) are not a prefix of the tokens of the conversation "
            f"with the reply (they differ at {where}): the chat template renders the history differently when a "
            "reply follows, so the reply's tokens cannot be cut off. Use a template that renders earlier turns the "
            "same way (--template), or drop such rows with --strict false")


def _completion(template: Any, prompt: list[int], enc: Any) -> list[int] | tuple[str, str]:
    """The reply's ids: the encoding minus the prompt prefix, up to its last labelled token; or (reason, message)."""
    if not isinstance(enc, Mapping):
        return str(getattr(enc, "reason", "bad_messages")), str(enc)
    ids, labels = list(enc["input_ids"]), list(enc["labels"])
    n = len(prompt)
    if ids[:n] != prompt:
        return "prefix_mismatch", _mismatch(template, prompt, ids)
    end = len(labels)
    while end > n and labels[end - 1] == IGNORE:
        end -= 1
    if end == n:
        return "no_labels", "no token of the reply is labelled after the prompt"
    return ids[n:end]


def _truncate(prompt: list[int], completions: list[list[int]], limit: int | None,
              strategy: str) -> tuple[list[int], list[list[int]]] | tuple[str, str]:
    """Fit prompt + the longest completion into `limit` tokens, or (reason, message) to drop the row."""
    longest = max((len(c) for c in completions), default=0)
    total = len(prompt) + longest
    if limit is None or total <= limit:
        return prompt, completions
    what = f"the prompt and its longest reply have {total} tokens, more than max_length={limit}"
    if strategy == "left":
        if longest >= limit:
            return "too_long", f"{what}, and the reply alone has {longest} (truncation 'left' only cuts the prompt)"
        return prompt[total - limit:], completions
    if strategy == "right" and completions:
        if len(prompt) >= limit:
            return "too_long", (f"{what}, and the prompt alone has {len(prompt)} (truncation 'right' only cuts "
                                "replies)")
        cut = [c[:limit - len(prompt)] for c in completions]
        if len(cut) == 2 and cut[0] == cut[1]:
            return "same_after_truncation", f"{what}; cut to {limit - len(prompt)} tokens, both replies are the same"
        return prompt, cut
    if strategy == "right":
        return "too_long", f"{what} (truncation 'right' would cut off the generation prompt; use 'left')"
    return "too_long", f"{what} (truncation_strategy 'delete' drops it)"


def _encode_chunk(template: Any, inputs: list, start: int, stop: int, kind: str) -> tuple:
    """Encode inputs[start:stop]: (kept row indices, [(lengths, flat ids)] per id column, errors)."""
    chunk = inputs[start:stop]
    full = unlimited(template)
    per_row = {"preference": 2, "kto": 1, "prompt": 0}[kind]
    convs: list[list[dict]] = []
    for messages, extra in chunk:
        if kind == "preference":
            convs += [messages, [*messages[:-1], {"role": "assistant", "content": extra}]]
        elif kind == "kto":
            convs.append(messages)
    encoded = full.batch_encode(convs) if convs else []
    if len(encoded) != len(convs):
        raise RuntimeError(f"template returned {len(encoded)} results for {len(convs)} conversations")
    limit, strategy = getattr(template, "max_length", None), getattr(template, "truncation_strategy", "delete")
    kept: list[int] = []
    columns: list[list[list[int]]] = [[] for _ in ID_COLUMNS[kind]]
    errors: list[tuple] = []
    for i, (messages, _) in enumerate(chunk):
        idx = start + i
        try:
            prompt = full.encode_prompt(messages if kind == "prompt" else messages[:-1])
        except EncodeError as e:
            errors.append((idx, e.reason, f"the prompt: {e}", "messages"))
            continue
        completions = []
        for k in range(per_row):
            out = _completion(template, prompt, encoded[i * per_row + k])
            if isinstance(out, tuple):
                errors.append((idx, *out, "rejected_response" if k else "messages"))
                break
            completions.append(out)
        else:
            fitted = _truncate(prompt, completions, limit, strategy)
            if isinstance(fitted[0], str):
                errors.append((idx, *fitted, "messages"))
                continue
            kept.append(idx)
            for col, ids in zip(columns, [fitted[0], *fitted[1]]):
                col.append(ids)
    packed = [(np.array([len(x) for x in col], dtype=np.int64),
               np.array([t for x in col for t in x], dtype=np.int32)) for col in columns]
    return np.array(kept, dtype=np.int64), packed, errors


def _scalar_column(values: list, name: str, desc: str) -> Any:
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # e.g. a `solution` column with numbers in some rows and text in others: keep it, as text.
        logger.warning("%s: column '%s' mixes types; it is kept as text", desc, name)
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def _to_dataset(chunks: list[tuple], inputs: list, kind: str, desc: str) -> datasets.Dataset:
    import datasets
    import pyarrow as pa

    kept = np.concatenate([c[0] for c in chunks]).tolist()
    table: dict[str, Any] = {}
    for j, name in enumerate(ID_COLUMNS[kind]):
        table[name] = encoding._list_column(np.concatenate([c[1][j][0] for c in chunks]),
                                   np.concatenate([c[1][j][1] for c in chunks]))
    if kind == "kto":
        table["label"] = pa.array([inputs[i][1] for i in kept], pa.bool_())
    elif kind == "prompt":
        table["messages"] = pa.array([json.dumps(inputs[i][0], ensure_ascii=False) for i in kept], pa.string())
        names = list(dict.fromkeys(k for i in kept for k in inputs[i][1]))
        for name in names:
            table[name] = _scalar_column([inputs[i][1].get(name) for i in kept], name, desc)
    return datasets.Dataset(datasets.table.InMemoryTable(pa.table(table)))


def encode_preference_rows(rows: Sequence[Mapping[str, Any]], template: Any, *, kind: str, num_proc: int = 1,
                           strict: bool = True, load_from_cache_file: bool = True,
                           cache_dir: str | os.PathLike | None = None, desc: str = "train",
                           batch_size: int = 1000) -> datasets.Dataset:
    """Encode canonical alignment rows with a template into an arrow dataset, reusing the on-disk cache.

    Args:
        rows: canonical rows from `load_datasets(..., mode=kind)`: "preference" rows `{"messages",
            "rejected_response"}`, "kto" rows `{"messages", "label"}`, "prompt" rows `{"messages", ...}`.
        template: a `swift.templates.Template` (`batch_encode`, `encode_prompt`, `fingerprint`, `max_length`,
            `truncation_strategy`).
        kind: "preference", "kto" or "prompt" (see the module docstring for the columns).
        num_proc: worker processes (`--dataset_num_proc`).
        strict: a row the template cannot encode, or whose prompt is not a prefix of its conversation, stops
            the run (DataError naming file, row and field); with False it is dropped and counted. Rows over
            max_length are always dropped and counted (truncation "delete", or when truncation cannot fit them).
        load_from_cache_file: reuse a cached encoding with the same key (False encodes again and rewrites it).
        cache_dir: cache folder; default `cache_home() / "datasets"`.
        desc: what the rows are ("train", "val"), for messages.
        batch_size: rows per batch (and per worker task).

    Returns:
        A `datasets.Dataset` with the columns of `kind`.

    Raises:
        ArgumentError: an unknown kind.
        DataError: a row that is not canonical, a bad row (strict), no rows, or more than 10% of them dropped.
    """
    if kind not in KINDS:
        raise ArgumentError("kind", f"expected one of {KINDS}, got {kind!r}")
    if not rows:
        raise DataError(f"{desc}: no rows to encode")
    inputs = _inputs(rows, kind, desc)
    fingerprint = str(template.fingerprint())
    key = encoding._cache_key(inputs, fingerprint, f"{kind}/pref{PREF_ENCODE_VERSION}", strict)
    path = encoding._cache_path(cache_dir, key)
    if load_from_cache_file:
        ds = encoding._load_cached(path, desc, DROP_HINTS)
        if ds is not None:
            return ds
    chunks = encoding._run(inputs, template, kind, num_proc, batch_size, chunk_fn=_encode_chunk)
    errors = [e for c in chunks for e in c[2]]
    report = encoding._drop_report(errors, rows, len(inputs), strict, desc, DROP_HINTS, SOFT_REASONS)
    encoding._log_report(report, desc, DROP_HINTS)
    meta = {"version": f"{encoding.ENCODE_VERSION}/pref{PREF_ENCODE_VERSION}", "mode": kind,
            "template": fingerprint, "report": report}
    return encoding._save(_to_dataset(chunks, inputs, kind, desc), path, meta)


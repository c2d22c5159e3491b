"""Batch inference over canonical dataset rows, written to a jsonl file."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from swift.infer.protocol import Engine, InferRequest, RequestConfig
from swift.utils.errors import DataError


def split_prompt(row: dict[str, Any], index: int = 0) -> tuple[list[dict[str, Any]], str | None]:
    """Split a canonical row into the prompt (up to its last user turn) and the reference reply.

    Args:
        row: `{"messages": [...]}`.
        index: 0-based row number, for error messages.

    Returns:
        (messages up to and including the last user turn, content of the assistant turn after it or None).

    Raises:
        DataError: when the row has no `messages` list or no user turn.
    """
    messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(messages, list) or not messages:
        raise DataError("expected a non-empty list of messages", row=index + 1, field="messages")
    last_user = max((i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"),
                    default=None)
    if last_user is None:
        raise DataError("has no user turn to answer", row=index + 1, field="messages")
    reference = next((m.get("content") for m in messages[last_user + 1:] if m.get("role") == "assistant"), None)
    return messages[:last_user + 1], reference


def infer_rows(engine: Engine, rows: list[dict[str, Any]], config: RequestConfig | None = None, *,
               batch_size: int = 16, out_path: str | os.PathLike) -> str:
    """Answer every row and write `{"messages", "response", "labels"}` per row to a jsonl file.

    Lines are written (and flushed) batch by batch, so a crash keeps the finished rows; the file is
    replaced from the start on each call. `labels` is the row's own last assistant reply, or null.

    Args:
        engine: Any inference engine.
        rows: Canonical rows `{"messages": [...]}`.
        config: Generation settings (greedy by default).
        batch_size: Rows handed to the engine per call.
        out_path: The jsonl file to write (its folder is created).

    Returns:
        The path written, as a string.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    config = config or RequestConfig()
    prompts = [split_prompt(row, i) for i, row in enumerate(rows)]  # fail on a bad row before generating
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f, tqdm(total=len(rows), desc="infer", unit="row") as bar:
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start:start + batch_size]
            media = [_media(row) for row in rows[start:start + batch_size]]
            responses = engine.infer([InferRequest(messages=m, **md) for (m, _), md in zip(chunk, media)], config)
            for (messages, reference), md, resp in zip(chunk, media, responses):
                line = {"messages": messages, **_jsonable(md), "response": resp.text, "labels": reference}
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
            f.flush()
            bar.update(len(chunk))
    return str(path)


def _media(row: dict[str, Any]) -> dict[str, list]:
    """The row's images / videos / audios lists (only those it has)."""
    from swift.templates.mm_plugins import LIST_KEYS

    return {k: list(row[k]) for k in LIST_KEYS.values() if isinstance(row, dict) and row.get(k)}


def _jsonable(media: dict[str, list]) -> dict[str, list]:
    """Media lists made of paths or URLs, as written to the result file (decoded images are left out)."""
    return {k: v for k, v in media.items() if all(isinstance(x, str) and len(x) < 4096 for x in v)}

"""Scoring with a reward model (`swift rlhf --rlhf_type rm`): one number per conversation, higher is better."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from swift.utils.errors import DataError


def score_conversations(model: Any, template: Any, conversations: list[list[dict[str, Any]]], *,
                        batch_size: int = 16) -> list[float]:
    """The reward of each whole conversation (it should end with the assistant reply to judge).

    Each conversation is encoded with the chat template exactly as in training (prompt + reply + end of turn) and
    scored at the reply's end-of-turn token.
    """
    import torch

    pad = getattr(getattr(template, "tokenizer", None), "pad_token_id", None) or 0
    device = next(model.parameters()).device
    scores: list[float] = []
    for start in range(0, len(conversations), batch_size):
        ids = [_until_last_label(template.encode(m)) for m in conversations[start:start + batch_size]]
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, x in enumerate(ids):  # right padding: the model scores the last non-pad token
            input_ids[i, :len(x)] = torch.tensor(x)
            mask[i, :len(x)] = 1
        with torch.no_grad():
            logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
        scores.extend(float(v) for v in logits[:, 0].float().cpu())
    return scores


def _until_last_label(encoded: dict[str, Any]) -> list[int]:
    """The tokens up to the reply's end-of-turn token (the last labelled one), where training read the score:
    the template may add text after it (e.g. a newline) that the reward model never saw."""
    labels = encoded["labels"]
    last = max((i for i, label in enumerate(labels) if label != -100), default=len(labels) - 1)
    return encoded["input_ids"][:last + 1]


def score_rows(model: Any, template: Any, rows: list[dict[str, Any]], *, batch_size: int = 16,
               out_path: str | os.PathLike) -> str:
    """Score canonical rows (`messages` ending with an assistant reply) into a jsonl of {messages, reward}."""
    for i, row in enumerate(rows):
        msgs = row.get("messages")
        if not msgs or msgs[-1].get("role") != "assistant":
            raise DataError("a reward model scores a reply: the conversation must end with an assistant turn",
                            row=i + 1, field="messages")
    scores = score_conversations(model, template, [r["messages"] for r in rows], batch_size=batch_size)
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row, score in zip(rows, scores):
            f.write(json.dumps({"messages": row["messages"], "reward": score}, ensure_ascii=False) + "\n")
    return str(path)

"""Self-cognition: fill the `{{NAME}}` / `{{AUTHOR}}` placeholders with the model's name and author.

Like ms-swift, `--model_name` and `--model_author` take one value (used everywhere) or two: the Chinese one
first, then the English one. A row whose text contains CJK characters gets the Chinese value, others the
English one.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from swift.utils.errors import ArgumentError

NAME = "{{NAME}}"
AUTHOR = "{{AUTHOR}}"
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def name_pair(values: str | Sequence[str] | None, flag: str) -> tuple[str, str] | None:
    """(zh, en) from one or two values, or None when not given.

    Raises:
        ArgumentError: more than two values, or an empty one.
    """
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    values = list(values)
    if not values:
        return None
    if len(values) > 2 or any(not isinstance(v, str) or not v.strip() for v in values):
        raise ArgumentError(flag, f"expected one name, or two (Chinese then English), got {values!r}")
    return (values[0], values[-1])


class PlaceholderFiller:
    """Replaces placeholders in canonical rows, in place."""

    def __init__(self, model_name: str | Sequence[str] | None, model_author: str | Sequence[str] | None):
        self.names = name_pair(model_name, "model_name")
        self.authors = name_pair(model_author, "model_author")

    def _fill(self, text: str, dataset: str) -> str:
        lang = 0 if _CJK.search(text) else 1
        for placeholder, values, flag in ((NAME, self.names, "model_name"), (AUTHOR, self.authors, "model_author")):
            if placeholder in text:
                if values is None:
                    raise ArgumentError(flag, f"the dataset '{dataset}' contains the placeholder {placeholder} "
                                              "(self-cognition data): pass --model_name <name> [<English name>] and "
                                              "--model_author <author> [<English author>]")
                text = text.replace(placeholder, values[lang])
        return text

    def fill(self, row: dict, dataset: str) -> None:
        """Fill the placeholders of one canonical row (messages or text)."""
        messages = row.get("messages")
        if messages is None:
            if "{{" in row["text"]:
                row["text"] = self._fill(row["text"], dataset)
            return
        for m in messages:
            if "{{" in m["content"]:
                m["content"] = self._fill(m["content"], dataset)

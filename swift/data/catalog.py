"""The preset dataset catalog: data, one list, and `register_dataset` that rejects duplicates.

A preset maps a short name (and aliases) to hub ids on ModelScope and Hugging Face, or to a file bundled in
`swift/assets/`. `--dataset <name|alias|ms id|hf id>` finds it; anything else is a local path or a hub id.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from swift.data.formats import FORMATS

ASSETS = Path(__file__).resolve().parents[1] / "assets"


@dataclass(frozen=True)
class DatasetSpec:
    """One preset dataset.

    Attributes:
        name: the short name users type (`--dataset self-cognition`).
        ms_id: ModelScope dataset id.
        hf_id: Hugging Face dataset id.
        format: the row format (one of `swift.data.formats.FORMATS`); None detects it from the columns.
        local_path: a bundled file, relative to `swift/assets/`; used instead of the hub when present.
        aliases: other names that find this preset.
        split: the hub split to read.
        columns: renames applied to hub columns before normalising (`{"prompt": "query"}`).
        has_placeholders: rows contain `{{NAME}}` / `{{AUTHOR}}` (needs --model_name / --model_author).
    """

    name: str
    ms_id: str | None = None
    hf_id: str | None = None
    format: str | None = None
    local_path: str | None = None
    aliases: tuple[str, ...] = ()
    split: str = "train"
    columns: dict[str, str] = field(default_factory=dict)
    has_placeholders: bool = False

    def keys(self) -> tuple[str, ...]:
        """Every string that finds this preset."""
        return tuple(k for k in (self.name, *self.aliases, self.ms_id, self.hf_id) if k)

    def bundled_file(self) -> Path | None:
        """The bundled file when this preset has one and it exists."""
        if self.local_path is None:
            return None
        path = ASSETS / self.local_path
        return path if path.exists() else None


DATASETS: list[DatasetSpec] = [
    DatasetSpec("self-cognition", ms_id="swift/self-cognition", hf_id="modelscope/self-cognition",
                local_path="data/self_cognition.jsonl", aliases=("self_cognition",), has_placeholders=True),
    DatasetSpec("alpaca-gpt4-data-en", ms_id="AI-ModelScope/alpaca-gpt4-data-en", hf_id="vicgalle/alpaca-gpt4",
                format="alpaca"),
    DatasetSpec("alpaca-gpt4-data-zh", ms_id="AI-ModelScope/alpaca-gpt4-data-zh",
                hf_id="llm-wizard/alpaca-gpt4-data-zh", format="alpaca"),
    DatasetSpec("chat-mini", local_path="data/chat_mini.jsonl", format="messages", aliases=("chat_mini",)),
]


def find_dataset(key: str) -> DatasetSpec | None:
    """The preset found by its name, an alias or one of its hub ids (case-insensitive), or None."""
    wanted = key.lower()
    for spec in DATASETS:
        if any(k.lower() == wanted for k in spec.keys()):
            return spec
    return None


def register_dataset(spec: DatasetSpec) -> None:
    """Add a preset to the catalog.

    Raises:
        ValueError: its name, an alias or a hub id is already taken, or its format is unknown.
    """
    if spec.format is not None and spec.format not in FORMATS:
        raise ValueError(f"dataset '{spec.name}': unknown format {spec.format!r}; expected one of {FORMATS}")
    if not (spec.ms_id or spec.hf_id or spec.local_path):
        raise ValueError(f"dataset '{spec.name}': give ms_id, hf_id or local_path")
    for key in spec.keys():
        taken = find_dataset(key)
        if taken is not None:
            raise ValueError(f"dataset '{spec.name}': {key!r} is already registered by '{taken.name}'")
    DATASETS.append(spec)

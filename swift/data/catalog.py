"""The preset dataset catalog: data, one list, and `register_dataset` that rejects duplicates.

A preset maps a short name (and aliases) to hub ids on ModelScope and Hugging Face, or to a file bundled in
`swift/assets/`. `--dataset <name|alias|ms id|hf id>` finds it; anything else is a local path or a hub id.
Multimodal presets name a preprocessor (`swift.data.mm_presets.PREPROCESSORS`) that turns the hub's own column
layout into rows with media; the column names each one reads are written in its docstring.
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
        subset: the hub subset (configuration) read when the spec names none (`name:subset` overrides it).
        hf_subset: the subset on Hugging Face when it differs from `subset` ("same": use `subset`; None: none).
        preprocess: the name of a row preprocessor in `swift.data.mm_presets.PREPROCESSORS`, applied to each raw
            row before normalising (hub column layout -> a chat format with media lists).
        tags: free-form labels ("multimodal", "image", "caption", ...).
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
    subset: str | None = None
    hf_subset: str | None = "same"
    preprocess: str | None = None
    tags: tuple[str, ...] = ()

    def hub_subset(self, use_hf: bool) -> str | None:
        """The subset to read on the chosen hub."""
        return self.subset if not use_hf or self.hf_subset == "same" else self.hf_subset

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
    # Multimodal: the hub column layouts are in the preprocessors' docstrings (swift/data/mm_presets.py).
    DatasetSpec("coco-en", ms_id="modelscope/coco_2014_caption", hf_id="yerevann/coco-karpathy",
                subset="coco_2014_caption", hf_subset=None, preprocess="coco_caption", aliases=("coco_en", "coco-2014-caption"),
                tags=("multimodal", "image", "caption", "en")),
    DatasetSpec("nocaps", hf_id="lmms-lab/NoCaps", split="validation", preprocess="nocaps",
                tags=("multimodal", "image", "caption", "en")),
    DatasetSpec("webvid", hf_id="TempoFunk/webvid-10M", preprocess="webvid", aliases=("webvid-10m",),
                tags=("multimodal", "video", "caption", "en")),
    DatasetSpec("llava-instruct", ms_id="AI-ModelScope/LLaVA-Instruct-150K", hf_id="liuhaotian/LLaVA-Instruct-150K",
                preprocess="llava_instruct", aliases=("llava-instruct-150k", "llava_instruct"),
                tags=("multimodal", "image", "chat", "en")),
    DatasetSpec("sharegpt4v", ms_id="AI-ModelScope/ShareGPT4V", hf_id="Lin-Chen/ShareGPT4V", subset="ShareGPT4V",
                preprocess="sharegpt4v", aliases=("sharegpt-4v",), tags=("multimodal", "image", "caption", "en")),
    DatasetSpec("textvqa", hf_id="lmms-lab/textvqa", preprocess="textvqa", aliases=("text-vqa",),
                tags=("multimodal", "image", "vqa", "ocr", "en")),
    DatasetSpec("vqav2", ms_id="swift/VQAv2", hf_id="HuggingFaceM4/VQAv2", preprocess="vqav2", aliases=("vqa-v2",),
                tags=("multimodal", "image", "vqa", "en")),
    DatasetSpec("aishell1-zh", ms_id="speech_asr/speech_asr_aishell1_trainsets", preprocess="aishell1",
                aliases=("aishell1",), tags=("multimodal", "audio", "asr", "zh")),
    DatasetSpec("librispeech", hf_id="openslr/librispeech_asr", subset="clean", split="train.100",
                preprocess="librispeech", aliases=("librispeech-asr",), tags=("multimodal", "audio", "asr", "en")),
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
    if spec.preprocess is not None:
        from swift.data.mm_presets import get_preprocessor

        get_preprocessor(spec.preprocess)  # ValueError naming the known ones
    for key in spec.keys():
        taken = find_dataset(key)
        if taken is not None:
            raise ValueError(f"dataset '{spec.name}': {key!r} is already registered by '{taken.name}'")
    DATASETS.append(spec)

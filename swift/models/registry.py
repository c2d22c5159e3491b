"""The model catalog: one explicit list of `ModelSpec`s plus `register_model` for users' own entries.

This module is data only (no torch, no transformers), so the CLI can list models quickly. A spec names where a
model lives on each hub, which chat template it uses and what it needs; the loader and the hub code do the work.

Names are looked up case-insensitively through `model_type`, `aliases`, `hf_id` and `ms_id`, so
`--model qwen2.5-7b-instruct`, `--model Qwen/Qwen2.5-7B-Instruct` and `--model_type qwen` find the same entry.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path

from swift.utils.errors import SwiftError

DEMO_MODEL_TYPE = "swift-demo"


@dataclass(frozen=True)
class ModelSpec:
    """One catalog entry.

    Attributes:
        model_type: Unique short name, lower case (e.g. "qwen2.5-7b-instruct"); `--model_type` takes it.
        hf_id: Repository id on the Hugging Face hub, or None when the model is not on it.
        ms_id: Repository id on ModelScope, or None when the model is not on it.
        aliases: Other names that find this entry (e.g. "qwen", "qwen-7b").
        template: Name of the chat template (ms-swift's names: "qwen2_5", "llama3", ...), or None to use the
            tokenizer's own chat template (base models, unknown models).
        architectures: The `architectures` that the model's config.json lists.
        requires: Minimum transformers version, e.g. "4.37"; None when any 5.x works.
        is_multimodal: True when the model takes images, video or audio.
        tags: Free labels: "chat", "base", "reasoning", "vision" (images), "video", "audio", "remote_code", "demo", ...
    """

    model_type: str
    hf_id: str | None
    ms_id: str | None
    aliases: tuple[str, ...] = ()
    template: str | None = None
    architectures: tuple[str, ...] = ()
    requires: str | None = None
    is_multimodal: bool = False
    tags: tuple[str, ...] = field(default_factory=tuple)

    def names(self) -> tuple[str, ...]:
        """Every name this spec answers to (model_type, aliases, hub ids)."""
        return tuple(n for n in (self.model_type, *self.aliases, self.hf_id, self.ms_id) if n)

    def hub_id(self, use_hf: bool) -> str | None:
        """The repository id on the chosen hub, falling back to the other hub's id."""
        return (self.hf_id or self.ms_id) if use_hf else (self.ms_id or self.hf_id)


def _spec(model_type: str, hf_id: str | None, ms_id: str | None = "same", **kw) -> ModelSpec:
    """Shorthand: most ModelScope ids equal the Hugging Face id."""
    return ModelSpec(model_type, hf_id, hf_id if ms_id == "same" else ms_id, **kw)


_QWEN2 = ("Qwen2ForCausalLM",)
_LLAMA = ("LlamaForCausalLM",)
_CHAT = ("chat",)
_VIDEO = ("chat", "vision", "video")
_QWEN2_VL = ("Qwen2VLForConditionalGeneration",)
_QWEN2_5_VL = ("Qwen2_5_VLForConditionalGeneration",)
_INTERNVL = ("InternVLForConditionalGeneration",)

MODELS: list[ModelSpec] = [
    # The built-in demo: a small random-weight Qwen2 built locally (swift.models.demo), never downloaded.
    ModelSpec(DEMO_MODEL_TYPE, None, None, aliases=("demo",), template="qwen", architectures=_QWEN2,
              tags=("chat", "demo")),
    # Qwen2.5 instruct and base
    _spec("qwen2.5-0.5b-instruct", "Qwen/Qwen2.5-0.5B-Instruct", template="qwen2_5", architectures=_QWEN2,
          requires="4.37", tags=_CHAT),
    _spec("qwen2.5-1.5b-instruct", "Qwen/Qwen2.5-1.5B-Instruct", template="qwen2_5", architectures=_QWEN2,
          requires="4.37", tags=_CHAT),
    _spec("qwen2.5-7b-instruct", "Qwen/Qwen2.5-7B-Instruct", aliases=("qwen", "qwen-7b", "qwen2.5"),
          template="qwen2_5", architectures=_QWEN2, requires="4.37", tags=_CHAT),
    _spec("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B", architectures=_QWEN2, requires="4.37", tags=("base",)),
    _spec("qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B", architectures=_QWEN2, requires="4.37", tags=("base",)),
    _spec("qwen2.5-7b", "Qwen/Qwen2.5-7B", architectures=_QWEN2, requires="4.37", tags=("base",)),
    # Qwen3 (hybrid thinking chat models)
    _spec("qwen3-0.6b", "Qwen/Qwen3-0.6B", aliases=("qwen3",), template="qwen3",
          architectures=("Qwen3ForCausalLM",), requires="4.51", tags=("chat", "reasoning")),
    _spec("qwen3-1.7b", "Qwen/Qwen3-1.7B", template="qwen3", architectures=("Qwen3ForCausalLM",),
          requires="4.51", tags=("chat", "reasoning")),
    _spec("qwen3-4b", "Qwen/Qwen3-4B", template="qwen3", architectures=("Qwen3ForCausalLM",),
          requires="4.51", tags=("chat", "reasoning")),
    # Multimodal: Qwen2-VL / Qwen2.5-VL (images and video), Qwen2-Audio, LLaVA-1.5, LLaVA-NeXT, InternVL3 ("-hf":
    # the transformers-native repos, no remote code).
    _spec("qwen2-vl-2b-instruct", "Qwen/Qwen2-VL-2B-Instruct", aliases=("qwen-vl", "qwen2-vl"),
          template="qwen2_vl", architectures=_QWEN2_VL, requires="4.45", is_multimodal=True, tags=_VIDEO),
    _spec("qwen2-vl-7b-instruct", "Qwen/Qwen2-VL-7B-Instruct", template="qwen2_vl", architectures=_QWEN2_VL,
          requires="4.45", is_multimodal=True, tags=_VIDEO),
    _spec("qwen2.5-vl-3b-instruct", "Qwen/Qwen2.5-VL-3B-Instruct", aliases=("qwen2.5-vl",),
          template="qwen2_5_vl", architectures=_QWEN2_5_VL, requires="4.49", is_multimodal=True, tags=_VIDEO),
    _spec("qwen2.5-vl-7b-instruct", "Qwen/Qwen2.5-VL-7B-Instruct", template="qwen2_5_vl",
          architectures=_QWEN2_5_VL, requires="4.49", is_multimodal=True, tags=_VIDEO),
    _spec("qwen2-audio-7b-instruct", "Qwen/Qwen2-Audio-7B-Instruct", aliases=("qwen-audio", "qwen2-audio"),
          template="qwen2_audio", architectures=("Qwen2AudioForConditionalGeneration",), requires="4.45",
          is_multimodal=True, tags=("chat", "audio")),
    _spec("llava-1.5-7b-hf", "llava-hf/llava-1.5-7b-hf", aliases=("llava", "llava-1.5", "llava1.5"),
          template="llava1_5_hf", architectures=("LlavaForConditionalGeneration",), requires="4.36",
          is_multimodal=True, tags=("chat", "vision")),
    _spec("llava-v1.6-mistral-7b-hf", "llava-hf/llava-v1.6-mistral-7b-hf", aliases=("llava-next", "llava1.6"),
          template="llava1_6_mistral_hf", architectures=("LlavaNextForConditionalGeneration",), requires="4.39",
          is_multimodal=True, tags=("chat", "vision")),
    _spec("internvl3-1b-hf", "OpenGVLab/InternVL3-1B-hf", aliases=("internvl", "internvl3"), template="internvl_hf",
          architectures=_INTERNVL, requires="4.52", is_multimodal=True, tags=("chat", "vision")),
    _spec("internvl3-2b-hf", "OpenGVLab/InternVL3-2B-hf", template="internvl_hf", architectures=_INTERNVL,
          requires="4.52", is_multimodal=True, tags=("chat", "vision")),  # images (video needs its own plugin)
    # Llama 3.x
    _spec("llama3.1-8b-instruct", "meta-llama/Llama-3.1-8B-Instruct", "LLM-Research/Meta-Llama-3.1-8B-Instruct",
          aliases=("llama3.1", "llama3", "llama", "llama-3.1-8b-instruct"), template="llama3", architectures=_LLAMA,
          requires="4.43", tags=("chat", "gated")),
    _spec("llama3.2-1b-instruct", "meta-llama/Llama-3.2-1B-Instruct", "LLM-Research/Llama-3.2-1B-Instruct",
          aliases=("llama3.2", "llama-3.2-1b-instruct"), template="llama3_2", architectures=_LLAMA,
          requires="4.45", tags=("chat", "gated")),
    _spec("llama3.2-3b-instruct", "meta-llama/Llama-3.2-3B-Instruct", "LLM-Research/Llama-3.2-3B-Instruct",
          aliases=("llama-3.2-3b-instruct",), template="llama3_2", architectures=_LLAMA, requires="4.45",
          tags=("chat", "gated")),
    # Mistral
    _spec("mistral-7b-instruct", "mistralai/Mistral-7B-Instruct-v0.3", "LLM-Research/Mistral-7B-Instruct-v0.3",
          aliases=("mistral", "mistral-7b-instruct-v0.3"), template="mistral",
          architectures=("MistralForCausalLM",), requires="4.42", tags=_CHAT),
    # GLM-4 (the "-hf" repos load natively; the original repos need remote code)
    _spec("glm4-9b-chat", "THUDM/glm-4-9b-chat-hf", "ZhipuAI/glm-4-9b-chat-hf", aliases=("glm4", "glm-4"),
          template="glm4", architectures=("GlmForCausalLM",), requires="4.46", tags=_CHAT),
    # InternLM2.5 (remote code)
    _spec("internlm2.5-7b-chat", "internlm/internlm2_5-7b-chat", "Shanghai_AI_Laboratory/internlm2_5-7b-chat",
          aliases=("internlm2.5", "internlm2_5-7b-chat"), template="internlm2",
          architectures=("InternLM2ForCausalLM",), tags=("chat", "remote_code")),
    # DeepSeek-R1 distilled into Qwen2.5
    _spec("deepseek-r1-distill-qwen-1.5b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
          aliases=("deepseek-r1-distill",), template="deepseek_r1", architectures=_QWEN2, requires="4.37",
          tags=("chat", "reasoning")),
    _spec("deepseek-r1-distill-qwen-7b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", template="deepseek_r1",
          architectures=_QWEN2, requires="4.37", tags=("chat", "reasoning")),
    # Yi-1.5
    _spec("yi-1.5-6b-chat", "01-ai/Yi-1.5-6B-Chat", "01ai/Yi-1.5-6B-Chat", aliases=("yi", "yi-1.5"),
          template="yi", architectures=_LLAMA, tags=_CHAT),
    # Gemma-2
    _spec("gemma2-2b-it", "google/gemma-2-2b-it", "LLM-Research/gemma-2-2b-it", aliases=("gemma2", "gemma-2-2b-it"),
          template="gemma", architectures=("Gemma2ForCausalLM",), requires="4.42", tags=("chat", "gated")),
    # Phi-3.5
    _spec("phi3.5-mini-instruct", "microsoft/Phi-3.5-mini-instruct", "LLM-Research/Phi-3.5-mini-instruct",
          aliases=("phi3.5", "phi-3.5-mini-instruct"), template="phi3", architectures=("Phi3ForCausalLM",),
          requires="4.43", tags=_CHAT),
]

_INDEX: dict[str, ModelSpec] = {}


def _key(name: str) -> str:
    return name.strip().lower()


def _add(spec: ModelSpec) -> None:
    taken = [n for n in spec.names() if _key(n) in _INDEX and _INDEX[_key(n)] is not spec]
    if taken:
        owner = _INDEX[_key(taken[0])].model_type
        raise SwiftError(f"Cannot register model '{spec.model_type}': the name '{taken[0]}' is already used by "
                         f"'{owner}'. Choose another model_type or alias.")
    for n in spec.names():
        _INDEX[_key(n)] = spec


for _s in MODELS:
    _add(_s)


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a model to the catalog.

    Args:
        spec: The entry. Its model_type, aliases and hub ids must not be taken by another entry.

    Returns:
        The spec, so this can be used inline.

    Raises:
        SwiftError: When one of its names is already registered.
    """
    _add(spec)
    MODELS.append(spec)
    return spec


def get_model_spec(name: str) -> ModelSpec | None:
    """Find a spec by model_type, alias, Hugging Face id or ModelScope id (case-insensitive); None if unknown."""
    if not name:
        return None
    return _INDEX.get(_key(name))


def list_models(tag: str | None = None) -> list[ModelSpec]:
    """All specs in catalog order, optionally only those carrying `tag`."""
    return [s for s in MODELS if tag is None or tag in s.tags]


def suggest_models(name: str, n: int = 3) -> list[str]:
    """Registered names close to `name`, for "did you mean" messages."""
    keys = sorted({_key(x) for s in MODELS for x in (s.model_type, *s.aliases)})
    return difflib.get_close_matches(_key(name), keys, n=n, cutoff=0.5)


def match_model_spec(model_dir: str | os.PathLike) -> ModelSpec | None:
    """Guess the spec of a local model folder from its name.

    Matches a folder named like the hub repository (".../Qwen2.5-7B-Instruct") and Hugging Face cache folders
    (".../models--Qwen--Qwen2.5-7B-Instruct/snapshots/<hash>"). Returns None when nothing matches.
    """
    parts = Path(model_dir).expanduser().resolve().parts
    for part in reversed(parts[-4:]):
        if part.startswith("models--"):
            spec = get_model_spec(part[len("models--"):].replace("--", "/"))
            if spec:
                return spec
    if not parts:
        return None
    base = _key(parts[-1])
    for spec in MODELS:
        for hub_id in (spec.hf_id, spec.ms_id):
            if hub_id and _key(hub_id.rsplit("/", 1)[-1]) == base:
                return spec
    return None

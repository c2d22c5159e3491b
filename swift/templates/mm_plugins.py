"""Multimodal families as data: how `<image>` / `<video>` / `<audio>` tags become the model's placeholder text.

A dataset row says where media go with tags (`"<image>What is in the picture?"`). Each family's processor
expects its own placeholder text in the prompt, holding exactly one *expand token* per item (Qwen2-VL:
`<|vision_start|><|image_pad|><|vision_end|>`, expand token `<|image_pad|>`). The encoder
(`swift.data.mm_encode`) puts the placeholder in place of the tag, encodes the conversation with the text
template, then replaces each expand token by the tokens the processor computes for that item (hundreds of
`<|image_pad|>` for one picture) - with labels -100, so the loss never covers media tokens.

`features` names how the pixels / sounds are computed: "qwen_vl" (Qwen2-VL's image processor for images, and
its patches regrouped in time for videos, so no torchvision is needed) or "processor" (the model's own
transformers processor, called on the placeholders alone; the expansion of each placeholder is read from its
output).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from swift.utils.errors import SwiftError

MODALITIES = ("image", "video", "audio")
TAGS = {"image": "<image>", "video": "<video>", "audio": "<audio>"}
LIST_KEYS = {"image": "images", "video": "videos", "audio": "audios"}
TAG_RE = re.compile(r"<(image|video|audio)>")
"""A media tag in a message; group 1 is its modality."""


@dataclass(frozen=True)
class MMPlugin:
    """One multimodal family.

    Attributes:
        name: Short name ("qwen2_vl").
        model_types: The `model_type`s in config.json this plugin serves.
        placeholders: Modality -> the text put where the tag was. `{n}` is replaced by the 1-based index of the
            item among the row's items of that modality ("Audio {n}: ...").
        expand_tokens: Modality -> the token (in the placeholder) that the media tokens replace.
        features: "qwen_vl" or "processor" (see the module docstring).
        token_type_ids: The model's forward takes `mm_token_type_ids` (1 image, 2 video, 0 text).
        mrope: Positions are 3-D (multimodal RoPE): packed rows need per-row rope indices.
    """

    name: str
    model_types: tuple[str, ...]
    placeholders: dict[str, str]
    expand_tokens: dict[str, str]
    features: str = "processor"
    token_type_ids: bool = False
    mrope: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities this family takes, in canonical order."""
        return tuple(m for m in MODALITIES if m in self.placeholders)


_QWEN_VL = dict(
    placeholders={"image": "<|vision_start|><|image_pad|><|vision_end|>",
                  "video": "<|vision_start|><|video_pad|><|vision_end|>"},
    expand_tokens={"image": "<|image_pad|>", "video": "<|video_pad|>"},
    features="qwen_vl", token_type_ids=True, mrope=True,
)

PLUGINS: list[MMPlugin] = [
    MMPlugin("qwen2_vl", ("qwen2_vl",), **_QWEN_VL),
    MMPlugin("qwen2_5_vl", ("qwen2_5_vl",), **_QWEN_VL),
    # The processor's chat template writes "Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n" per audio.
    MMPlugin("qwen2_audio", ("qwen2_audio",),
             placeholders={"audio": "Audio {n}: <|audio_bos|><|AUDIO|><|audio_eos|>\n"},
             expand_tokens={"audio": "<|AUDIO|>"}),
    MMPlugin("llava", ("llava",), placeholders={"image": "<image>"}, expand_tokens={"image": "<image>"}),
    MMPlugin("llava_next", ("llava_next",), placeholders={"image": "<image>"}, expand_tokens={"image": "<image>"}),
    # InternVLProcessor turns each <IMG_CONTEXT> into <img> + <IMG_CONTEXT> x n + </img>.
    MMPlugin("internvl", ("internvl",), placeholders={"image": "<IMG_CONTEXT>"},
             expand_tokens={"image": "<IMG_CONTEXT>"}),
]


def get_plugin(model_type: str | None) -> MMPlugin | None:
    """The plugin serving `model_type`, or None for text-only models."""
    for p in PLUGINS:
        if model_type in p.model_types:
            return p
    return None


def register_plugin(plugin: MMPlugin) -> MMPlugin:
    """Add a family. Raises SwiftError when one of its model_types is already served."""
    taken = [t for t in plugin.model_types if get_plugin(t) is not None]
    if taken:
        raise SwiftError(f"multimodal plugin '{plugin.name}': model_type {taken[0]!r} already has a plugin")
    unknown = set(plugin.placeholders) - set(MODALITIES)
    if unknown or set(plugin.placeholders) != set(plugin.expand_tokens):
        raise SwiftError(f"multimodal plugin '{plugin.name}': placeholders and expand_tokens must name the same "
                         f"modalities among {MODALITIES}")
    PLUGINS.append(plugin)
    return plugin

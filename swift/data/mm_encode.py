"""`MultiModalEncoder`: a canonical multimodal row -> input_ids, labels and the model's media tensors.

    enc = MultiModalEncoder(template, processor, model.config.model_type, max_pixels=256 * 28 * 28)
    out = enc.encode({"messages": [...], "images": ["cat.jpg"]})
    # {"input_ids": [...], "labels": [...], "pixel_values": tensor, "image_grid_thw": tensor, ...}

1. Each `<image>` / `<video>` / `<audio>` tag becomes the family's placeholder text (`swift.templates.mm_plugins`).
2. The conversation is encoded by the text template (labels on the assistant replies only, as in text SFT).
3. The media are loaded (`swift.data.media`) and processed: Qwen2-VL / Qwen2.5-VL through the image processor
   (videos: the same per-frame patches regrouped in time, which is what Qwen2-VL's video processor computes, so no
   torchvision is needed); other families through their own transformers processor.
4. Each expand token becomes the item's media tokens, labelled -100: the loss never covers media tokens.
5. Truncation never cuts media tokens (that would break the model's forward): such a row is too long.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from swift.templates.errors import EncodeError
from swift.templates.mm_plugins import LIST_KEYS, TAG_RE, TAGS, MMPlugin, get_plugin
from swift.utils.errors import SwiftError

IGNORE = -100
TOKEN_KEYS = ("input_ids", "labels", "mm_token_type_ids")  # per-token lists; every other key is a media tensor
_TYPE_OF = {"image": 1, "video": 2, "audio": 3}
DEFAULT_VIDEO_MAX_PIXELS = 768 * 28 * 28


def count_tags(messages: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Number of `<image>`, `<video>` and `<audio>` tags in the messages' contents."""
    counts = dict.fromkeys(TAGS, 0)
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            for modality in TAG_RE.findall(content):
                counts[modality] += 1
    return counts


def media_of(row: Mapping[str, Any]) -> dict[str, list]:
    """Modality -> the row's list of raw media items (empty lists for absent keys)."""
    return {m: list(row.get(key) or []) for m, key in LIST_KEYS.items()}


class MultiModalEncoder:
    """Encodes multimodal rows for one model (see the module docstring).

    Args:
        template: The text `Template` (its max_length and truncation_strategy apply to the expanded row).
        processor: The model's processor (or SwiftLab's stand-in) with `.tokenizer` and `.image_processor` /
            `.feature_extractor` as the family needs.
        model_type: config.json's `model_type`, which selects the plugin.
        max_pixels: Pixel budget per image (Qwen2-VL family); None keeps the processor's.
        min_pixels: Lower pixel bound per image (Qwen2-VL family); None keeps the processor's.
        video_max_pixels: Pixel budget per video frame (Qwen2-VL family).
        fps: Frames sampled per second of a video file. max_frames: At most this many frames per video.
    """

    def __init__(self, template: Any, processor: Any, model_type: str, *, max_pixels: int | None = None,
                 min_pixels: int | None = None, video_max_pixels: int | None = None, fps: float = 2.0,
                 max_frames: int = 16):
        plugin = get_plugin(model_type)
        if plugin is None:
            raise SwiftError(f"model_type {model_type!r} has no multimodal plugin; known families: "
                             "qwen2_vl, qwen2_5_vl, qwen2_audio, llava, llava_next, internvl "
                             "(swift.templates.mm_plugins.register_plugin adds one)")
        self.plugin: MMPlugin = plugin
        self.template = template
        from swift.data.encode_pref import unlimited

        self.text = unlimited(template)  # truncation is done here, after the media tokens are in
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", None) or template.tokenizer
        self.max_pixels, self.min_pixels = max_pixels, min_pixels
        self.video_max_pixels, self.fps, self.max_frames = video_max_pixels, fps, max_frames
        self.expand_ids: dict[str, int] = {}
        for modality, token in plugin.expand_tokens.items():
            tid = self.tokenizer.convert_tokens_to_ids(token)
            if tid is None or tid == self.tokenizer.unk_token_id:
                raise SwiftError(f"the tokenizer has no {token!r} token, which {plugin.name} models need for "
                                 f"{modality}s; is this the model's own tokenizer?")
            self.expand_ids[modality] = tid
        self.media_token_ids = frozenset(self.expand_ids.values())

    @property
    def max_length(self) -> int | None:
        return self.template.max_length

    # ---- public API ---------------------------------------------------------------------------------------
    def encode(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Encode one training row. Raises EncodeError (bad_messages / too_long / no_labels) or MediaError."""
        msgs, media = self._prepare(row)
        out = self.text.batch_encode([msgs])[0]
        if isinstance(out, EncodeError):
            raise out
        return self._finish(out["input_ids"], out["labels"], media, labels_wanted=True)

    def encode_prompt(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Encode a history ending with a user turn plus the generation prompt (inference): input_ids, media."""
        msgs, media = self._prepare(row)
        ids = self.text.encode_prompt(msgs)
        return self._finish(ids, None, media, labels_wanted=False)

    def fingerprint(self) -> str:
        """What changes the encoding besides the rows (for logs and caches)."""
        return (f"{self.template.fingerprint()}-{self.plugin.name}-{self.max_pixels}-{self.min_pixels}-"
                f"{self.video_max_pixels}-{self.fps}-{self.max_frames}")

    # ---- steps --------------------------------------------------------------------------------------------
    def _prepare(self, row: Mapping[str, Any]) -> tuple[list[dict], dict[str, list]]:
        messages = row.get("messages")
        if not isinstance(messages, list):
            raise EncodeError("bad_messages", "a multimodal row needs 'messages' (a list)")
        media = media_of(row)
        tags = count_tags(messages)
        for modality, items in media.items():
            if (items or tags[modality]) and modality not in self.plugin.placeholders:
                raise EncodeError("bad_messages", f"{self.plugin.name} models take no {modality}s, but the row has "
                                                  f"{len(items)} in '{LIST_KEYS[modality]}' / {tags[modality]} "
                                                  f"{TAGS[modality]} tags")
            if tags[modality] != len(items):
                raise EncodeError("bad_messages", f"{tags[modality]} {TAGS[modality]} tags in the messages but "
                                                  f"{len(items)} items in '{LIST_KEYS[modality]}'")
        seen = dict.fromkeys(TAGS, 0)

        def placeholder(match: re.Match) -> str:
            modality = match.group(1)
            seen[modality] += 1
            return self.plugin.placeholders[modality].replace("{n}", str(seen[modality]))

        msgs = []
        for m in messages:
            content = m.get("content")
            if isinstance(content, str) and "<" in content:
                m = {**m, "content": TAG_RE.sub(placeholder, content)}
            msgs.append(m)
        return msgs, media

    def _finish(self, ids: list[int], labels: list[int] | None, media: dict[str, list], *,
                labels_wanted: bool) -> dict[str, Any]:
        loaded = self._load(media)
        if self.plugin.features == "qwen_vl":
            from swift.data.mm_qwen import qwen_vl_features

            features, expansions = qwen_vl_features(self, loaded)
        else:
            features, expansions = self._processor_features(loaded)
        ids, labels = self._expand(ids, labels, expansions)
        ids, labels = self._truncate(ids, labels)
        out: dict[str, Any] = {"input_ids": ids}
        if labels_wanted:
            if labels.count(IGNORE) >= len(labels) - 1:
                raise EncodeError("no_labels", "no token of an assistant reply is left to learn from"
                                  + (f" after truncation to {self.max_length} tokens." if self.max_length else "."))
            out["labels"] = labels
        if self.plugin.token_type_ids:
            types = {tid: _TYPE_OF[m] for m, tid in self.expand_ids.items()}
            out["mm_token_type_ids"] = [types.get(t, 0) for t in ids]
        out.update(features)
        return out

    def _expand(self, ids: list[int], labels: list[int] | None,
                expansions: dict[str, list[list[int]]]) -> tuple[list[int], list[int] | None]:
        """Replace the k-th expand token of each modality by the k-th item's tokens (labels -100)."""
        by_id = {self.expand_ids[m]: iter(v) for m, v in expansions.items()}
        wanted = {self.expand_ids[m]: len(v) for m, v in expansions.items()}
        found = {tid: 0 for tid in self.media_token_ids}
        new_ids: list[int] = []
        new_labels: list[int] = []
        for k, t in enumerate(ids):
            if t in found:
                found[t] += 1
                seq = next(by_id[t], None) if t in by_id else None
                if seq is None:
                    break  # more expand tokens than items: reported below
                new_ids += seq
                new_labels += [IGNORE] * len(seq)
            else:
                new_ids.append(t)
                if labels is not None:
                    new_labels.append(labels[k])
        for tid, n in found.items():
            if n != wanted.get(tid, 0):
                token = self.tokenizer.convert_ids_to_tokens(tid)
                raise EncodeError("bad_messages", f"the encoded row holds {n} {token!r} tokens for "
                                  f"{wanted.get(tid, 0)} media items: write media as <image>/<video>/<audio> "
                                  f"tags, not as the model's own {token!r} token")
        return new_ids, (new_labels if labels is not None else None)

    def _truncate(self, ids: list[int], labels: list[int] | None) -> tuple[list[int], list[int] | None]:
        limit, strategy = self.template.max_length, self.template.truncation_strategy
        if limit is None or len(ids) <= limit:
            return ids, labels
        media = self.media_token_ids
        if strategy != "delete":
            cut = ids[:len(ids) - limit] if strategy == "left" else ids[limit:]
            kept = ids[-limit:] if strategy == "left" else ids[:limit]
            if not any(t in media for t in cut) and not _splits_media(ids, len(ids) - limit if strategy == "left"
                                                                         else limit, media):
                if labels is not None:
                    labels = labels[-limit:] if strategy == "left" else labels[:limit]
                return kept, labels
            raise EncodeError("too_long", f"the row has {len(ids)} tokens with its media, more than "
                                          f"max_length={limit}, and truncating it would cut media tokens")
        raise EncodeError("too_long", f"the row has {len(ids)} tokens with its media, more than max_length={limit} "
                                      "(truncation_strategy='delete' drops it; --max_pixels lowers image tokens)")

    def _processor_features(self, loaded: dict[str, list]) -> tuple[dict[str, Any], dict[str, list[list[int]]]]:
        """Call the family's processor on the placeholders alone; read each placeholder's expansion off its output."""
        if not loaded:
            return {}, {}
        parts, kwargs = [], {}
        arg = {"image": "images", "video": "videos", "audio": "audio"}
        for modality in self.plugin.modalities:
            items = loaded.get(modality)
            if not items:
                continue
            kwargs[arg[modality]] = items
            parts += [self.plugin.placeholders[modality].replace("{n}", str(n + 1)) for n in range(len(items))]
        text = "\n" + "\n".join(parts) + "\n"  # a leading text token: a bos the processor adds is skipped
        fe = getattr(self.processor, "feature_extractor", None)
        if "audio" in kwargs and fe is not None:
            kwargs["sampling_rate"] = fe.sampling_rate
        out = self.processor(text=[text], return_tensors="pt", **kwargs)
        expanded = out["input_ids"][0].tolist()
        plain = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        expansions = _align(plain, expanded, self.expand_ids)
        features = {k: v for k, v in out.items() if k not in ("input_ids", "attention_mask", "token_type_ids",
                                                                "mm_token_type_ids")}
        return features, expansions

    def _load(self, media: dict[str, list]) -> dict[str, list]:
        from swift.data.media import load_audio, load_image, load_video

        loaded: dict[str, list] = {}
        if media["image"]:
            loaded["image"] = [load_image(x) for x in media["image"]]
        if media["video"]:
            loaded["video"] = [load_video(x, fps=self.fps, max_frames=self.max_frames) for x in media["video"]]
        if media["audio"]:
            rate = getattr(getattr(self.processor, "feature_extractor", None), "sampling_rate", None) or 16000
            loaded["audio"] = [load_audio(x, sampling_rate=rate) for x in media["audio"]]
        return loaded


def _splits_media(ids: list[int], at: int, media: frozenset[int]) -> bool:
    """True when a cut at index `at` falls inside a run of media tokens."""
    return 0 < at < len(ids) and ids[at - 1] in media and ids[at] in media


def _align(plain: list[int], expanded: list[int], expand_ids: Mapping[str, int]) -> dict[str, list[list[int]]]:
    """Per modality, the tokens that replaced each expand token of `plain` in the processor's `expanded` ids.

    The processor only inserts tokens around and instead of an expand token, so both sequences agree on every
    other token; tokens it adds before the first one (a bos) are skipped."""
    modality_of = {tid: m for m, tid in expand_ids.items()}
    out: dict[str, list[list[int]]] = {m: [] for m in expand_ids}
    j = 0
    for i, t in enumerate(plain):
        if t in modality_of:
            nxt = plain[i + 1] if i + 1 < len(plain) else None
            start = j
            j += 1
            while j < len(expanded) and expanded[j] != nxt:
                j += 1
            out[modality_of[t]].append(expanded[start:j])
            continue
        while j < len(expanded) and expanded[j] != t:
            j += 1
        if j == len(expanded):
            raise RuntimeError("the processor's token ids do not contain the placeholder text's tokens")
        j += 1
    return out

"""Load a multimodal model's processor, with a stand-in where transformers cannot build the official one.

transformers 5.x builds the Qwen2-VL / Qwen2.5-VL and InternVL processors only with torchvision installed (their
video processors need it), and SwiftLab's base install leaves torchvision out. `load_processor` returns the
official processor whenever it builds; otherwise a `SwiftProcessor`: the tokenizer, the image processor (its
PIL backend needs no torchvision), no video processor, and the chat template. It expands image placeholders
like the official processor does, and its `save_pretrained` writes a folder the official `AutoProcessor`
reads where torchvision exists. Video frames of these families are turned into patches by SwiftLab's own
multimodal encoder (`swift.data.mm_qwen`), not by this class.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from swift.utils.errors import SwiftError
from swift.utils.logging import get_logger

logger = get_logger("swift.models")

_COPIED_FILES = ("video_preprocessor_config.json", "processor_config.json")
_SUB_PROCESSOR_KEYS = ("image_processor", "video_processor", "feature_extractor", "tokenizer", "audio_processor")
_QWEN_VL_CLASSES = ("Qwen2VLProcessor", "Qwen2_5_VLProcessor")
_fallback_logged = False


class SwiftProcessor:
    """A processor built from its parts where transformers' own class cannot be built (no torchvision).

    Attributes:
        tokenizer: The text tokenizer.
        image_processor: The image processor (PIL backend), or None.
        video_processor: Always None: videos go through SwiftLab's multimodal encoder.
        feature_extractor: The audio feature extractor, or None.
        chat_template: The chat template of the folder (a string), or None.
        processor_class: The transformers processor class the folder names (e.g. "Qwen2VLProcessor").
        processor_kwargs: The processor's own settings from processor_config.json (e.g. image_seq_length).
        source_dir: The folder it was loaded from; `save_pretrained` copies its video/processor configs.
    """

    def __init__(self, tokenizer: Any, image_processor: Any = None, *, feature_extractor: Any = None,
                 chat_template: str | None = None, processor_class: str | None = None,
                 processor_kwargs: dict[str, Any] | None = None, source_dir: str | os.PathLike | None = None) -> None:
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.video_processor = None
        self.feature_extractor = feature_extractor
        self.chat_template = chat_template
        self.processor_class = processor_class
        self.processor_kwargs = dict(processor_kwargs or {})
        self.source_dir = str(source_dir) if source_dir is not None else None
        is_qwen = processor_class in _QWEN_VL_CLASSES or hasattr(image_processor, "merge_size")
        self.family = "qwen_vl" if is_qwen else "internvl" if hasattr(tokenizer, "context_image_token") else None
        if self.family == "qwen_vl":
            self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
            self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        elif self.family == "internvl":
            self.image_token = tokenizer.context_image_token
            self.video_token = getattr(tokenizer, "video_token", None)
        else:
            self.image_token = self.video_token = None

    @property
    def model_input_names(self) -> list[str]:
        """Names of the model inputs this processor returns."""
        names = list(self.tokenizer.model_input_names)
        if self.image_processor is not None:
            names += [n for n in self.image_processor.model_input_names if n not in names and n != "num_patches"]
        if self.family == "qwen_vl":
            names.append("mm_token_type_ids")
        return names

    def __call__(self, text: str | list[str] | None = None, images: Any = None, videos: Any = None,
                 audio: Any = None, return_tensors: str | None = None, **kwargs: Any) -> Any:
        """Tokenize `text` with each image placeholder expanded, and process `images` (as the official class does).

        Args:
            text: One text or a batch; each image is marked by the family's image token (Qwen2-VL
                "<|image_pad|>" inside "<|vision_start|>...<|vision_end|>", InternVL "<IMG_CONTEXT>").
            images: PIL images (or arrays), in the order of their placeholders; nested per-text lists are
                flattened.
            videos / audio: Not supported here (SwiftLab's multimodal encoder processes video frames).
            return_tensors: "pt", "np" or None.
            **kwargs: Tokenizer options (padding, truncation, max_length, add_special_tokens, padding_side) and
                image processor options (e.g. size, crop_to_patches).

        Returns:
            A `BatchFeature` with input_ids, attention_mask, the image features (pixel_values, and for Qwen2-VL
            image_grid_thw and mm_token_type_ids).
        """
        from transformers import BatchFeature

        if videos is not None or audio is not None:
            raise SwiftError(f"{self.processor_class or 'This processor'} was loaded without torchvision, so it "
                             "cannot process videos or audio itself; SwiftLab's multimodal encoder "
                             "(swift.data.mm_encode) handles video rows, or install torchvision to use the "
                             "official processor.")
        text_keys = ("padding", "truncation", "max_length", "add_special_tokens", "padding_side",
                     "return_attention_mask", "pad_to_multiple_of")
        text_kwargs = {k: kwargs.pop(k) for k in text_keys if k in kwargs}
        texts = [text] if isinstance(text, str) else list(text or [])
        data: dict[str, Any] = {}
        if images is not None:
            flat = _flatten(images)
            if self.image_processor is None or self.family is None:
                raise SwiftError(f"{self.processor_class or 'This processor'} has no image processing here.")
            texts, data = self._expand_images(texts, flat, kwargs)
        if texts:
            enc = self.tokenizer(texts, **text_kwargs)
            data = {**dict(enc), **data}
            if self.family == "qwen_vl":
                ids = (self.tokenizer.convert_tokens_to_ids(self.image_token),
                       self.tokenizer.convert_tokens_to_ids(self.video_token))
                data["mm_token_type_ids"] = [[1 if t == ids[0] else 2 if t == ids[1] else 0 for t in row]
                                             for row in enc["input_ids"]]
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _expand_images(self, texts: list[str], images: list[Any], kwargs: dict[str, Any]
                       ) -> tuple[list[str], dict[str, Any]]:
        n_tags = sum(t.count(self.image_token) for t in texts)
        if n_tags != len(images):
            raise SwiftError(f"the text holds {n_tags} image placeholder(s) {self.image_token!r} but {len(images)} "
                             "image(s) were given; give one image per placeholder.")
        if self.family == "internvl":
            kwargs.setdefault("crop_to_patches", True)
        out = self.image_processor(images=images, return_tensors="pt", **kwargs)
        if self.family == "qwen_vl":
            merge = int(self.image_processor.merge_size) ** 2
            expansions = [self.image_token * (int(g.prod()) // merge) for g in out["image_grid_thw"]]
            data = {"pixel_values": out["pixel_values"], "image_grid_thw": out["image_grid_thw"]}
        else:
            seq = int(self.processor_kwargs.get("image_seq_length", 256))
            start, end = self.tokenizer.start_image_token, self.tokenizer.end_image_token
            expansions = [f"{start}{self.image_token * seq * int(n)}{end}" for n in out["num_patches"]]
            data = {"pixel_values": out["pixel_values"]}
        pending = iter(expansions)
        pattern = re.compile(re.escape(self.image_token))
        return [pattern.sub(lambda _: next(pending), t) for t in texts], data

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any:
        """The tokenizer's `apply_chat_template` with this processor's chat template."""
        kwargs.setdefault("chat_template", self.chat_template)
        return self.tokenizer.apply_chat_template(conversation, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> str:
        """The tokenizer's `decode`."""
        return self.tokenizer.decode(*args, **kwargs)

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        """The tokenizer's `batch_decode`."""
        return self.tokenizer.batch_decode(*args, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> list[str]:
        """Write the tokenizer, chat template, preprocessor_config.json, and copy the source folder's
        video_preprocessor_config.json / processor_config.json, so the official `AutoProcessor` loads the folder.

        Returns:
            The paths written.
        """
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        if self.chat_template:
            self.tokenizer.chat_template = self.chat_template
        written = [str(p) for p in self.tokenizer.save_pretrained(str(out), **kwargs)]
        for part, name in ((self.image_processor, "preprocessor_config.json"),
                           (self.feature_extractor, "preprocessor_config.json")):
            if part is None:
                continue
            content = json.loads(part.to_json_string())
            if self.processor_class:
                content["processor_class"] = self.processor_class
            (out / name).write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            written.append(str(out / name))
            break
        src = Path(self.source_dir) if self.source_dir else None
        for name in _COPIED_FILES:
            if src is not None and (src / name).is_file():
                if (src / name).resolve() != (out / name).resolve():
                    shutil.copyfile(src / name, out / name)
                written.append(str(out / name))
        if self.processor_kwargs and not (out / "processor_config.json").is_file():
            content = {**self.processor_kwargs, "processor_class": self.processor_class}
            (out / "processor_config.json").write_text(json.dumps(content, indent=2, sort_keys=True) + "\n",
                                                       encoding="utf-8")
            written.append(str(out / "processor_config.json"))
        return written

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={type(v).__name__}" for k, v in (("tokenizer", self.tokenizer),
                          ("image_processor", self.image_processor), ("feature_extractor", self.feature_extractor))
                          if v is not None)
        return f"SwiftProcessor({self.processor_class or '?'}: {parts}, video_processor=None)"


def _flatten(images: Any) -> list[Any]:
    if isinstance(images, (list, tuple)):
        return [x for item in images for x in _flatten(item)]
    return [images]


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SwiftError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}).") from e


def _needs_torchvision(error: BaseException) -> bool:
    from transformers.utils import is_torchvision_available

    text = f"{type(error).__name__}: {error}"
    return not is_torchvision_available() and ("torchvision" in text.lower() or "VIDEO_PROCESSOR_MAPPING" in text)


def load_processor(model_dir: str | os.PathLike, trust_remote_code: bool = False) -> Any:
    """The processor of a local model folder: transformers' own, or a `SwiftProcessor` where that cannot build.

    Args:
        model_dir: A local model folder.
        trust_remote_code: Allow processor code shipped with the model.

    Returns:
        The official processor (e.g. `LlavaProcessor`, `Qwen2AudioProcessor`); for a folder without processor
        files, the tokenizer; for Qwen2-VL, Qwen2.5-VL and InternVL without torchvision, a `SwiftProcessor`.
    """
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    except (ImportError, AttributeError, ValueError) as e:
        if not _needs_torchvision(e):
            raise
        return _fallback_processor(Path(model_dir), trust_remote_code)


def _fallback_processor(folder: Path, trust_remote_code: bool) -> SwiftProcessor:
    from transformers import AutoFeatureExtractor, AutoImageProcessor, AutoTokenizer

    global _fallback_logged
    pre = _read_json(folder / "preprocessor_config.json")
    proc_cfg = _read_json(folder / "processor_config.json")
    processor_class = proc_cfg.get("processor_class") or pre.get("processor_class")
    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    image_processor = feature_extractor = None
    if "feature_extractor_type" in pre:
        feature_extractor = AutoFeatureExtractor.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    else:
        image_processor = AutoImageProcessor.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    kwargs = {k: v for k, v in proc_cfg.items() if k != "processor_class" and k not in _SUB_PROCESSOR_KEYS}
    if not _fallback_logged:
        logger.info("torchvision is not installed, so transformers cannot build %s (its video processor needs "
                    "it): using the tokenizer and the PIL image processor; video frames are processed by SwiftLab",
                    processor_class or "the processor")
        _fallback_logged = True
    return SwiftProcessor(tokenizer, image_processor, feature_extractor=feature_extractor,
                          chat_template=_chat_template(folder) or tokenizer.chat_template,
                          processor_class=processor_class, processor_kwargs=kwargs, source_dir=folder)


def _chat_template(folder: Path) -> str | None:
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    template = _read_json(folder / "chat_template.json").get("chat_template")
    return template if isinstance(template, str) else None

"""Tiny random-weight multimodal models, saved as folders shaped like the real hub repositories.

Each family uses its real transformers config and model classes, SwiftLab's demo tokenizer plus the family's
special tokens, a ChatML chat template that also renders image/video/audio content items, and the processor
files the hub folders carry (preprocessor_config.json, video_preprocessor_config.json, processor_config.json):

    from swift.models.tiny import make_tiny_model
    path = make_tiny_model("qwen2_vl", "/tmp/tiny-qwen2-vl")
    model, processor, _ = load_model_and_tokenizer(path)

Sizes stay tiny (hidden 32, 2 layers, a 1-2 layer vision or audio encoder, small pixel budgets) so that a build
takes well under a few seconds and the folder is about a megabyte.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
QWEN_MIN_PIXELS = 28 * 28 * 4
QWEN_MAX_PIXELS = 28 * 28 * 64

# Config fields that belong to the language model when passed as overrides to make_tiny_model.
TEXT_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
             "max_position_embeddings", "rms_norm_eps", "hidden_act")
TEXT_DEFAULTS: dict[str, Any] = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                 "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 4096}


@dataclass(frozen=True)
class MMFamily:
    """How one multimodal family's tiny folder is built.

    Attributes:
        config_cls / model_cls / processor_cls: transformers class names (the processor class is the one the
            hub folder names; it may not build here, see `swift.models.processor`).
        text_model_type: model_type of the language model's sub-config.
        tokens: Special tokens added to the demo tokenizer (as special added tokens).
        named_tokens: Special tokens that the tokenizer also exposes as attributes (transformers'
            `extra_special_tokens`, e.g. InternVL's `tokenizer.context_image_token`).
        placeholders: Modality -> the text the chat template writes for a content item of that type
            (`{n}` = the item's 1-based number among its modality).
    """

    config_cls: str
    model_cls: str
    processor_cls: str
    text_model_type: str
    tokens: tuple[str, ...] = ()
    named_tokens: dict[str, str] = field(default_factory=dict)
    placeholders: dict[str, str] = field(default_factory=dict)


_QWEN_VL_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
_QWEN_VL_PLACEHOLDERS = {"image": "<|vision_start|><|image_pad|><|vision_end|>",
                         "video": "<|vision_start|><|video_pad|><|vision_end|>"}

FAMILIES: dict[str, MMFamily] = {
    "qwen2_vl": MMFamily("Qwen2VLConfig", "Qwen2VLForConditionalGeneration", "Qwen2VLProcessor", "qwen2_vl_text",
                         _QWEN_VL_TOKENS, placeholders=_QWEN_VL_PLACEHOLDERS),
    "qwen2_5_vl": MMFamily("Qwen2_5_VLConfig", "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor",
                           "qwen2_5_vl_text", _QWEN_VL_TOKENS, placeholders=_QWEN_VL_PLACEHOLDERS),
    "qwen2_audio": MMFamily("Qwen2AudioConfig", "Qwen2AudioForConditionalGeneration", "Qwen2AudioProcessor",
                            "qwen2", ("<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>"),
                            placeholders={"audio": "Audio {n}: <|audio_bos|><|AUDIO|><|audio_eos|>\n"}),
    "llava": MMFamily("LlavaConfig", "LlavaForConditionalGeneration", "LlavaProcessor", "llama", ("<image>",),
                      placeholders={"image": "<image>"}),
    "llava_next": MMFamily("LlavaNextConfig", "LlavaNextForConditionalGeneration", "LlavaNextProcessor", "mistral",
                           ("<image>",), placeholders={"image": "<image>"}),
    "internvl": MMFamily("InternVLConfig", "InternVLForConditionalGeneration", "InternVLProcessor", "qwen2",
                         named_tokens={"start_image_token": "<img>", "end_image_token": "</img>",
                                       "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"},
                         placeholders={"image": "<IMG_CONTEXT>"}),
}
MM_ARCHS = tuple(FAMILIES)


def mm_chat_template(placeholders: dict[str, str]) -> str:
    """The demo ChatML template, extended to content lists: text items are written as is, media items
    ({"type": "image"}, {"type": "video"}, {"type": "audio"}, or items holding that key) as their placeholder.

    String contents render exactly as the demo template renders them.
    """
    def literal(text: str, modality: str) -> str:
        parts = [json.dumps(p) for p in text.split("{n}")]
        return f" + (counts.{modality} | string) + ".join(parts)

    branches = []
    for modality, text in placeholders.items():
        test = f"item['type'] == '{modality}' or '{modality}' in item or '{modality}_url' in item"
        branches.append(f"{{% {'if' if not branches else 'elif'} {test} %}}"
                        f"{{% set counts.{modality} = counts.{modality} + 1 %}}{{{{ {literal(text, modality)} }}}}")
    text_branch = ("{% elif" if branches else "{% if") + " 'text' in item %}{{ item['text'] }}{% endif %}"
    return (
        "{% set counts = namespace(image=0, video=0, audio=0) %}"
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
        "{{ '<|im_start|>' + message['role'] + '\\n' }}"
        "{% if message['content'] is string %}{{ message['content'] }}"
        "{% else %}{% for item in message['content'] %}" + "".join(branches) + text_branch + "{% endfor %}{% endif %}"
        "{{ '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )


def build_tokenizer(arch: str, tokenizer_dir: str | os.PathLike) -> Any:
    """The demo tokenizer with `arch`'s special tokens and the multimodal ChatML template."""
    from transformers import AutoTokenizer

    fam = FAMILIES[arch]
    kwargs = {"extra_special_tokens": dict(fam.named_tokens)} if fam.named_tokens else {}
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir), **kwargs)
    if fam.tokens:
        tok.add_tokens(list(fam.tokens), special_tokens=True)
    tok.chat_template = mm_chat_template(fam.placeholders)
    return tok


def _split_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    text = {**TEXT_DEFAULTS, **overrides.pop("text_config", {})}
    sub = {**overrides.pop("vision_config", {}), **overrides.pop("audio_config", {})}
    for key in TEXT_KEYS:
        if key in overrides:
            text[key] = overrides.pop(key)
    return text, sub, overrides


def _mrope_section(text: dict[str, Any]) -> list[int]:
    half = text["hidden_size"] // text["num_attention_heads"] // 2
    return [half - 2 * (half // 4), half // 4, half // 4]


def config_kwargs(arch: str, tok: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of the family's config class for a tiny model on tokenizer `tok`."""
    fam = FAMILIES[arch]
    text, sub, top = _split_overrides(dict(overrides))
    ids = tok.convert_tokens_to_ids
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    text.update(model_type=fam.text_model_type, vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=pad)
    hidden = text["hidden_size"]
    if arch in ("qwen2_vl", "qwen2_5_vl"):
        text.setdefault("rope_parameters", {"rope_type": "default", "rope_theta": 1000000.0,
                                            "mrope_section": _mrope_section(text)})
        text.pop("model_type")
        if arch == "qwen2_vl":
            vision = {"depth": 1, "embed_dim": 32, "hidden_size": hidden, "num_heads": 2, "mlp_ratio": 2}
        else:
            vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                      "out_hidden_size": hidden, "fullatt_block_indexes": [1], "window_size": 112}
        kw = {"text_config": text, "vision_config": {**vision, **sub}, "image_token_id": ids("<|image_pad|>"),
              "video_token_id": ids("<|video_pad|>"), "vision_start_token_id": ids("<|vision_start|>"),
              "vision_end_token_id": ids("<|vision_end|>")}
    elif arch == "qwen2_audio":
        audio = {"encoder_layers": 2, "encoder_attention_heads": 2, "encoder_ffn_dim": 64, "d_model": 32,
                 "num_mel_bins": 128, "max_source_positions": 1500}
        kw = {"text_config": text, "audio_config": {**audio, **sub}, "audio_token_index": ids("<|AUDIO|>")}
    elif arch in ("llava", "llava_next"):
        size = 56 if arch == "llava" else 28
        vision = {"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                  "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": size, "patch_size": 14,
                  "projection_dim": 32}
        vision.update(sub)
        kw = {"text_config": text, "vision_config": vision, "image_token_index": ids("<image>"),
              "image_seq_length": (vision["image_size"] // vision["patch_size"]) ** 2}
        if arch == "llava_next":
            kw["image_grid_pinpoints"] = [[size, 2 * size], [2 * size, size], [2 * size, 2 * size]]
    elif arch == "internvl":
        vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                  "image_size": 56, "patch_size": 14}
        vision.update(sub)
        kw = {"text_config": text, "vision_config": vision, "image_token_id": ids("<IMG_CONTEXT>"),
              "image_seq_length": int((vision["image_size"] // vision["patch_size"]) ** 2 * 0.25)}
    else:  # pragma: no cover - FAMILIES and this function list the same archs
        raise ValueError(arch)
    return {**kw, **top}


def processor_files(arch: str, config: Any) -> dict[str, dict[str, Any]]:
    """The processor JSON files of the hub folder of `arch` (file name -> content), sized for `config`."""
    fam = FAMILIES[arch]
    files: dict[str, dict[str, Any]] = {}
    if arch in ("qwen2_vl", "qwen2_5_vl"):
        vc = config.vision_config
        common = {"min_pixels": QWEN_MIN_PIXELS, "max_pixels": QWEN_MAX_PIXELS, "patch_size": vc.patch_size,
                  "temporal_patch_size": vc.temporal_patch_size, "merge_size": vc.spatial_merge_size,
                  "image_mean": CLIP_MEAN, "image_std": CLIP_STD}
        files["preprocessor_config.json"] = {**common, "image_processor_type": "Qwen2VLImageProcessor"}
        files["video_preprocessor_config.json"] = {
            **common, "do_sample_frames": False, "min_frames": 4, "max_frames": 768,
            "video_processor_type": "Qwen2VLVideoProcessor"}
    elif arch == "qwen2_audio":
        from transformers import WhisperFeatureExtractor

        fe = WhisperFeatureExtractor(feature_size=config.audio_config.num_mel_bins, sampling_rate=16000,
                                     return_attention_mask=True)
        files["preprocessor_config.json"] = fe.to_dict()
    elif arch in ("llava", "llava_next"):
        vc = config.vision_config
        size = int(vc.image_size)
        ip = {"do_center_crop": True, "do_convert_rgb": True, "do_normalize": True, "do_rescale": True,
              "do_resize": True, "crop_size": {"height": size, "width": size}, "size": {"shortest_edge": size},
              "image_mean": CLIP_MEAN, "image_std": CLIP_STD, "resample": 3, "rescale_factor": 1 / 255,
              "image_processor_type": "CLIPImageProcessor"}
        if arch == "llava_next":
            ip.update(image_processor_type="LlavaNextImageProcessor", do_pad=True,
                      image_grid_pinpoints=config.image_grid_pinpoints)
        files["preprocessor_config.json"] = ip
        files["processor_config.json"] = {"image_token": "<image>", "num_additional_image_tokens": 1,
                                          "patch_size": int(vc.patch_size), "vision_feature_select_strategy":
                                          config.vision_feature_select_strategy}
    elif arch == "internvl":
        size = int(config.vision_config.image_size[0])
        common = {"do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
                  "image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD, "resample": 3, "rescale_factor": 1 / 255,
                  "size": {"height": size, "width": size}}
        files["preprocessor_config.json"] = {**common, "crop_to_patches": False, "min_patches": 1, "max_patches": 4,
                                             "image_processor_type": "GotOcr2ImageProcessor"}
        files["video_preprocessor_config.json"] = {**common, "video_processor_type": "InternVLVideoProcessor"}
        files["processor_config.json"] = {"image_seq_length": int(config.image_seq_length)}
    for content in files.values():
        content["processor_class"] = fam.processor_cls
    return files


def make_tiny_mm_model(arch: str, out_dir: str | os.PathLike, *, tokenizer_dir: str | os.PathLike, seed: int = 0,
                       **overrides: Any) -> str:
    """Build and save a tiny random-weight model of a multimodal family (see `make_tiny_model`).

    Overrides: `text_config=` / `vision_config=` / `audio_config=` dicts change those sub-configs; the
    language-model keys in TEXT_KEYS (hidden_size, num_hidden_layers, ...) go to the text config; any other key
    is a field of the top-level config.
    """
    import torch
    import transformers
    from transformers import GenerationConfig

    if arch not in FAMILIES:
        raise ValueError(f"Unknown multimodal tiny model arch '{arch}'; choose one of {sorted(FAMILIES)}.")
    fam = FAMILIES[arch]
    tok = build_tokenizer(arch, tokenizer_dir)
    config = getattr(transformers, fam.config_cls)(**config_kwargs(arch, tok, overrides))
    config.dtype = torch.float32
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = getattr(transformers, fam.model_cls)(config)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    eos_ids = [i for i in dict.fromkeys([tok.eos_token_id, tok.pad_token_id]) if i is not None]
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=eos_ids,
                                               pad_token_id=pad, do_sample=False)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    for name, content in processor_files(arch, config).items():
        (out / name).write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return str(out.resolve())

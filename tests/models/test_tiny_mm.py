"""Tiny multimodal models: folders shaped like the hub's, loadable by SwiftLab and plain transformers, and each
trains (forward with labels, gradients reaching its encoder) and generates on a really processed input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoModelForMultimodalLM, AutoTokenizer

from swift.models.loader import load_model_and_tokenizer, model_info
from swift.models.tiny import DEMO_TOKENIZER_DIR, make_tiny_model
from swift.models.tiny_mm import FAMILIES, MM_ARCHS, mm_chat_template

# arch -> (model class, media kind, the placeholder its chat template writes, token ids in config.json)
EXPECTED = {
    "qwen2_vl": ("Qwen2VLForConditionalGeneration", "image", "<|vision_start|><|image_pad|><|vision_end|>",
                 {"image_token_id": "<|image_pad|>", "video_token_id": "<|video_pad|>",
                  "vision_start_token_id": "<|vision_start|>", "vision_end_token_id": "<|vision_end|>"}),
    "qwen2_5_vl": ("Qwen2_5_VLForConditionalGeneration", "image", "<|vision_start|><|image_pad|><|vision_end|>",
                   {"image_token_id": "<|image_pad|>", "video_token_id": "<|video_pad|>"}),
    "qwen2_audio": ("Qwen2AudioForConditionalGeneration", "audio", "Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n",
                    {"audio_token_index": "<|AUDIO|>"}),
    "llava": ("LlavaForConditionalGeneration", "image", "<image>", {"image_token_index": "<image>"}),
    "llava_next": ("LlavaNextForConditionalGeneration", "image", "<image>", {"image_token_index": "<image>"}),
    "internvl": ("InternVLForConditionalGeneration", "image", "<IMG_CONTEXT>", {"image_token_id": "<IMG_CONTEXT>"}),
}
ENCODER = {"qwen2_vl": "model.visual.", "qwen2_5_vl": "model.visual.", "qwen2_audio": "model.audio_tower.",
           "llava": "model.vision_tower.", "llava_next": "model.vision_tower.", "internvl": "model.vision_tower."}


@pytest.fixture(scope="module")
def mm_dirs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tiny-mm")
    return {arch: make_tiny_model(arch, root / arch) for arch in MM_ARCHS}


def image(seed: int = 0, size: tuple[int, int] = (90, 60)) -> Image.Image:
    rng = np.random.RandomState(seed)
    return Image.fromarray((rng.rand(size[1], size[0], 3) * 255).astype("uint8"))


def audio(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32")


def processed(arch: str, processor, text: str = "What is this?"):
    kind = EXPECTED[arch][1]
    messages = [{"role": "user", "content": [{"type": kind}, {"type": "text", "text": text}]},
                {"role": "assistant", "content": "A test."}]
    prompt = processor.apply_chat_template(messages, tokenize=False)
    media = {"audio": [audio()]} if kind == "audio" else {"images": [image()]}
    return prompt, processor(text=[prompt], return_tensors="pt", **media)


@pytest.mark.parametrize("arch", MM_ARCHS)
def test_folder_is_shaped_like_the_hub_one(arch, mm_dirs):
    folder = Path(mm_dirs[arch])
    files = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
            "chat_template.jinja", "preprocessor_config.json"} <= files
    if arch in ("qwen2_vl", "qwen2_5_vl", "internvl"):
        assert "video_preprocessor_config.json" in files
    if arch in ("llava", "llava_next", "internvl"):
        assert "processor_config.json" in files
    assert sum(p.stat().st_size for p in folder.iterdir()) < 3_000_000
    pre = json.loads((folder / "preprocessor_config.json").read_text())
    assert pre["processor_class"] == FAMILIES[arch].processor_cls
    cfg = json.loads((folder / "config.json").read_text())
    cls, _, _, token_fields = EXPECTED[arch]
    assert cfg["architectures"] == [cls] and cfg["model_type"] == arch
    tok = AutoTokenizer.from_pretrained(str(folder))
    for key, token in token_fields.items():
        assert cfg[key] == tok.convert_tokens_to_ids(token) != tok.unk_token_id, key
        assert tok.tokenize(f"a{token}b")[1] == token  # one special token, never split
    assert cfg["text_config"]["vocab_size"] == len(tok)
    assert cfg["text_config"]["eos_token_id"] == tok.convert_tokens_to_ids("<|im_end|>")
    assert cfg["text_config"]["hidden_size"] == 32 and cfg["text_config"]["num_hidden_layers"] == 2
    info = model_info(folder)
    assert info["is_multimodal"] and info["has_chat_template"]


@pytest.mark.parametrize("arch", MM_ARCHS)
def test_trains_and_generates_on_a_processed_input(arch, mm_dirs):
    model, processor, model_dir = load_model_and_tokenizer(mm_dirs[arch])
    assert type(model).__name__ == EXPECTED[arch][0] and model_dir == mm_dirs[arch]
    assert processor.tokenizer.pad_token is not None
    prompt, inputs = processed(arch, processor)
    assert EXPECTED[arch][2] + "What is this?" in prompt
    labels = inputs["input_ids"].clone()
    out = model(**inputs, labels=labels)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    encoder_grads = [p.grad for n, p in model.named_parameters() if n.startswith(ENCODER[arch]) and p.grad is not None]
    assert encoder_grads and any(g.abs().sum() > 0 for g in encoder_grads), "the media never reached the model"
    model.zero_grad()
    with torch.no_grad():
        gen = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert gen.shape[1] > inputs["input_ids"].shape[1]


@pytest.mark.parametrize("arch", MM_ARCHS)
def test_plain_transformers_loads_the_same_model(arch, mm_dirs):
    auto = AutoModelForMultimodalLM if arch == "qwen2_audio" else AutoModelForImageTextToText
    plain = auto.from_pretrained(mm_dirs[arch]).eval()
    ours, processor, _ = load_model_and_tokenizer(mm_dirs[arch])
    assert type(plain) is type(ours)
    _, inputs = processed(arch, processor)
    with torch.no_grad():
        torch.testing.assert_close(plain(**inputs).logits, ours.eval()(**inputs).logits)


def test_media_tokens_are_expanded_per_family(mm_dirs):
    """The processors expand each placeholder into as many tokens as the encoder gives features."""
    for arch in MM_ARCHS:
        model, processor, _ = load_model_and_tokenizer(mm_dirs[arch])
        _, inputs = processed(arch, processor)
        cfg = model.config
        token_id = next(getattr(cfg, k) for k in ("image_token_id", "image_token_index", "audio_token_index")
                        if getattr(cfg, k, None) is not None)
        assert int((inputs["input_ids"] == token_id).sum()) > 1, arch


def test_chat_template_renders_strings_like_the_demo_template():
    demo = AutoTokenizer.from_pretrained(str(DEMO_TOKENIZER_DIR))
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "again"}]
    for placeholders in ({}, FAMILIES["qwen2_vl"].placeholders, FAMILIES["qwen2_audio"].placeholders):
        template = mm_chat_template(placeholders)
        for gen in (False, True):
            assert demo.apply_chat_template(messages, chat_template=template, tokenize=False,
                                            add_generation_prompt=gen) == \
                demo.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)


def test_chat_template_numbers_items_and_renders_every_modality():
    demo = AutoTokenizer.from_pretrained(str(DEMO_TOKENIZER_DIR))
    template = mm_chat_template({**FAMILIES["qwen2_vl"].placeholders, **FAMILIES["qwen2_audio"].placeholders})
    messages = [{"role": "system", "content": "S"},
                {"role": "user", "content": [{"type": "audio", "audio": "a.wav"}, {"type": "image"},
                                             {"type": "text", "text": "and"}, {"type": "video"},
                                             {"type": "audio_url", "audio_url": "b.wav"}]}]
    text = demo.apply_chat_template(messages, chat_template=template, tokenize=False)
    assert text == ("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n"
                    "Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n<|vision_start|><|image_pad|><|vision_end|>and"
                    "<|vision_start|><|video_pad|><|vision_end|>Audio 2: <|audio_bos|><|AUDIO|><|audio_eos|>\n"
                    "<|im_end|>\n")


def test_overrides_reach_the_sub_configs(tmp_path):
    path = make_tiny_model("qwen2_vl", tmp_path / "m", hidden_size=64, num_hidden_layers=1,
                           vision_config={"depth": 2})
    cfg = json.loads((Path(path) / "config.json").read_text())
    text, vision = cfg["text_config"], cfg["vision_config"]
    assert (text["hidden_size"], text["num_hidden_layers"], vision["depth"], vision["hidden_size"]) == (64, 1, 2, 64)
    assert sum(text["rope_parameters"]["mrope_section"]) == 64 // 4 // 2
    model, processor, _ = load_model_and_tokenizer(path)
    _, inputs = processed("qwen2_vl", processor)
    assert torch.isfinite(model(**inputs, labels=inputs["input_ids"]).loss)


def test_same_seed_same_weights(tmp_path):
    a = make_tiny_model("llava", tmp_path / "a", seed=1)
    b = make_tiny_model("llava", tmp_path / "b", seed=1)
    c = make_tiny_model("llava", tmp_path / "c", seed=2)
    weights = [(Path(p) / "model.safetensors").read_bytes() for p in (a, b, c)]
    assert weights[0] == weights[1] != weights[2]


def test_unknown_arch_names_the_multimodal_ones(tmp_path):
    with pytest.raises(ValueError, match="qwen2_vl"):
        make_tiny_model("gpt9-vision", tmp_path / "x")

"""load_processor: the official processor where it builds, SwiftProcessor where transformers needs torchvision."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor
from transformers.utils import is_torchvision_available

from swift.models import processor as processor_mod
from swift.models.loader import load_tokenizer
from swift.models.processor import SwiftProcessor, load_processor
from swift.models.tiny import make_tiny_model
from swift.utils.errors import SwiftError

OFFICIAL = {"llava": "LlavaProcessor", "llava_next": "LlavaNextProcessor", "qwen2_audio": "Qwen2AudioProcessor"}
FALLBACK = ("qwen2_vl", "qwen2_5_vl", "internvl")
needs_no_torchvision = pytest.mark.skipif(is_torchvision_available(), reason="the fallback is for installs "
                                          "without torchvision")


@pytest.fixture(scope="module")
def mm_dirs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tiny-mm-proc")
    return {arch: make_tiny_model(arch, root / arch) for arch in (*OFFICIAL, *FALLBACK)}


def image(seed: int = 0, size: tuple[int, int] = (90, 60)) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(size[1], size[0], 3) * 255).astype("uint8"))


@pytest.mark.parametrize("arch", list(OFFICIAL))
def test_official_processor_where_it_builds(arch, mm_dirs):
    proc = load_processor(mm_dirs[arch])
    assert type(proc).__name__ == OFFICIAL[arch]
    assert proc.chat_template == (Path(mm_dirs[arch]) / "chat_template.jinja").read_text()
    if arch != "qwen2_audio":  # processor_config.json reaches the processor
        assert proc.patch_size == 14 and proc.num_additional_image_tokens == 1


@needs_no_torchvision
@pytest.mark.parametrize("arch", FALLBACK)
def test_fallback_without_torchvision(arch, mm_dirs):
    proc = load_processor(mm_dirs[arch])
    assert isinstance(proc, SwiftProcessor)
    assert type(proc.image_processor).__name__.endswith("Pil")
    assert proc.video_processor is None and proc.feature_extractor is None
    assert proc.chat_template == (Path(mm_dirs[arch]) / "chat_template.jinja").read_text()
    assert proc.processor_class == {"qwen2_vl": "Qwen2VLProcessor", "qwen2_5_vl": "Qwen2_5_VLProcessor",
                                    "internvl": "InternVLProcessor"}[arch]
    tok = load_tokenizer(mm_dirs[arch])  # the loader's path: same kind, with a pad token
    assert isinstance(tok, SwiftProcessor) and tok.tokenizer.pad_token is not None


@needs_no_torchvision
def test_fallback_is_logged_once(mm_dirs, monkeypatch):
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("swift.models")
    logger.addHandler(handler)
    monkeypatch.setattr(processor_mod, "_fallback_logged", False)
    try:
        load_processor(mm_dirs["qwen2_vl"])
        load_processor(mm_dirs["qwen2_5_vl"])
    finally:
        logger.removeHandler(handler)
    hits = [r for r in records if "torchvision" in r.getMessage()]
    assert len(hits) == 1 and hits[0].levelno == logging.INFO and "SwiftLab" in hits[0].getMessage()


@needs_no_torchvision
def test_qwen_vl_call_expands_images_like_the_official_processor(mm_dirs):
    proc = load_processor(mm_dirs["qwen2_vl"])
    images = [image(0, (90, 60)), image(1, (200, 120))]
    text = ["a <|vision_start|><|image_pad|><|vision_end|> b <|vision_start|><|image_pad|><|vision_end|>"]
    out = proc(text=text, images=images, return_tensors="pt")
    ref = proc.image_processor(images=images, return_tensors="pt")
    torch.testing.assert_close(out["pixel_values"], ref["pixel_values"])
    assert torch.equal(out["image_grid_thw"], ref["image_grid_thw"])
    pad = proc.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    n_tokens = int(ref["image_grid_thw"].prod(-1).sum()) // 4
    assert int((out["input_ids"] == pad).sum()) == n_tokens
    assert torch.equal(out["mm_token_type_ids"], (out["input_ids"] == pad).long())
    # Pixel budget: a large image stays within max_pixels (28*28*64), a tiny one is scaled up to min_pixels.
    big = proc.image_processor(images=[image(2, (800, 600))], return_tensors="pt")["image_grid_thw"][0]
    small = proc.image_processor(images=[image(3, (20, 20))], return_tensors="pt")["image_grid_thw"][0]
    assert int(big.prod()) * 14 * 14 <= 28 * 28 * 64 and int(small.prod()) * 14 * 14 >= 28 * 28 * 4


@needs_no_torchvision
def test_internvl_call_wraps_each_image_in_img_tokens(mm_dirs):
    proc = load_processor(mm_dirs["internvl"])
    out = proc(text="x <IMG_CONTEXT> y", images=image(), return_tensors="pt")
    tiles = out["pixel_values"].shape[0]
    assert out["pixel_values"].shape[1:] == (3, 56, 56) and tiles > 1  # crop_to_patches: tiles + thumbnail
    text = proc.tokenizer.decode(out["input_ids"][0])
    assert text == "x <img>" + "<IMG_CONTEXT>" * (4 * tiles) + "</img> y"


@needs_no_torchvision
def test_call_rejects_mismatched_images_and_videos(mm_dirs):
    proc = load_processor(mm_dirs["qwen2_vl"])
    with pytest.raises(SwiftError, match="1 image placeholder.*2 image"):
        proc(text="<|image_pad|>", images=[image(), image()])
    with pytest.raises(SwiftError, match="video"):
        proc(text="<|video_pad|>", videos=[[image(), image()]])


@needs_no_torchvision
@pytest.mark.parametrize("arch", ["qwen2_vl", "internvl"])
def test_save_pretrained_round_trip(arch, mm_dirs, tmp_path):
    src = Path(mm_dirs[arch])
    proc = load_processor(src)
    if arch == "qwen2_vl":  # a changed setting is what gets saved
        proc.image_processor.size.longest_edge = 28 * 28 * 16
    written = proc.save_pretrained(tmp_path / "saved")
    saved = tmp_path / "saved"
    names = {Path(p).name for p in written}
    assert {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "preprocessor_config.json"} <= names
    pre = json.loads((saved / "preprocessor_config.json").read_text())
    # The names the official AutoProcessor dispatches on (not the PIL backend's class name).
    assert pre["processor_class"] == proc.processor_class
    assert pre["image_processor_type"] == {"qwen2_vl": "Qwen2VLImageProcessor",
                                           "internvl": "GotOcr2ImageProcessor"}[arch]
    for name in ("video_preprocessor_config.json", "processor_config.json"):
        if (src / name).is_file():
            assert (saved / name).read_bytes() == (src / name).read_bytes()
    again = load_processor(saved)  # no config.json in the folder: the processor files alone are enough
    assert isinstance(again, SwiftProcessor) and again.chat_template == proc.chat_template
    assert again.tokenizer.get_vocab() == proc.tokenizer.get_vocab()
    assert again.image_processor.to_dict() == proc.image_processor.to_dict()
    assert again.processor_kwargs == proc.processor_kwargs
    assert type(AutoImageProcessor.from_pretrained(str(saved))) is type(proc.image_processor)
    token = proc.image_token
    a = proc(text=f"q {token}", images=[image(5, (300, 200))], return_tensors="pt")
    b = again(text=f"q {token}", images=[image(5, (300, 200))], return_tensors="pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@needs_no_torchvision
def test_save_into_its_own_folder(mm_dirs, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(mm_dirs["qwen2_vl"], folder)
    proc = load_processor(folder)
    before = (folder / "video_preprocessor_config.json").read_bytes()
    proc.save_pretrained(folder)
    assert (folder / "video_preprocessor_config.json").read_bytes() == before
    assert isinstance(load_processor(folder), SwiftProcessor)


def test_text_folder_gives_the_tokenizer(tiny_qwen2_dir):
    tok = load_processor(tiny_qwen2_dir)
    assert type(tok).__name__ == "Qwen2Tokenizer"

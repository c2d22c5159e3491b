"""Tiny multimodal models (built once per session) and media files for the multimodal tests."""
from __future__ import annotations

import json
import math
import wave
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_qwen2_vl_dir(tmp_path_factory) -> str:
    from swift.models.tiny import make_tiny_model

    return make_tiny_model("qwen2_vl", tmp_path_factory.mktemp("tiny-qwen2-vl"))


@pytest.fixture(scope="session")
def tiny_qwen2_audio_dir(tmp_path_factory) -> str:
    from swift.models.tiny import make_tiny_model

    return make_tiny_model("qwen2_audio", tmp_path_factory.mktemp("tiny-qwen2-audio"))


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory) -> str:
    from swift.models.tiny import make_tiny_model

    return make_tiny_model("llava", tmp_path_factory.mktemp("tiny-llava"))


def write_image(path: Path, seed: int, size: tuple[int, int] = (64, 48)) -> str:
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype("uint8")).save(path)
    return str(path)


def write_wav(path: Path, seconds: float = 0.5, freq: float = 440.0, rate: int = 16000) -> str:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (np.sin(2 * math.pi * freq * t) * 0.3 * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return str(path)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    """Six small images (img0..img5.png), two 3-frame videos as frame folders, two wav files."""
    d = tmp_path_factory.mktemp("media")
    for i in range(6):
        write_image(d / f"img{i}.png", i, size=(56 + 8 * (i % 3), 56))
    for v in range(2):
        (d / f"vid{v}").mkdir()
        for f in range(3):
            write_image(d / f"vid{v}" / f"{f:03d}.png", 100 + 10 * v + f, size=(56, 56))
    write_wav(d / "a0.wav", 0.5, 440.0)
    write_wav(d / "a1.wav", 0.8, 880.0)
    return d


def vl_rows(media: Path, n: int = 12) -> list[dict]:
    """Image (and some video) chat rows with answers that depend on the picture."""
    rows = []
    for i in range(n):
        k = i % 6
        if i % 4 == 3:
            rows.append({"messages": [{"role": "user", "content": "<video>What happens in the video?"},
                                      {"role": "assistant", "content": f"Video {i % 2} plays."}],
                         "videos": [str(media / f"vid{i % 2}")]})
        else:
            rows.append({"messages": [{"role": "user", "content": "<image>Which picture is this?"},
                                      {"role": "assistant", "content": f"Picture number {k}."}],
                         "images": [str(media / f"img{k}.png")]})
    return rows


def audio_rows(media: Path, n: int = 8) -> list[dict]:
    rows = []
    for i in range(n):
        rows.append({"messages": [{"role": "user", "content": "<audio>What tone is this?"},
                                  {"role": "assistant", "content": "High." if i % 2 else "Low."}],
                     "audios": [str(media / f"a{i % 2}.wav")]})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)

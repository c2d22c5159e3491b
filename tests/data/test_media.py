"""swift.data.media: images, videos and audio from paths, bytes, base64, data URIs, hub dicts and decoded objects.

Everything is written into tmp_path by the tests (PIL, `wave`, PyAV, soundfile); URLs are never fetched.
"""
from __future__ import annotations

import base64
import io
import sys
import wave

import numpy as np
import pytest
from PIL import Image

from swift.data.media import MediaError, load_audio, load_image, load_video, media_meta, resample
from swift.utils.errors import MissingExtraError


def png_bytes(color=(10, 200, 30), size=(8, 6), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def png(tmp_path):
    path = tmp_path / "cat.png"
    path.write_bytes(png_bytes())
    return path


def write_wav(path, samples: np.ndarray, rate: int, width: int) -> None:
    """samples in [-1, 1], shape (n,) or (n, channels), written as PCM with `width` bytes per sample."""
    frames = samples if samples.ndim == 2 else samples[:, None]
    if width == 1:
        data = np.round(frames * 127 + 128).astype(np.uint8).tobytes()
    elif width == 2:
        data = np.round(frames * 32767).astype("<i2").tobytes()
    elif width == 3:
        ints = np.round(frames * 8388607).astype("<i4")
        data = ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    else:
        data = np.round(frames * 2147483647).astype("<i4").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(frames.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data)


def tone(n: int, rate: int, freq: float = 200.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.float32)


# ----------------------------------------------------------------------------------------------- images
def test_image_from_every_form(png):
    data = png.read_bytes()
    b64 = base64.b64encode(data).decode()
    forms = [str(png), f"file://{png}", data, {"bytes": data, "path": "ignored.png"}, {"bytes": None, "path": str(png)},
             b64, f"data:image/png;base64,{b64}", Image.open(png), {"bytes": b64}]
    for item in forms:
        img = load_image(item)
        assert img.mode == "RGB" and img.size == (8, 6) and img.getpixel((0, 0)) == (10, 200, 30), item


def test_image_modes_become_rgb_and_transparency_white(tmp_path):
    (tmp_path / "clear.png").write_bytes(png_bytes((255, 0, 0, 0), mode="RGBA"))
    assert load_image(str(tmp_path / "clear.png")).getpixel((1, 1)) == (255, 255, 255)
    assert load_image(Image.new("L", (3, 3), 7)).getpixel((0, 0)) == (7, 7, 7)


def test_missing_image_names_the_path(tmp_path):
    path = str(tmp_path / "nope.jpg")
    with pytest.raises(MediaError, match="no such file") as e:
        load_image(path)
    assert (e.value.kind, e.value.path, e.value.modality) == ("missing", path, "image")
    assert path in str(e.value)


def test_garbage_and_folders_are_unreadable(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\x00garbage" * 20)
    for item in (str(bad), bad.read_bytes(), str(tmp_path)):
        with pytest.raises(MediaError) as e:
            load_image(item)
        assert e.value.kind == "unreadable"
    assert "bad.jpg" in str(pytest.raises(MediaError, load_image, str(bad)).value)
    with pytest.raises(MediaError, match="not valid base64"):
        load_image("data:image/png;base64,@@@@")


@pytest.mark.parametrize("item", [3, None, "", {"foo": 1}, "data:image/png,plain"])
def test_unsupported_items(item):
    with pytest.raises(MediaError) as e:
        load_image(item)
    assert e.value.kind == "unsupported" and e.value.modality == "image"


def test_image_meta_reads_the_header_and_never_fetches(png, tmp_path):
    assert media_meta(str(png), "image") == {"width": 8, "height": 6, "format": "PNG"}
    assert media_meta("https://example.invalid/cat.jpg", "image") == {"url": "https://example.invalid/cat.jpg"}
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(MediaError, match="bad.png") as e:
        media_meta(str(tmp_path / "bad.png"), "image")
    assert e.value.kind == "unreadable"
    with pytest.raises(ValueError, match="unknown modality"):
        media_meta(str(png), "smell")


# ----------------------------------------------------------------------------------------------- videos
@pytest.fixture
def mp4(tmp_path):
    """3 s at 10 fps, 32x32; frame i is gray level 8 * i."""
    av = pytest.importorskip("av", reason="PyAV is not installed (pip install 'swiftlab[video]')")
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for i in range(30):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 8 * i, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def gray(img) -> int:
    return img.getpixel((16, 16))[0]


def test_video_file_sampled_by_fps_and_capped(mp4):
    frames = load_video(str(mp4), fps=2.0)  # 3 s * 2 fps = 6 frames, centred: 2, 7, 12, 17, 22, 27
    assert len(frames) == 6 and all(f.mode == "RGB" and f.size == (32, 32) for f in frames)
    assert [gray(f) for f in frames] == pytest.approx([16, 56, 96, 136, 176, 216], abs=4)
    assert len(load_video(str(mp4), fps=10.0, max_frames=8)) == 8
    assert len(load_video(str(mp4), fps=0.1, min_frames=4)) == 4
    assert len(load_video(mp4.read_bytes(), fps=1.0)) == 3
    assert len(load_video({"bytes": None, "path": str(mp4)}, fps=1.0)) == 3


def test_video_meta_and_unreadable_video(mp4, tmp_path):
    meta = media_meta(str(mp4), "video")
    assert meta["frames"] == 30 and meta["duration"] == pytest.approx(3.0)
    assert (meta["width"], meta["height"]) == (32, 32)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00garbage" * 50)
    for check in (lambda: load_video(str(bad)), lambda: media_meta(str(bad), "video")):
        with pytest.raises(MediaError, match="bad.mp4") as e:
            check()
        assert e.value.kind == "unreadable" and e.value.modality == "video"


def test_video_needs_pyav(mp4, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # import av -> ImportError
    with pytest.raises(MissingExtraError, match=r"swiftlab\[video\]"):
        load_video(str(mp4))


def test_video_as_frames_list_and_folder(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (1, 2, 10, 3):  # natural order: 1, 2, 3, 10
        (folder / f"frame_{i}.png").write_bytes(png_bytes((i, i, i)))
    (folder / "notes.txt").write_text("not a frame")
    assert [f.getpixel((0, 0))[0] for f in load_video(str(folder), max_frames=16)] == [1, 2, 3, 10]
    assert [f.getpixel((0, 0))[0] for f in load_video(str(folder), max_frames=2)] == [2, 10]  # thinned evenly
    one = [png_bytes((5, 5, 5))]
    assert len(load_video(one, min_frames=2)) == 2  # repeated up to min_frames
    assert media_meta(str(folder), "video") == {"frames": 4}
    with pytest.raises(MediaError, match="frame 1") as e:
        load_video([one[0], str(tmp_path / "gone.png")])
    assert e.value.kind == "missing" and e.value.modality == "video"
    with pytest.raises(MediaError, match="no frames"):
        load_video([])
    with pytest.raises(ValueError):
        load_video(one, min_frames=3, max_frames=2)


# ----------------------------------------------------------------------------------------------- audio
@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_wav_pcm_widths_read_and_resampled(tmp_path, width):
    x = tone(800, 8000)
    write_wav(tmp_path / "a.wav", x, 8000, width)
    y = load_audio(str(tmp_path / "a.wav"), sampling_rate=8000)
    assert y.dtype == np.float32 and y.shape == (800,)
    assert np.abs(y - x).max() < (0.02 if width == 1 else 1e-3)
    assert load_audio(str(tmp_path / "a.wav"), sampling_rate=16000).shape == (1600,)


def test_stereo_becomes_mono_and_every_form_loads(tmp_path):
    left, right = tone(1600, 16000), tone(1600, 16000, amp=0.1)
    path = tmp_path / "stereo.wav"
    write_wav(path, np.stack([left, right], 1), 16000, 2)
    expected = (left + right) / 2
    data = path.read_bytes()
    b64 = base64.b64encode(data).decode()
    for item in (str(path), data, {"bytes": data, "path": None}, b64, f"data:audio/wav;base64,{b64}"):
        assert np.abs(load_audio(item) - expected).max() < 1e-3
    assert media_meta(str(path), "audio") == {"sampling_rate": 16000, "channels": 2, "samples": 1600}


def test_arrays_and_hf_dicts():
    x = tone(4000, 8000)
    assert load_audio(x) is not None and np.allclose(load_audio(x), x)  # an array is taken as at the target rate
    assert np.allclose(load_audio(list(map(float, x[:10]))), x[:10])
    y = load_audio({"array": x, "sampling_rate": 8000, "path": "a.flac"}, sampling_rate=16000)
    assert y.shape == (8000,)
    assert np.allclose(load_audio(np.stack([x, x])), x)  # (channels, samples) -> mono
    with pytest.raises(MediaError, match="sampling_rate"):
        load_audio({"array": x})
    assert media_meta({"array": x, "sampling_rate": 8000}, "audio") == {"samples": 4000, "sampling_rate": 8000}


def test_resample_numpy_fallback_is_linear(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.signal", None)
    ramp = np.arange(100, dtype=np.float32)
    up = resample(ramp, 8000, 16000)
    assert up.shape == (200,) and up.dtype == np.float32 and np.allclose(up[:198:2], ramp[:99])
    assert np.allclose(up[1:197:2], ramp[:98] + 0.5)
    assert resample(ramp, 16000, 8000).shape == (50,)


def test_resample_with_scipy_when_installed():
    pytest.importorskip("scipy", reason="scipy is not installed: the numpy fallback is tested instead")
    x = tone(1600, 16000)
    assert resample(x, 16000, 8000).shape == (800,)


def test_soundfile_formats(tmp_path):
    sf = pytest.importorskip("soundfile", reason="soundfile is not installed (pip install 'swiftlab[audio]')")
    x = tone(2205, 44100)
    sf.write(tmp_path / "a.flac", x, 44100)
    y = load_audio(str(tmp_path / "a.flac"), sampling_rate=16000)
    assert y.shape == (800,)
    assert media_meta(str(tmp_path / "a.flac"), "audio") == {"sampling_rate": 44100, "channels": 1, "samples": 2205}
    sf.write(tmp_path / "float.wav", x, 44100, subtype="FLOAT")  # the stdlib reads PCM only: soundfile takes it
    assert np.abs(load_audio(str(tmp_path / "float.wav"), sampling_rate=44100) - x).max() < 1e-6
    (tmp_path / "bad.flac").write_bytes(b"\x00garbage" * 30)
    with pytest.raises(MediaError, match="bad.flac") as e:
        load_audio(str(tmp_path / "bad.flac"))
    assert e.value.kind == "unreadable"


def test_non_wav_audio_needs_soundfile(tmp_path, monkeypatch):
    (tmp_path / "a.mp3").write_bytes(b"ID3" + b"\x00" * 64)
    monkeypatch.setitem(sys.modules, "soundfile", None)
    with pytest.raises(MissingExtraError, match=r"swiftlab\[audio\]"):
        load_audio(str(tmp_path / "a.mp3"))


def test_audio_errors(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"\x00garbage" * 30)
    with pytest.raises(MediaError, match="not a RIFF/WAVE") as e:
        load_audio(str(tmp_path / "bad.wav"))
    assert e.value.kind == "unreadable"
    with pytest.raises(MediaError) as e:
        load_audio(str(tmp_path / "gone.wav"))
    assert e.value.kind == "missing" and "gone.wav" in str(e.value)
    with pytest.raises(MediaError, match="folder"):
        load_audio(str(tmp_path))

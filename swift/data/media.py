"""Load the media items of canonical rows: images, videos and audio.

A row keeps its media RAW (`"images": ["cat.jpg"]`); this module turns one item into pixels or samples when the
encoder needs them. An item may be:
- a local path (`~` is expanded; `file://` is accepted), an http(s) URL (fetched with urllib, `FETCH_TIMEOUT_S`),
  a data URI (`data:image/png;base64,...`) or a raw base64 string;
- bytes, or a Hugging Face datasets dict `{"bytes": ..., "path": ...}` (bytes win when both are set);
- a decoded object: a PIL image; for audio a numpy array / list of samples, or `{"array", "sampling_rate"}`;
- for video also a list of frame items, or a folder of frame images (sorted by name, numbers compared as numbers).

Every failure is a `MediaError` with `kind` "missing" (no such file / HTTP 404), "unreadable" (the bytes are not a
valid image / video / sound, or a fetch failed) or "unsupported" (an item of a form that cannot be loaded). Missing
optional packages raise `MissingExtraError`: PyAV for video files (`pip install 'swiftlab[video]'`), soundfile for
audio that is not PCM WAV (`pip install 'swiftlab[audio]'`). Only the standard library is imported at module level.
"""
from __future__ import annotations

import base64
import binascii
import io
import os
import re
import urllib.error
import urllib.request
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from math import gcd
from typing import TYPE_CHECKING, Any

from swift.utils.errors import MissingExtraError, SwiftError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

MODALITIES = ("image", "video", "audio")
FETCH_TIMEOUT_S = 30.0
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
_BASE64 = re.compile(r"[A-Za-z0-9+/\r\n]+={0,2}")
_MIN_BASE64 = 64  # shorter strings are taken as paths: a real base64 image is far longer


class MediaError(SwiftError):
    """A media item that cannot be loaded.

    Attributes:
        kind: "missing", "unreadable" or "unsupported".
        path: the item, shortened for display (a path, URL, or a description of inline data).
        modality: "image", "video" or "audio".
        reason: the message without the item's name.
        field: the row's field when the caller knows it (e.g. "images"), else None.
    """

    def __init__(self, kind: str, path: str, modality: str, message: str, field: str | None = None):
        self.kind, self.path, self.modality, self.reason, self.field = kind, path, modality, message, field
        super().__init__(f"{modality} {path}: {message}")


def describe(item: Any) -> str:
    """A short, readable name of a media item for messages (long inline data is summarised)."""
    if isinstance(item, str):
        return item if len(item) <= 120 and not item.startswith("data:") else f"<{item[:24]}... ({len(item)} chars)>"
    if isinstance(item, (bytes, bytearray, memoryview)):
        return f"<{len(item)} bytes>"
    if isinstance(item, dict):
        return str(item["path"]) if item.get("path") else f"<object with keys {sorted(map(str, item))}>"
    return f"<list of {len(item)} items>" if isinstance(item, (list, tuple)) else f"<{type(item).__name__}>"


def is_url(text: str) -> bool:
    """True for http(s) URLs."""
    return text.startswith(("http://", "https://"))


def looks_like_base64(text: str) -> bool:
    """True when `text` is long and uses only the base64 alphabet (so it is inline data, not a path)."""
    return len(text) >= _MIN_BASE64 and _BASE64.fullmatch(text) is not None


def _fetch(url: str, modality: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "swiftlab"})
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:
            return response.read()
    except urllib.error.HTTPError as e:
        kind = "missing" if e.code in (404, 410) else "unreadable"
        raise MediaError(kind, url, modality, f"the server answered HTTP {e.code} ({e.reason}); check the URL, or "
                                              "download the file and use its local path") from None
    except (urllib.error.URLError, OSError, ValueError) as e:  # timeouts are OSErrors
        raise MediaError("unreadable", url, modality, f"could not fetch the URL ({getattr(e, 'reason', None) or e}; "
                                                      f"timeout {FETCH_TIMEOUT_S:g} s); check the network (offline "
                                                      "runs need local files), or use a local copy") from None


def _b64decode(text: str, what: str, modality: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise MediaError("unreadable", what, modality, "the inline data is not valid base64") from None


def _source(item: Any, modality: str, fetch: bool = True) -> tuple[str, Any]:
    """("path", local path) or ("bytes", data) for a str / bytes / dict item; ("url", url) when fetch is False.
    A folder is refused unless `modality` is "video" (a folder of frames).

    Raises:
        MediaError: missing file, bad inline data, failed fetch, or an item of another type.
    """
    what = describe(item)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return "bytes", bytes(item)
    if isinstance(item, dict):
        data = item.get("bytes")
        if isinstance(data, (bytes, bytearray, memoryview)) and len(data):
            return "bytes", bytes(data)
        if isinstance(data, str) and data:
            return "bytes", _b64decode(data, what, modality)
        for key in ("path", "url"):
            if isinstance(item.get(key), str) and item[key]:
                return _source(item[key], modality, fetch)
        raise MediaError("unsupported", what, modality, "expected an object with 'bytes' or 'path' (as Hugging Face "
                                                        "datasets store media)")
    if not isinstance(item, str) or not item.strip():
        raise MediaError("unsupported", what, modality, "expected a path, URL, data URI, base64 string, bytes or an "
                                                        "object like {'bytes': ..., 'path': ...}")
    text = item.strip()
    if is_url(text):
        return ("bytes", _fetch(text, modality)) if fetch else ("url", text)
    if text.startswith("data:"):
        head, _, payload = text.partition(",")
        if ";base64" not in head:
            raise MediaError("unsupported", what, modality, "only 'data:<type>;base64,...' URIs are supported")
        return "bytes", _b64decode(payload, what, modality)
    path = os.path.expanduser(text[len("file://"):] if text.startswith("file://") else text)
    if os.path.isdir(path) and modality != "video":
        raise MediaError("unreadable", what, modality, f"this is a folder, not an {modality} file")
    if os.path.exists(path):
        return "path", path
    if looks_like_base64(text):
        return "bytes", _b64decode(text, what, modality)
    raise MediaError("missing", what, modality, "no such file. Relative paths in a dataset file are resolved against "
                                                "the working directory, then the dataset file's folder; check the path")


def _opened(kind: str, src: Any) -> Any:
    """What a reader opens: the path, or the bytes as a file."""
    return src if kind == "path" else io.BytesIO(src)


@contextmanager
def _reading(what: str, modality: str, errors: tuple) -> Iterator[None]:
    """Turn a reader's `errors` into MediaError("unreadable") naming the item."""
    try:
        yield
    except MediaError:
        raise
    except errors as e:
        noun = {"audio": "sound"}.get(modality, modality)
        raise MediaError("unreadable", what, modality, f"cannot read the {modality} ({type(e).__name__}: {e}); "
                                                       f"check that the file is a valid {noun} file, or remove the "
                                                       "row") from None


# ---------------------------------------------------------------------------------------------------- images
def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as e:  # pillow comes with the base install (matplotlib, transformers) and the extra
        raise MissingExtraError("pillow", "multimodal", "loading images") from e
    return Image


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB copy; transparent pixels become white (rather than whatever colour hides under alpha 0)."""
    Image = _pil()
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return img.convert("RGB")


def _open_image(item: Any, header_only: bool = False) -> Any:
    Image = _pil()
    if isinstance(item, Image.Image):
        return {"width": item.width, "height": item.height} if header_only else _to_rgb(item)
    kind, src = _source(item, "image", fetch=not header_only)
    if kind == "url":
        return {"url": src}
    with _reading(describe(item), "image", (OSError, ValueError, SyntaxError, Image.DecompressionBombError)):
        with Image.open(_opened(kind, src)) as img:
            if header_only:
                return {"width": img.width, "height": img.height, "format": img.format}
            img.load()
            return _to_rgb(img)


def load_image(item: Any) -> Image.Image:
    """One image item as an RGB PIL image (see the module docstring for the accepted forms).

    Raises:
        MediaError: the item is missing, unreadable or of an unsupported form.
    """
    return _open_image(item)


# ---------------------------------------------------------------------------------------------------- videos
def _natural_key(name: str) -> list:
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def _frame_list(item: Any, what: str, fetch: bool) -> tuple[list | None, tuple[str, Any] | None]:
    """(frame items, None) for a list or a folder of frames; (None, (kind, source)) for a video file or URL."""
    if isinstance(item, (list, tuple)):
        frames = list(item)
    else:
        kind, src = _source(item, "video", fetch)
        if not (kind == "path" and os.path.isdir(src)):
            return None, (kind, src)
        names = sorted((n for n in os.listdir(src) if n.lower().endswith(FRAME_SUFFIXES)), key=_natural_key)
        frames = [os.path.join(src, n) for n in names]
    if not frames:
        raise MediaError("unsupported", what, "video", f"no frames: an empty list, or a folder without frame images "
                                                       f"({', '.join(FRAME_SUFFIXES)})")
    return frames, None


def _frame(frames: list, i: int, what: str, header_only: bool = False) -> Any:
    try:
        return _open_image(frames[i], header_only)
    except MediaError as e:
        raise MediaError(e.kind, what, "video", f"frame {i} ({e.path}): {e.reason}") from None


def _pick(total: int, n: int) -> list[int]:
    """n frame indices spread evenly over `total` frames (centred in n equal spans; repeats when total < n)."""
    return [min(total - 1, int((i + 0.5) * total / n)) for i in range(n)]


def _av() -> Any:
    try:
        import av
    except ImportError as e:
        raise MissingExtraError("av", "video", "decoding video files (PyAV)") from e
    return av


def _video_header(container: Any, what: str) -> tuple[Any, int | None, float | None]:
    """(the first video stream, frame count, duration in seconds); count / duration are None when unknown."""
    if not container.streams.video:
        raise MediaError("unreadable", what, "video", "the file has no video stream")
    stream = container.streams.video[0]
    duration = None
    if stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / 1_000_000  # av.time_base
    rate = stream.average_rate or stream.guessed_rate
    total = stream.frames or (round(duration * rate) if duration and rate else None)
    if duration is None and total and rate:
        duration = float(total / rate)
    return stream, total or None, duration


def _decode_video(kind: str, src: Any, what: str, fps: float, max_frames: int, min_frames: int) -> list:
    av = _av()
    with _reading(what, "video", (av.error.FFmpegError, OSError, ValueError, EOFError)):
        with av.open(_opened(kind, src)) as container:
            total, duration = _video_header(container, what)[1:]
        if total is None:  # e.g. some webm files: count by decoding once
            with av.open(_opened(kind, src)) as container:
                total = sum(1 for _ in container.decode(video=0))
        if not total:
            raise MediaError("unreadable", what, "video", "the video has no frames")
        wanted = _pick(total, min(max(round(duration * fps) if duration else total, min_frames), max_frames))
        wanted_set, picked = set(wanted), {}
        with av.open(_opened(kind, src)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted_set:
                    picked[i] = frame.to_image().convert("RGB")
                if i >= wanted[-1]:
                    break
    if not picked:
        raise MediaError("unreadable", what, "video", "no frame could be decoded")
    out, previous = [], picked[min(picked)]
    for i in wanted:  # headers that over-count frames: reuse the last decoded one
        previous = picked.get(i, previous)
        out.append(previous)
    return out


def load_video(item: Any, *, fps: float = 2.0, max_frames: int = 16, min_frames: int = 2) -> list[Image.Image]:
    """One video item as a list of RGB PIL frames, between `min_frames` and `max_frames` long.

    A video file (decoded with PyAV) is sampled at `fps` frames per second of its duration, spread evenly, then
    capped at `max_frames` and raised to `min_frames` (a clip with fewer frames repeats some). A list of frame items
    or a folder of frame images is taken as already sampled: it is thinned evenly to `max_frames`, or frames are
    repeated up to `min_frames`; only the frames kept are opened.

    Raises:
        MediaError: missing, unreadable or unsupported item (a frame's error names the frame).
        MissingExtraError: a video file needs PyAV (`pip install 'swiftlab[video]'`).
        ValueError: fps <= 0 or not 1 <= min_frames <= max_frames.
    """
    if fps <= 0 or not 1 <= min_frames <= max_frames:
        raise ValueError(f"need fps > 0 and 1 <= min_frames <= max_frames, got fps={fps}, min_frames={min_frames}, "
                         f"max_frames={max_frames}")
    what = describe(item)
    frames, source = _frame_list(item, what, fetch=True)
    if frames is None:
        return _decode_video(*source, what, fps, max_frames, min_frames)
    return [_frame(frames, i, what) for i in _pick(len(frames), min(max(len(frames), min_frames), max_frames))]


def _video_meta(item: Any, what: str) -> dict[str, Any]:
    frames, source = _frame_list(item, what, fetch=False)
    if frames is not None:
        for i in range(len(frames)):
            _frame(frames, i, what, header_only=True)
        return {"frames": len(frames)}
    kind, src = source
    if kind == "url":
        return {"url": src}
    av = _av()
    with _reading(what, "video", (av.error.FFmpegError, OSError, ValueError, EOFError)):
        with av.open(_opened(kind, src)) as container:
            stream, total, duration = _video_header(container, what)
            return {"frames": total, "duration": duration, "width": stream.width, "height": stream.height}


# ---------------------------------------------------------------------------------------------------- audio
def _np() -> Any:
    import numpy

    return numpy


def _mono(samples: Any, what: str) -> np.ndarray:
    np = _np()
    try:
        x = np.asarray(samples, dtype=np.float32)
    except (TypeError, ValueError):
        raise MediaError("unsupported", what, "audio", "expected numbers (a waveform)") from None
    if x.ndim == 2:  # (channels, samples) or (samples, channels): average over the shorter axis
        x = x.mean(axis=0 if x.shape[0] <= x.shape[1] else 1)
    if x.ndim != 1 or x.size == 0:
        raise MediaError("unsupported", what, "audio", f"expected a non-empty 1-D or 2-D waveform, got shape {x.shape}")
    return x


def resample(x: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """`x` resampled from `orig_rate` to `target_rate` Hz (float32).

    Uses `scipy.signal.resample_poly` (polyphase, anti-aliased) when scipy is installed; otherwise numpy linear
    interpolation (no anti-aliasing filter: fine for speech at 16 kHz from 44.1/48 kHz, less exact than scipy).
    """
    np = _np()
    orig_rate, target_rate = int(orig_rate), int(target_rate)
    if orig_rate <= 0 or target_rate <= 0:
        raise ValueError(f"sampling rates must be positive, got {orig_rate} -> {target_rate}")
    if orig_rate == target_rate:
        return np.asarray(x, dtype=np.float32)
    try:
        from scipy.signal import resample_poly
    except ImportError:
        n = max(1, round(len(x) * target_rate / orig_rate))
        return np.interp(np.arange(n) * (orig_rate / target_rate), np.arange(len(x)), x).astype(np.float32)
    g = gcd(orig_rate, target_rate)
    return resample_poly(x, target_rate // g, orig_rate // g).astype(np.float32)


def _read_wav(kind: str, src: Any, header_only: bool) -> Any:
    """PCM WAV (8/16/24/32-bit, any channels) as (mono float32 in [-1, 1], rate), or its header; wave.Error for
    other encodings (float, extensible), which soundfile reads."""
    np = _np()
    with wave.open(_opened(kind, src), "rb") as w:
        channels, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
        if header_only:
            return {"sampling_rate": rate, "channels": channels, "samples": n}
        raw = w.readframes(n)
    if width == 1:  # 8-bit WAV is unsigned
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        x = (((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8) >> 8).astype(np.float32) / 8388608.0
    elif width == 4:
        x = np.frombuffer(raw, "<i4").astype(np.float32) / 2147483648.0
    else:
        raise wave.Error(f"unsupported sample width {width} bytes")
    return x.reshape(-1, channels).mean(axis=1), rate


def _read_audio(kind: str, src: Any, what: str, header_only: bool = False) -> Any:
    """(mono float32 samples, rate) of a sound file, or its header (a dict) with `header_only`."""
    if kind == "path":
        with open(src, "rb") as f:
            head = f.read(12)
    else:
        head = src[:12]
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        try:
            return _read_wav(kind, src, header_only)
        except (wave.Error, EOFError, ValueError):
            pass  # float or extensible WAV: soundfile reads those
    elif kind == "path" and src.lower().endswith(".wav"):
        raise MediaError("unreadable", what, "audio", "the file is named .wav but is not a RIFF/WAVE file; check it")
    try:
        import soundfile as sf
    except ImportError as e:
        raise MissingExtraError("soundfile", "audio", f"reading {what} (only PCM WAV is read without it)") from e
    with _reading(what, "audio", (RuntimeError, OSError, ValueError, TypeError)):  # LibsndfileError: RuntimeError
        if header_only:
            info = sf.info(_opened(kind, src))
            return {"sampling_rate": info.samplerate, "channels": info.channels, "samples": info.frames}
        data, rate = sf.read(_opened(kind, src), dtype="float32", always_2d=True)
    return data.mean(axis=1), rate


def _is_waveform(item: Any) -> bool:
    return isinstance(item, _np().ndarray) or isinstance(item, (list, tuple)) and bool(item) and all(
        isinstance(v, (int, float, list, tuple)) and not isinstance(v, bool) for v in item)


def _array_dict(item: Any, what: str) -> tuple[np.ndarray, int] | None:
    """(samples, rate) of a `{"array", "sampling_rate"}` dict, None for other items."""
    if not (isinstance(item, dict) and item.get("array") is not None):
        return None
    rate = item.get("sampling_rate")
    if not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0:
        raise MediaError("unsupported", what, "audio", f"an object with 'array' needs 'sampling_rate' (a positive "
                                                       f"integer), got {rate!r}")
    return _mono(item["array"], what), rate


def load_audio(item: Any, *, sampling_rate: int = 16000) -> np.ndarray:
    """One audio item as a mono float32 waveform at `sampling_rate` Hz.

    WAV (PCM 8/16/24/32-bit) is read with the standard library; other formats (flac, mp3, ogg, float WAV) need
    soundfile. Stereo becomes mono by averaging the channels. A numpy array or a list of numbers is taken as already
    at `sampling_rate`; a dict `{"array", "sampling_rate"}` (Hugging Face datasets' decoded Audio) is resampled from
    its own rate. Resampling: see `resample` (scipy when installed, else numpy linear interpolation).

    Raises:
        MediaError: missing, unreadable or unsupported item.
        MissingExtraError: a non-WAV file needs soundfile (`pip install 'swiftlab[audio]'`).
    """
    what = describe(item)
    array = _array_dict(item, what)
    if array is not None:
        return resample(*array, sampling_rate)
    if _is_waveform(item):
        return _mono(item, what)
    x, rate = _read_audio(*_source(item, "audio"), what)
    if x.size == 0:
        raise MediaError("unreadable", what, "audio", "the sound file has no samples")
    return resample(x, rate, sampling_rate)


def _audio_meta(item: Any, what: str) -> dict[str, Any]:
    array = _array_dict(item, what)
    if array is not None:
        return {"samples": len(array[0]), "sampling_rate": array[1]}
    if _is_waveform(item):
        return {"samples": len(_mono(item, what))}
    kind, src = _source(item, "audio", fetch=False)
    return {"url": src} if kind == "url" else _read_audio(kind, src, what, header_only=True)


# ---------------------------------------------------------------------------------------------------- checks
def media_meta(item: Any, modality: str) -> dict[str, Any]:
    """Cheap check that `item` can be loaded as `modality`, reading headers only where possible.

    Images: the header (size, format); video files: the container header (frames, duration, size); frame lists and
    folders: each frame's header; audio: the WAV header or soundfile's info. URLs are NOT fetched (the result is
    `{"url": ...}`): a failed fetch shows when the item is loaded.

    Returns:
        What the header says, e.g. `{"width": 640, "height": 480, "format": "JPEG"}`.

    Raises:
        MediaError: missing, unreadable (bad header) or unsupported item.
        MissingExtraError: the check needs PyAV or soundfile.
        ValueError: an unknown modality.
    """
    what = describe(item)
    if modality == "image":
        return _open_image(item, header_only=True)
    if modality == "video":
        return _video_meta(item, what)
    if modality == "audio":
        return _audio_meta(item, what)
    raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")

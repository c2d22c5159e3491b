"""The only place environment variables are read."""
from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    """Root of SwiftLab's own caches (encoded datasets, the demo model). `SWIFT_CACHE_HOME` overrides."""
    base = os.environ.get("SWIFT_CACHE_HOME")
    if base:
        return Path(base).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "swiftlab"


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE / MODELSCOPE_OFFLINE / SWIFT_OFFLINE ask for no network."""
    return any(
        os.environ.get(k, "").lower() in ("1", "true", "yes", "on")
        for k in ("HF_HUB_OFFLINE", "SWIFT_OFFLINE", "TRANSFORMERS_OFFLINE", "MODELSCOPE_OFFLINE")
    )


def use_hf_default() -> bool | None:
    """`USE_HF=1` makes the Hugging Face hub the default instead of ModelScope (ms-swift's convention)."""
    v = os.environ.get("USE_HF")
    if v is None:
        return None
    return v.lower() in ("1", "true", "yes", "on")


def hub_token() -> str | None:
    return os.environ.get("HF_TOKEN") or os.environ.get("MODELSCOPE_API_TOKEN")


def distributed_env() -> dict[str, str]:
    keys = ("NPROC_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "RANK",
            "WORLD_SIZE")
    return {k: os.environ[k] for k in keys if k in os.environ}


def media_defaults() -> dict[str, float]:
    """ms-swift's media environment variables, as flag defaults: MAX_PIXELS, MIN_PIXELS, VIDEO_MAX_PIXELS, FPS,
    FPS_MAX_FRAMES (the flags --max_pixels etc. win)."""
    names = {"MAX_PIXELS": "max_pixels", "MIN_PIXELS": "min_pixels", "VIDEO_MAX_PIXELS": "video_max_pixels",
             "FPS": "fps", "FPS_MAX_FRAMES": "max_frames"}
    out: dict[str, float] = {}
    for env, key in names.items():
        value = os.environ.get(env)
        if value:
            try:
                out[key] = float(value)
            except ValueError:
                raise ValueError(f"environment variable {env}={value!r} is not a number") from None
    return out


def result_file() -> str | None:
    """`SWIFT_RESULT_FILE`: where a command run by the wizard or the web UI reports its run folder and results
    (a JSON object, rewritten atomically as the run goes on)."""
    return os.environ.get("SWIFT_RESULT_FILE") or None

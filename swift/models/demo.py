"""The built-in demo model `swift-demo`: a small random-weight Qwen2, built locally, never downloaded.

It makes every command runnable offline on a laptop CPU, e.g.

    swift sft --model swift-demo --dataset self-cognition --model_name swift-robot --model_author swift

Its weights are random, so before training it babbles; the training recipe in `DEMO_TRAIN_DEFAULTS` teaches it
the bundled self-cognition data in well under a minute on 2 CPU cores (measured with transformers Trainer + peft:
10 s of training on idle cores, 20-50 s on busy ones; final loss about 0.1; greedy answers to "who are you?",
"你是谁?" etc. name the model, in the question's language).

The folder is built once per configuration and cached under `cache_home()/models/swift-demo-<hash>`; the hash
covers the config, the seed and the tokenizer files, so changing any of them builds a new folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from swift.models.tiny import DEMO_TOKENIZER_DIR, build_model_folder
from swift.utils.env import cache_home
from swift.utils.errors import SwiftError
from swift.utils.io import fsync_dir
from swift.utils.logging import get_logger

logger = get_logger("swift.models")

DEMO_ARCH = "qwen2"
DEMO_SEED = 0
# Bump to force a rebuild when the way the folder is written changes.
DEMO_FORMAT_VERSION = 1
DEMO_CONFIG: dict[str, Any] = {
    "hidden_size": 128,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": True,
    # Larger than the usual 0.02: with the frozen random (tied) embeddings as output layer, 0.02 gives logits too
    # small for LoRA to make the model confident (loss stays near 6 though greedy answers come out right).
    "initializer_range": 0.1,
}

# A recipe that teaches the demo model the self-cognition data with LoRA on 2 CPU cores (<1 min of training).
DEMO_TRAIN_DEFAULTS: dict[str, Any] = {
    "train_type": "lora",
    "target_modules": "all-linear",
    "lora_rank": 8,
    "lora_alpha": 32,
    "learning_rate": 5e-3,
    "num_train_epochs": 10,
    "per_device_train_batch_size": 8,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 5,
}

_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json")


def demo_fingerprint() -> str:
    """Hash of everything that determines the demo folder's content (config, seed, tokenizer files)."""
    h = hashlib.sha256()
    h.update(json.dumps({"arch": DEMO_ARCH, "config": DEMO_CONFIG, "seed": DEMO_SEED,
                         "version": DEMO_FORMAT_VERSION}, sort_keys=True).encode())
    for f in sorted(DEMO_TOKENIZER_DIR.iterdir()):
        if f.is_file():
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


def demo_model_dir() -> Path:
    """Where the demo model is cached (whether or not it is built yet)."""
    return cache_home() / "models" / f"swift-demo-{demo_fingerprint()}"


def is_complete(path: str | os.PathLike) -> bool:
    """True when `path` holds a complete model folder written by this module."""
    return all((Path(path) / f).is_file() for f in _REQUIRED)


def ensure_demo_model(path: str | os.PathLike | None = None) -> str:
    """Return the folder of the demo model, building it first if it is not there yet.

    The folder is written to a temporary sibling and renamed into place, so a crash never leaves a half-written
    model and two processes building at once both end with the same complete folder.

    Args:
        path: Where to build it; default: `demo_model_dir()` in SwiftLab's cache.

    Returns:
        The absolute path of a plain Hugging Face folder (config.json, model.safetensors,
        generation_config.json, tokenizer files).

    Raises:
        SwiftError: `path` exists, is not empty and is not a model folder.
    """
    target = Path(path).expanduser() if path is not None else demo_model_dir()
    if is_complete(target):
        return str(target.resolve())
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise SwiftError(f"Cannot build the demo model in '{target}': it exists and is not a model folder. "
                         f"Remove it or choose another path.")
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("Building the demo model (random weights, %s layers x %s hidden) in %s",
                DEMO_CONFIG["num_hidden_layers"], DEMO_CONFIG["hidden_size"], target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        build_model_folder(DEMO_ARCH, DEMO_CONFIG, tmp, tokenizer_dir=DEMO_TOKENIZER_DIR, seed=DEMO_SEED)
        if target.is_dir():  # an empty folder left by the caller
            target.rmdir()
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except OSError:
        if not is_complete(target):  # another process did not win the race either: a real failure
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return str(target.resolve())

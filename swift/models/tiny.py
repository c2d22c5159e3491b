"""Tiny random-weight models for tests and demos, saved as plain Hugging Face folders.

They use SwiftLab's own offline tokenizer (`swift/assets/demo_model`, ChatML template), so nothing needs a hub:

    from swift.models.tiny import make_tiny_model
    path = make_tiny_model("llama", "/tmp/tiny-llama", num_hidden_layers=1)
    AutoModelForCausalLM.from_pretrained(path)

Multimodal families ("qwen2_vl", "qwen2_5_vl", "qwen2_audio", "llava", "llava_next", "internvl") are built by
`swift.models.tiny_mm` with their processor files, and load with `swift.models.loader.load_model_and_tokenizer`.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from swift.models.tiny_mm import MM_ARCHS, make_tiny_mm_model

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
DEMO_TOKENIZER_DIR = ASSETS_DIR / "demo_model"

# Config and model class names in transformers, per architecture.
ARCHS: dict[str, tuple[str, str]] = {
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
}

TINY_DEFAULTS: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
    "tie_word_embeddings": True,
}

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                    "chat_template.json", "vocab.json", "merges.txt")


def make_tiny_model(arch: str, out_dir: str | os.PathLike, *, tokenizer_dir: str | os.PathLike | None = None,
                    seed: int = 0, **config_overrides: Any) -> str:
    """Build a small random-weight causal LM and save it with its tokenizer.

    Args:
        arch: "qwen2" or "llama" (the real transformers config and model classes), or a multimodal family:
            "qwen2_vl", "qwen2_5_vl", "qwen2_audio", "llava", "llava_next", "internvl" (see `swift.models.tiny_mm`;
            their folders also hold the processor files and a chat template that renders media items).
        out_dir: Folder to write (created if missing): config.json, model.safetensors,
            generation_config.json and the tokenizer files.
        tokenizer_dir: Folder of the tokenizer to copy; default: the bundled demo tokenizer.
        seed: Seed of the random weights; the same seed gives the same weights.
        **config_overrides: Config fields to change (hidden_size, num_hidden_layers, ...). For multimodal
            families, language-model fields go to the text config and `vision_config=` / `audio_config=` /
            `text_config=` dicts change those sub-configs.

    Returns:
        `out_dir` as an absolute path string.
    """
    if arch in MM_ARCHS:
        return make_tiny_mm_model(arch, out_dir, tokenizer_dir=tokenizer_dir or DEMO_TOKENIZER_DIR, seed=seed,
                                  **config_overrides)
    if arch not in ARCHS:
        raise ValueError(f"Unknown tiny model arch '{arch}'; choose one of {sorted(ARCHS) + list(MM_ARCHS)}.")
    build_model_folder(arch, {**TINY_DEFAULTS, **config_overrides}, out_dir,
                       tokenizer_dir=tokenizer_dir or DEMO_TOKENIZER_DIR, seed=seed)
    return str(Path(out_dir).resolve())


def build_model_folder(arch: str, config_kwargs: dict[str, Any], out_dir: str | os.PathLike, *,
                       tokenizer_dir: str | os.PathLike, seed: int,
                       generation_kwargs: dict[str, Any] | None = None) -> None:
    """Write a random-weight model of `arch` with `config_kwargs` and the tokenizer of `tokenizer_dir`.

    The vocabulary size and the special token ids come from the tokenizer; weights are float32.
    """
    import torch
    import transformers
    from transformers import AutoTokenizer, GenerationConfig

    config_cls, model_cls = (getattr(transformers, n) for n in ARCHS[arch])
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    eos_id = tokenizer.eos_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    config = config_cls(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=eos_id,
                        pad_token_id=pad_id, **config_kwargs)
    config.dtype = torch.float32
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
    # Stop at <|im_end|> (end of a turn) and at <|endoftext|>, greedy unless the caller asks otherwise.
    eos_ids = [i for i in dict.fromkeys([eos_id, tokenizer.pad_token_id]) if i is not None]
    model.generation_config = GenerationConfig(**{"bos_token_id": tokenizer.bos_token_id, "eos_token_id": eos_ids,
                                                  "pad_token_id": pad_id, "do_sample": False,
                                                  **(generation_kwargs or {})})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    copy_tokenizer_files(tokenizer_dir, out)


def copy_tokenizer_files(src: str | os.PathLike, dst: str | os.PathLike) -> list[str]:
    """Copy the tokenizer files found in `src` into `dst`; returns their names."""
    copied = []
    for name in _TOKENIZER_FILES:
        if (Path(src) / name).is_file():
            shutil.copyfile(Path(src) / name, Path(dst) / name)
            copied.append(name)
    return copied

"""Merge a LoRA adapter into its base model and save a plain Hugging Face folder."""
from __future__ import annotations

import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from swift.infer.loading import base_model_of, load_for_inference
from swift.utils.errors import SwiftError
from swift.utils.io import atomic_write_json, fsync_dir, read_json
from swift.utils.logging import get_logger

logger = get_logger(__name__)

MANIFEST = "swift_merge.json"


def merge_lora(model_dir: str | os.PathLike | None, adapter_dir: str | os.PathLike,
               output_dir: str | os.PathLike, *, torch_dtype: Any = None, max_shard_size: int | str = "5GB",
               overwrite: bool = False, device_map: Any = "cpu") -> str:
    """Merge `adapter_dir` into `model_dir` and save the result to `output_dir`.

    The output is a plain folder (safetensors shards, config.json, generation_config.json, tokenizer
    files and a small `swift_merge.json` saying what was merged) that
    `transformers.AutoModelForCausalLM.from_pretrained` loads without SwiftLab or peft. It is written to
    a temporary folder beside `output_dir` and renamed into place, so `output_dir` is never half written.

    Args:
        model_dir: The base model folder; None takes the one named in the adapter's adapter_config.json.
        adapter_dir: A peft adapter folder (its tokenizer files, if any, are the ones saved).
        output_dir: Where the merged model goes. Must be absent or empty unless `overwrite`.
        torch_dtype: dtype to load and save in (a `torch.dtype` or name); None keeps the model's own.
        max_shard_size: Largest safetensors shard, as `save_pretrained` takes it.
        overwrite: Replace a non-empty `output_dir`.
        device_map: Where to merge; "cpu" by default, which needs no GPU memory.

    Returns:
        `output_dir` as a string.
    """
    output = Path(output_dir).expanduser().absolute()
    check_output_dir(output, overwrite)
    base = str(model_dir) if model_dir is not None else base_model_of(adapter_dir)
    logger.info("Merging adapter %s into %s", adapter_dir, base)
    model, tokenizer = load_for_inference(base, adapters=[adapter_dir], merge_lora=True,
                                          torch_dtype=torch_dtype, device_map=device_map)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.merging-", dir=output.parent))
    try:
        _save(model, tokenizer, tmp, max_shard_size)
        atomic_write_json(tmp / MANIFEST, _manifest(base, adapter_dir, model))
        swap_into_place(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("Merged model saved to %s", output)
    return str(output)


def check_output_dir(output: Path, overwrite: bool) -> None:
    """Refuse an output path that is a file, or a non-empty folder unless `overwrite`."""
    if output.exists() and not output.is_dir():
        raise SwiftError(f"Output '{output}' exists and is not a folder; choose another output_dir.")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise SwiftError(f"Output folder '{output}' is not empty; choose another output_dir or pass "
                         "overwrite=True (--overwrite) to replace it.")


def _save(model: Any, tokenizer: Any, folder: Path, max_shard_size: int | str) -> None:
    from transformers import GenerationConfig

    model.save_pretrained(folder, max_shard_size=max_shard_size)
    tokenizer.save_pretrained(folder)
    if not (folder / "generation_config.json").is_file():
        generation_config = getattr(model, "generation_config", None)
        if generation_config is None:
            generation_config = GenerationConfig.from_model_config(model.config)
        generation_config.save_pretrained(folder)


def _manifest(base: str, adapter_dir: str | os.PathLike, model: Any) -> dict[str, Any]:
    adapter_config = read_json(Path(adapter_dir) / "adapter_config.json")
    return {
        "base_model": _describe_path(base),
        "adapter": _describe_path(str(adapter_dir)),
        "peft_type": adapter_config.get("peft_type"),
        "lora_r": adapter_config.get("r"),
        "lora_alpha": adapter_config.get("lora_alpha"),
        "dtype": str(getattr(model, "dtype", "")).removeprefix("torch."),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
    }


def _describe_path(path: str) -> str:
    p = Path(path).expanduser()
    return str(p.absolute()) if p.exists() else path


def library_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Installed versions of the libraries that shaped an exported folder (recorded in its manifest)."""
    from importlib import metadata

    out = {}
    for dist in ("swiftlab", "torch", "transformers", "peft", "safetensors", *extra):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _default_permissions(folder: Path) -> None:
    """mkdtemp makes a private (0700) folder; give it and its files the modes a plain mkdir/open would."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for p in folder.rglob("*"):
        p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)


def swap_into_place(new: Path, output: Path) -> None:
    """Rename `new` to `output`; an existing `output` is moved aside first and removed after."""
    _default_permissions(new)
    old = None
    if output.is_dir():
        if any(output.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{output.name}.old-", dir=output.parent))
            os.replace(output, old / output.name)
        else:
            output.rmdir()
    try:
        os.replace(new, output)
    except BaseException:
        if old is not None:  # put the previous folder back
            os.replace(old / output.name, output)
            old.rmdir()
        raise
    fsync_dir(output.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

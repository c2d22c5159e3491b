"""`--deepspeed <preset|file.json>`: DeepSpeed ZeRO through transformers' Trainer, on GPUs and on CPU.

Presets (every batch size, learning rate, gradient accumulation, clipping and fp16/bf16 switch is "auto": the
Trainer fills it from the training flags, so a preset never disagrees with them):
    zero0           DeepSpeed engine only, nothing sharded (plain data parallel)
    zero1           optimizer state sharded across processes
    zero2           optimizer state and gradients sharded (the default of --parallel_strategy deepspeed)
    zero3           optimizer state, gradients and parameters sharded; full 16-bit weights gathered on save
    zero2_offload   zero2 with optimizer state and step on the CPU (DeepSpeed's CPU Adam)
    zero3_offload   zero3 with parameters and optimizer state on the CPU: trains a model larger than GPU memory
    <file>.json     a DeepSpeed config of your own ("auto" values are filled the same way)

On CPU (no CUDA) DeepSpeed runs on its CPU accelerator (`DS_ACCELERATOR=cpu`, gloo collectives). The relaunch sets
that variable for its ranks; a single process gets it here, before anything imports deepspeed. The offload presets
also run on CPU (their "offload" is then a no-op move to the same memory, useful only as a smoke test).

Checkpoints: LoRA adapters are saved as plain peft folders (the Trainer gathers ZeRO-3 shards on save). Full
tuning with the zero3 presets also writes the gathered 16-bit `model.safetensors`; a checkpoint saved without it
(a JSON with `stage3_gather_16bit_weights_on_model_save: false`) is converted by `convert_zero_checkpoint`.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path
from typing import Any

from swift.utils.errors import ArgumentError, MissingExtraError, SwiftError
from swift.utils.logging import get_logger

logger = get_logger("swift.launch")

_COMMON: dict[str, Any] = {
    "fp16": {"enabled": "auto", "loss_scale": 0, "loss_scale_window": 1000, "initial_scale_power": 16,
             "hysteresis": 2, "min_loss_scale": 1},
    "bf16": {"enabled": "auto"},
    "train_batch_size": "auto",
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "steps_per_print": 10 ** 9,  # the Trainer logs; DeepSpeed's own step prints would duplicate it
    "wall_clock_breakdown": False,
}
_STAGE2 = {"stage": 2, "allgather_partitions": True, "allgather_bucket_size": 2e8, "overlap_comm": True,
           "reduce_scatter": True, "reduce_bucket_size": "auto", "contiguous_gradients": True}
_STAGE3 = {"stage": 3, "overlap_comm": True, "contiguous_gradients": True, "sub_group_size": 1e9,
           "reduce_bucket_size": "auto", "stage3_prefetch_bucket_size": "auto",
           "stage3_param_persistence_threshold": "auto", "stage3_max_live_parameters": 1e9,
           "stage3_max_reuse_distance": 1e9, "stage3_gather_16bit_weights_on_model_save": True}
_CPU_OFFLOAD = {"device": "cpu", "pin_memory": True}
# With offload, DeepSpeed wants its own CPU Adam (a torch optimizer stepping on CPU tensors is refused); the
# Trainer fills lr, betas, eps and weight decay from the flags.
_OFFLOAD_OPTIMIZER = {"type": "AdamW", "params": {"lr": "auto", "betas": "auto", "eps": "auto",
                                                  "weight_decay": "auto"}}

PRESETS: dict[str, dict[str, Any]] = {
    "zero0": {"zero_optimization": {"stage": 0}},
    "zero1": {"zero_optimization": {"stage": 1}},
    "zero2": {"zero_optimization": _STAGE2},
    "zero3": {"zero_optimization": _STAGE3},
    "zero2_offload": {"zero_optimization": {**_STAGE2, "offload_optimizer": _CPU_OFFLOAD},
                      "optimizer": _OFFLOAD_OPTIMIZER},
    "zero3_offload": {"zero_optimization": {**_STAGE3, "offload_optimizer": _CPU_OFFLOAD,
                                            "offload_param": _CPU_OFFLOAD},
                      "optimizer": _OFFLOAD_OPTIMIZER},
}


def preset_config(name: str) -> dict[str, Any]:
    """A fresh DeepSpeed config dict of a preset (see the module docstring)."""
    if name not in PRESETS:
        raise ArgumentError("deepspeed", f"unknown preset {name!r}: use one of {', '.join(PRESETS)} or a path to "
                            "a DeepSpeed JSON config file")
    return copy.deepcopy({**_COMMON, **PRESETS[name]})


def load_config_file(path: str) -> dict[str, Any]:
    """A DeepSpeed JSON config file, checked: it exists, parses and holds an object with a zero_optimization stage."""
    from swift.launch.launcher import read_config_object

    if not os.path.isfile(path):
        raise ArgumentError("deepspeed", f"DeepSpeed config file not found: {path} (or use a preset: "
                            f"{', '.join(PRESETS)})")
    config = read_config_object(path, "deepspeed", "a DeepSpeed config")
    stage = (config.get("zero_optimization") or {}).get("stage", 0)
    if stage not in (0, 1, 2, 3):
        raise ArgumentError("deepspeed", f"{path}: zero_optimization.stage must be 0, 1, 2 or 3, got {stage!r}")
    return config


def deepspeed_config(value: str) -> dict[str, Any]:
    """The DeepSpeed config of `--deepspeed`: a preset name or a JSON file."""
    if value in PRESETS:
        return preset_config(value)
    if value.endswith(".json") or os.sep in value or os.path.exists(value):
        return load_config_file(value)
    return preset_config(value)  # raises, listing the presets


def zero_stage(config: dict[str, Any]) -> int:
    return int((config.get("zero_optimization") or {}).get("stage", 0))


def is_offload(config: dict[str, Any]) -> bool:
    zero = config.get("zero_optimization") or {}
    return any((zero.get(k) or {}).get("device", "none") not in ("none", None)
               for k in ("offload_optimizer", "offload_param"))


def prepare_cpu_accelerator() -> None:
    """Select DeepSpeed's CPU accelerator when no CUDA device exists. It must happen before deepspeed is imported:
    deepspeed picks its accelerator once, at import."""
    import sys

    if os.environ.get("DS_ACCELERATOR"):
        return
    if "deepspeed" in sys.modules:
        from deepspeed.accelerator import get_accelerator

        if get_accelerator().device_name() != "cpu":
            raise SwiftError("deepspeed was imported before DS_ACCELERATOR=cpu could be set and picked the "
                             f"{get_accelerator().device_name()!r} accelerator; run with DS_ACCELERATOR=cpu")
        return
    os.environ["DS_ACCELERATOR"] = "cpu"
    logger.debug("DS_ACCELERATOR=cpu (no CUDA device)")


def _configure_cpu_process_group() -> dict[str, Any]:
    """On CPU, transformers' TrainingArguments builds accelerate's state for DeepSpeed without a backend, which on a
    machine without GPUs yields a world of ONE process per rank (DeepSpeed then rejects the batch sizes, or each
    rank trains alone). Build that shared state here instead, DeepSpeed with gloo, and tell the Trainer to use it."""
    from accelerate import PartialState

    previous = os.environ.get("ACCELERATE_USE_DEEPSPEED")
    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    try:
        state = PartialState(backend="gloo")
    finally:
        if previous is None:
            os.environ.pop("ACCELERATE_USE_DEEPSPEED", None)
        else:
            os.environ["ACCELERATE_USE_DEEPSPEED"] = previous
    logger.debug("deepspeed on CPU: %s processes, gloo", state.num_processes)
    return {"accelerator_config": {"use_configured_state": True}}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare_single_process_world() -> None:
    """DeepSpeed always runs inside a process group. A plain `swift sft --deepspeed ...` (no torchrun) becomes a world
    of one process, as a launcher would describe it (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT)."""
    if "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ:
        return
    for name, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_WORLD_SIZE", "1"),
                        ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(name, value)
    os.environ.setdefault("MASTER_PORT", str(_free_port()))


def _require_deepspeed():
    try:
        import deepspeed
    except ImportError as e:
        raise MissingExtraError("deepspeed", "deepspeed", "--deepspeed") from e
    return deepspeed


def check_quantization(config: dict[str, Any], *, bnb_bits: int | None = None,
                       bnb_quant_storage: str | None = None) -> None:
    """QLoRA (bitsandbytes) with ZeRO-3: 4-bit weights live in uint8 `Params4bit` tensors that ZeRO-3 cannot
    partition and gather unless they are stored in a float dtype (`--bnb_4bit_quant_storage bfloat16`, as for
    FSDP); 8-bit weights cannot be partitioned at all."""
    if not bnb_bits or zero_stage(config) != 3:
        return
    if bnb_bits == 8:
        raise ArgumentError("deepspeed", "8-bit bitsandbytes weights cannot be sharded by ZeRO-3: use --deepspeed "
                            "zero2 (adapters and optimizer state sharded, the quantized base replicated) or 4-bit")
    if bnb_quant_storage in (None, "uint8"):
        raise ArgumentError("deepspeed", "QLoRA (4-bit bitsandbytes) with ZeRO-3 needs the 4-bit weights stored in "
                            "a float dtype so ZeRO-3 can shard them: add --bnb_4bit_quant_storage bfloat16, or use "
                            "--deepspeed zero2 (the quantized base replicated), or --fsdp with "
                            "--bnb_4bit_quant_storage bfloat16")


def deepspeed_training_kwargs(value: str, *, on_cpu: bool, bnb_bits: int | None = None,
                              bnb_quant_storage: str | None = None) -> dict[str, Any]:
    """transformers.TrainingArguments fields for `--deepspeed <preset|file.json>`: {"deepspeed": config_dict}.

    Args:
        value: a preset name (zero0, zero1, zero2, zero3, zero2_offload, zero3_offload) or a JSON file path.
        on_cpu: no CUDA device: use DeepSpeed's CPU accelerator (gloo).
        bnb_bits: 4 or 8 when the model is loaded quantized with bitsandbytes (QLoRA), else None.
        bnb_quant_storage: `--bnb_4bit_quant_storage` (ZeRO-3 needs a float dtype there).

    Raises:
        ArgumentError: unknown preset, bad JSON file, or QLoRA combined with ZeRO-3 in a way that cannot work.
        MissingExtraError: deepspeed is not installed.
    """
    config = deepspeed_config(value)
    check_quantization(config, bnb_bits=bnb_bits, bnb_quant_storage=bnb_quant_storage)
    if on_cpu:
        prepare_cpu_accelerator()
    _require_deepspeed()
    prepare_single_process_world()
    kwargs: dict[str, Any] = {"deepspeed": config}
    if on_cpu:
        kwargs.update(_configure_cpu_process_group())
        if is_offload(config):
            logger.info("--deepspeed %s on CPU: offload moves tensors to the memory they are already in (a smoke "
                        "test of the GPU configuration, no memory saved)", value)
    logger.debug("deepspeed config: %s", json.dumps(config))
    return kwargs


def find_zero_checkpoint(ckpt_dir: Path) -> str | None:
    """The tag (e.g. global_step3) of the ZeRO shards in a Trainer checkpoint folder, None when there are none."""
    latest = ckpt_dir / "latest"
    if latest.is_file():
        return latest.read_text(encoding="utf-8").strip()
    tags = sorted(p.name for p in ckpt_dir.glob("global_step*") if p.is_dir())
    return tags[-1] if tags else None


def convert_zero_checkpoint(ckpt_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                            tag: str | None = None, max_shard_size: str = "5GB") -> Path:
    """Consolidate the ZeRO shards of a Trainer checkpoint into a plain Hugging Face model folder (fp32
    safetensors, plus the config, tokenizer and generation files found next to the shards), loadable with
    `from_pretrained` in one process without DeepSpeed. Runs on CPU; needs CPU memory for the full fp32 model.

    Args:
        ckpt_dir: a `checkpoint-N` folder written by a `--deepspeed` run (holds `latest` and `global_stepN/`).
        out_dir: the folder to write (created; must not hold a model already).
        tag: the `global_stepN` subfolder to convert (default: the one named in `latest`).
    """
    ckpt, out = Path(ckpt_dir), Path(out_dir)
    tag = tag or find_zero_checkpoint(ckpt)
    if tag is None or not (ckpt / tag).is_dir():
        raise ArgumentError("ckpt_dir", f"{ckpt} holds no DeepSpeed ZeRO shards (no 'latest' file or global_step* "
                            "folder); a checkpoint with model.safetensors or adapter_model.safetensors loads as is")
    if (out / "model.safetensors").exists() or (out / "model.safetensors.index.json").exists():
        raise ArgumentError("out_dir", f"{out} already holds a model; choose an empty folder")
    if "deepspeed" not in __import__("sys").modules and not os.environ.get("DS_ACCELERATOR"):
        import torch

        if not torch.cuda.is_available():
            prepare_cpu_accelerator()
    _require_deepspeed()
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from huggingface_hub import save_torch_state_dict

    state = get_fp32_state_dict_from_zero_checkpoint(str(ckpt), tag=tag)
    out.mkdir(parents=True, exist_ok=True)
    # (huggingface_hub drops the duplicate names of tied weights, which safetensors refuses to write twice)
    save_torch_state_dict(state, out, max_shard_size=max_shard_size)
    for name in os.listdir(ckpt):
        src = ckpt / name
        if src.is_file() and (name.endswith((".json", ".txt", ".jinja", ".model", ".tiktoken"))
                              and not name.startswith(("trainer_state", "training_args", "model.safetensors",
                                                       "adapter_model"))):
            shutil.copy2(src, out / name)
    logger.info("converted ZeRO checkpoint %s (%s) to %s", ckpt, tag, out)
    return out

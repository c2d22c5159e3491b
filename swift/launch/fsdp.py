"""`--parallel_strategy fsdp`: PyTorch FSDP2 (`fully_shard`) through transformers' Trainer, on GPUs and on CPU.

On GPUs this is the standard transformers/accelerate FSDP2 path: `fsdp=True` with an `fsdp_config` of version 2
whose wrap class is the model's decoder layer (`model._no_split_modules`).

On CPU (gloo processes) accelerate silently ignores the FSDP plugin: its state only turns FSDP on for GPU-like
multi-device types, so the run would be plain DDP (every rank a full replica) while claiming to be FSDP.
`enable_fsdp_on_cpu(trainer)`, called by the trainer right after it builds its `Accelerator`, turns that state
into FSDP with the same FSDP2 plugin. From there accelerate's own `fsdp2_prepare_model` shards the model
(`fully_shard` per decoder layer, gloo collectives), and transformers' own FSDP code paths save, load and clip.

`log_sharding(model)` measures that sharding really happened (DTensor parameters, this rank's share of the
parameter elements), logs it once and writes `fsdp_sharding.json` into the run folder, so a silent fallback to
replicas can be seen and tested.

Presets of `--fsdp`:
    full_shard      parameters, gradients and optimizer state sharded; parameters re-gathered per layer (default)
    shard_grad_op   like full_shard, but parameters stay gathered between forward and backward (ZeRO-2-like:
                    faster, more memory)
    offload         full_shard with parameters, gradients and optimizer state kept on the CPU (GPU memory saver)
    <file>.json     transformers' `fsdp_config` (keys: reshard_after_forward, cpu_offload,
                    transformer_layer_cls_to_wrap, activation_checkpointing, state_dict_type, ...)
"""
from __future__ import annotations

import os
from typing import Any

from swift.utils.errors import ArgumentError
from swift.utils.logging import get_logger

logger = get_logger("swift.launch")

PRESETS: dict[str, dict[str, Any]] = {
    "full_shard": {"reshard_after_forward": True},
    "shard_grad_op": {"reshard_after_forward": False},
    "offload": {"reshard_after_forward": True, "cpu_offload": True},
}
SHARDING_FILE = "fsdp_sharding.json"  # per-rank local parameter counts, written by `log_sharding`


def fsdp_config(preset: str | None) -> dict[str, Any]:
    """transformers' `fsdp_config` (version 2) of a preset name or a JSON file."""
    preset = preset or "full_shard"
    if preset in PRESETS:
        config = dict(PRESETS[preset])
    elif preset.endswith(".json") or os.path.isfile(preset):
        from swift.launch.launcher import read_config_object

        config = read_config_object(preset, "fsdp", "transformers' fsdp_config")
        config = {k[5:] if k.startswith("fsdp_") else k: v for k, v in config.items()}
    else:
        raise ArgumentError("fsdp", f"unknown preset {preset!r}: use one of {', '.join(PRESETS)} or a JSON file "
                            "of transformers' fsdp_config")
    version = int(config.get("version", 2))
    if version != 2:
        raise ArgumentError("fsdp", f"{preset}: fsdp version {version} is not supported; SwiftLab runs FSDP2 "
                            "(set \"version\": 2 or leave it out)")
    config["version"] = 2
    config.setdefault("auto_wrap_policy", "TRANSFORMER_BASED_WRAP")
    # Checkpoints are consolidated (one HF/peft folder any single process loads); see `docs/en/distributed.md`.
    config.setdefault("state_dict_type", "FULL_STATE_DICT")
    return config


def fsdp_training_kwargs(preset: str | None, *, on_cpu: bool) -> dict[str, Any]:
    """The `transformers.TrainingArguments` fields of `--fsdp <preset|json>` (FSDP2).

    The decoder layer class to wrap is left to the model (`_no_split_modules`, read when the trainer prepares it)
    unless the JSON names `transformer_layer_cls_to_wrap`. On CPU the same fields are used; the trainer's hook
    `enable_fsdp_on_cpu` makes accelerate honour them.
    """
    config = fsdp_config(preset)  # validate the flag even where it does nothing
    if int(os.environ.get("WORLD_SIZE", "1")) < 2:
        # transformers runs FSDP only in a distributed world; one process trains plainly (nothing to shard)
        logger.warning("--parallel_strategy fsdp with one process: nothing to shard, training without FSDP "
                       "(give --fsdp_num_shards N or NPROC_PER_NODE=N)")
        return {}
    kwargs: dict[str, Any] = {"fsdp": True, "fsdp_config": config}
    if on_cpu:
        # Without use_cpu, accelerate finds no device type for a torchrun rank on CPU and runs it alone
        # (distributed type NO); with it, the ranks form a gloo group (MULTI_CPU), which the hook turns into FSDP.
        kwargs.update(use_cpu=True, ddp_backend="gloo")
        if config.get("cpu_offload"):
            logger.info("--fsdp offload on CPU: parameters already live in CPU memory; offload changes nothing")
    return kwargs


def wants_fsdp(args: Any) -> bool:
    """True when these TrainingArguments ask for FSDP (transformers turned `fsdp` into a plugin spec)."""
    return getattr(args, "fsdp_plugin_args", None) is not None


def prepare_fsdp(trainer: Any) -> None:
    """Check the model for FSDP and, on CPU, make the trainer's accelerate state FSDP2 (accelerate leaves it as
    plain multi-CPU DDP there).

    Call right after `Trainer.create_accelerator_and_postprocess()`. No-op when the run does not ask for FSDP; on
    GPUs accelerate already set FSDP up, and one process has nothing to shard.
    """
    if not wants_fsdp(trainer.args):
        return
    check_model(trainer.model)
    if trainer.is_fsdp_enabled:
        return
    from accelerate import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = trainer.accelerator.state
    if state.distributed_type != DistributedType.MULTI_CPU:
        return  # one process (nothing to shard) or a device type accelerate handles itself
    plugin = FullyShardedDataParallelPlugin(**trainer.args.fsdp_plugin_args)
    if plugin.fsdp_version != 2:  # FSDP1 needs an accelerator device (FACTS); we only configure version 2
        raise ArgumentError("fsdp", "FSDP version 1 does not run on CPU; use version 2 (the default)")
    state.fsdp_plugin = plugin
    state.distributed_type = DistributedType.FSDP
    # As accelerate does on GPUs: every later `AcceleratorState()` copies the partial state's type over its own.
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    trainer.is_fsdp_enabled = True
    logger.debug("accelerate state switched to FSDP2 on CPU (gloo)")


def check_model(model: Any) -> None:
    """Errors for models FSDP2 cannot shard, said before any collective runs."""
    if not getattr(model, "_no_split_modules", None):
        raise ArgumentError("parallel_strategy", f"fsdp: {type(model).__name__} does not name its decoder layer "
                            "class (`_no_split_modules`), which FSDP wraps; give it in a JSON --fsdp file as "
                            "\"transformer_layer_cls_to_wrap\": [\"<LayerClass>\"], or use --parallel_strategy ddp")
    packed = {str(p.dtype).replace("torch.", "") for p in model.parameters()
              if type(p).__name__ == "Params4bit" and not p.is_floating_point()}
    if packed:
        # accelerate would leave such weights out of the sharding (a full copy on every rank) with only a warning.
        dtype = next((str(p.dtype) for p in model.parameters() if p.is_floating_point()), "float32")
        raise ArgumentError("parallel_strategy", f"fsdp with 4-bit bitsandbytes (QLoRA) needs the packed weights "
                            f"stored in the model's dtype, found {', '.join(sorted(packed))}: add "
                            f"--bnb_4bit_quant_storage {dtype.replace('torch.', '')} (or use --parallel_strategy "
                            "ddp, or --deepspeed zero3)")


def local_parameter_counts(model: Any) -> tuple[int, int, int]:
    """(elements held by this rank, elements of the full model, how many parameters are DTensors)."""
    from torch.distributed.tensor import DTensor

    local = total = sharded = 0
    for p in model.parameters():
        if isinstance(p, DTensor):
            sharded += 1
            local += p.to_local().numel()
        else:
            local += p.numel()
        total += p.numel()
    return local, total, sharded


def log_sharding(model: Any, output_dir: str | None = None) -> dict[str, Any]:
    """Log "FSDP2: N of M parameter elements on this rank" (rank 0) and write every rank's counts to
    `<output_dir>/fsdp_sharding.json` (a list indexed by rank); return this rank's entry."""
    import torch.distributed as dist

    local, total, sharded = local_parameter_counts(model)
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    entry = {"rank": rank, "local_elements": local, "total_elements": total, "dtensor_parameters": sharded,
             "world_size": world}
    entries = [entry]
    if world > 1:
        entries = [None] * world
        dist.all_gather_object(entries, entry)
    if rank == 0:
        logger.info("FSDP2: %d of %d parameter elements on this rank (%.0f%%; %d DTensor parameters, %d ranks)",
                    local, total, 100.0 * local / max(total, 1), sharded, world)
        if sharded == 0:
            logger.warning("FSDP2 was asked for but no parameter is sharded: every rank holds a full replica")
        if output_dir:
            from swift.utils.io import atomic_write_json

            os.makedirs(output_dir, exist_ok=True)
            atomic_write_json(os.path.join(output_dir, SHARDING_FILE), entries)
    return entry


def add_fsdp_callbacks(trainer: Any) -> None:
    """When the trainer runs FSDP: log and record the sharding once the model is prepared (train begin)."""
    if not getattr(trainer, "is_fsdp_enabled", False):
        return
    from transformers import TrainerCallback

    class _ShardingLog(TrainerCallback):
        def __init__(self) -> None:
            self.done = False

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            if not self.done and model is not None:
                self.done = True
                log_sharding(model, args.output_dir)

    trainer.add_callback(_ShardingLog())

"""Inside a rank: the strategy's `transformers.TrainingArguments` fields (ddp backend, fsdp, deepspeed)."""
from __future__ import annotations

import os
from typing import Any

from swift.launch.launcher import LAUNCH_ID_ENV, current_plan, is_main_process
from swift.utils.logging import get_logger

logger = get_logger("swift.launch")


def strategy_training_kwargs(strategy: str | None, *, fsdp: str | None = None, deepspeed: str | None = None,
                             bnb_bits: int | None = None, bnb_quant_storage: str | None = None) -> dict[str, Any]:
    """TrainingArguments fields for the strategy this process runs under (empty for one plain process)."""
    import torch

    plan = current_plan(strategy)
    on_cpu = not torch.cuda.is_available()
    kwargs: dict[str, Any] = {}
    if plan.distributed and on_cpu:
        # Without use_cpu, accelerate leaves a CPU-only torchrun world at DistributedType.NO: every rank would
        # train on its own, with no gradient sync, and nothing would say so.
        kwargs.update(ddp_backend="gloo", use_cpu=True)
    if plan.strategy == "fsdp":
        from swift.launch.fsdp import fsdp_training_kwargs

        kwargs.update(fsdp_training_kwargs(fsdp, on_cpu=on_cpu))
    elif plan.strategy == "deepspeed":
        from swift.launch.deepspeed import deepspeed_training_kwargs

        kwargs.update(deepspeed_training_kwargs(deepspeed or "zero2", on_cpu=on_cpu, bnb_bits=bnb_bits,
                                                bnb_quant_storage=bnb_quant_storage))
    if plan.strategy and is_main_process() and not os.environ.get(LAUNCH_ID_ENV):
        # (a relaunch by swift printed this already; a user's own torchrun did not)
        logger.info(plan.describe("CPU (gloo)" if on_cpu else "GPUs (nccl)"))
    return kwargs

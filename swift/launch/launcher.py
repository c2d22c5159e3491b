"""Plan the process world of a training command and relaunch `swift` under torchrun when it needs several processes.

    swift sft ... --parallel_strategy fsdp --fsdp_num_shards 4      # 4 processes on this machine
    NPROC_PER_NODE=2 swift sft ...                                  # ms-swift's style: DDP on 2 processes
    NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 NPROC_PER_NODE=8 swift sft ...   # on each of 2 machines

The parent process only plans and waits (it imports no torch); each rank then runs the normal pipeline, and
`current_plan()` tells it the strategy and world it is part of.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from swift.utils.errors import ArgumentError, SwiftError
from swift.utils.logging import get_logger

logger = get_logger("swift.launch")

STRATEGY_ENV = "SWIFT_PARALLEL_STRATEGY"  # set for the ranks by the relaunch
LAUNCH_ID_ENV = "SWIFT_LAUNCH_ID"  # one id per relaunch: names the files ranks share
DEFAULT_PORT = 29500


@dataclass
class DistPlan:
    """Who runs where: the strategy and the process world."""

    strategy: str | None
    nproc_per_node: int
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = DEFAULT_PORT

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def describe(self, device: str) -> str:
        nodes = f" x {self.nnodes} nodes" if self.nnodes > 1 else ""
        what = {"ddp": "DDP (a full replica per process, gradients all-reduced)",
                "fsdp": "FSDP2 (parameters, gradients and optimizer state sharded across processes)",
                "deepspeed": "DeepSpeed ZeRO"}.get(self.strategy or "", "one process")
        return (f"parallel strategy: {what}; world size {self.world_size} ({self.nproc_per_node} processes"
                f"{nodes}) on {device}")


def read_config_object(path: str, flag: str, what: str) -> dict:
    """A JSON file given to `--<flag>` that must hold an object: a missing file, bad JSON or another type is an
    ArgumentError naming the file."""
    import json

    if not os.path.isfile(path):
        raise ArgumentError(flag, f"{what} file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except json.JSONDecodeError as e:
        raise ArgumentError(flag, f"{path} is not valid JSON: {e}") from e
    if not isinstance(config, dict):
        raise ArgumentError(flag, f"{path} must hold a JSON object ({what}), found {type(config).__name__}")
    return config


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError as e:
        raise ArgumentError(name, f"environment variable {name} must be a whole number, got {value!r}") from e


def plan_from(strategy: str | None, num_shards: int | None) -> DistPlan:
    """The plan of a training command from its flags (--parallel_strategy, --fsdp_num_shards) and environment.

    --fsdp_num_shards and NPROC_PER_NODE both give the processes per machine; when both are set they must agree.
    A strategy without either runs one process: DeepSpeed still applies there (ZeRO-3 offload of a model larger
    than the GPU); FSDP needs two or more processes and says so.
    """
    env_nproc = os.environ.get("NPROC_PER_NODE")
    nproc = num_shards if num_shards is not None else _env_int("NPROC_PER_NODE", 1)
    if num_shards is not None and env_nproc not in (None, "") and _env_int("NPROC_PER_NODE", 1) != num_shards:
        raise ArgumentError("fsdp_num_shards", f"--fsdp_num_shards {num_shards} disagrees with NPROC_PER_NODE="
                            f"{env_nproc}; give one of them")
    if nproc < 1:
        raise ArgumentError("fsdp_num_shards", f"needs at least one process, got {nproc}")
    plan = DistPlan(strategy=strategy, nproc_per_node=nproc, nnodes=_env_int("NNODES", 1),
                    node_rank=_env_int("NODE_RANK", 0), master_addr=os.environ.get("MASTER_ADDR", "127.0.0.1"),
                    master_port=_env_int("MASTER_PORT", 0))
    if not plan.master_port:
        # One machine: any free port, so two runs side by side do not collide; several machines must agree on one.
        plan.master_port = _free_port() if plan.nnodes == 1 else DEFAULT_PORT
    if plan.distributed and plan.strategy is None:
        plan.strategy = "ddp"
    if not 0 <= plan.node_rank < plan.nnodes:
        raise ArgumentError("NODE_RANK", f"must be in [0, NNODES={plan.nnodes}), got {plan.node_rank}")
    return plan


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def in_launched_rank() -> bool:
    """True inside a process started by torchrun (ours or the user's)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def check_devices(plan: DistPlan) -> str:
    """"cuda" or "cpu" (gloo) for the ranks; more processes than GPUs is an error, not a silent slowdown."""
    import torch  # only when a relaunch is needed: the single-process path never comes here early

    gpus = torch.cuda.device_count()
    if gpus == 0:
        return "cpu"
    if plan.nproc_per_node > gpus:
        raise ArgumentError("fsdp_num_shards", f"{plan.nproc_per_node} processes asked for, but this machine has "
                            f"{gpus} GPU(s); use at most {gpus} (one process per GPU)")
    return "cuda"


def relaunch(command: str, argv: list[str], plan: DistPlan) -> int:
    """Run `swift <command> <argv>` under torchrun with this plan; return its exit status."""
    device = check_devices(plan)
    print(plan.describe("GPUs (nccl)" if device == "cuda" else "CPU (gloo processes)"), flush=True)
    cmd = [sys.executable, "-m", "swift.launch.torchrun", f"--nproc_per_node={plan.nproc_per_node}",
           f"--nnodes={plan.nnodes}", f"--node_rank={plan.node_rank}", f"--master_addr={plan.master_addr}",
           f"--master_port={plan.master_port}", "-m", "swift", command, *argv]
    env = dict(os.environ)
    env[STRATEGY_ENV] = plan.strategy or "ddp"
    # One id per launch names the files ranks share; all machines of a multi-node run must agree on it.
    env[LAUNCH_ID_ENV] = os.environ.get(LAUNCH_ID_ENV) or (
        uuid.uuid4().hex[:12] if plan.nnodes == 1 else f"{plan.master_addr}-{plan.master_port}")
    env.pop("NPROC_PER_NODE", None)  # the ranks must not plan a second relaunch
    if device == "cpu":
        env.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed's CPU accelerator, gloo backend
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // plan.nproc_per_node)))
    logger.debug("relaunch: %s", " ".join(cmd))
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:  # torchrun forwards the signal to the ranks; wait is over
        return 130


def current_plan(strategy: str | None) -> DistPlan:
    """Inside a rank: the plan it belongs to (from torchrun's environment); one process when not launched."""
    if not in_launched_rank():
        return DistPlan(strategy=strategy, nproc_per_node=1)
    world = int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    return DistPlan(strategy=strategy or os.environ.get(STRATEGY_ENV) or "ddp", nproc_per_node=local,
                    nnodes=max(1, world // max(1, local)), node_rank=int(os.environ.get("GROUP_RANK", 0)),
                    master_addr=os.environ.get("MASTER_ADDR", "127.0.0.1"),
                    master_port=int(os.environ.get("MASTER_PORT", DEFAULT_PORT)))


def is_main_process() -> bool:
    """Rank 0 of a launched run, or a plain single process."""
    return os.environ.get("RANK", "0") == "0"


@contextmanager
def main_process_first(folder: Path, name: str, timeout: float = 3600.0) -> Iterator[bool]:
    """Rank 0 runs the block first (e.g. encodes data into the shared cache); the other ranks wait for it, then run
    it (reading that cache). Yields True on rank 0. One process: just runs the block."""
    if not in_launched_rank() or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        yield True
        return
    if is_main_process():
        yield True
        shared_value(folder, name, lambda: "done")
        return
    shared_value(folder, name, lambda: "done", timeout=timeout)
    yield False


def _launch_id() -> str:
    """Ours, or (a user's own torchrun on one machine) the torchrun agent's pid, which all its ranks share."""
    return os.environ.get(LAUNCH_ID_ENV) or f"ppid{os.getppid()}"


def forget_shared_values(folder: Path) -> None:
    """Rank 0, after the run: remove the files `shared_value` left in `folder` for this launch."""
    launch = _launch_id()
    if is_main_process() and in_launched_rank():
        for marker in Path(folder).glob(f".*-{launch}"):
            marker.unlink(missing_ok=True)


def shared_value(folder: Path, name: str, make: Callable[[], str], timeout: float = 300.0) -> str:
    """`make()` on rank 0, the same string on every other rank of this launch (through a file in `folder`, which
    all ranks see: the output folder, shared between nodes in a multi-node run). One process: just `make()`."""
    if not in_launched_rank() or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return make()
    launch = _launch_id()
    marker = folder / f".{name}-{launch}"
    if is_main_process():
        value = make()
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(value, encoding="utf-8")
        os.replace(tmp, marker)
        return value
    deadline = time.time() + timeout
    while not marker.is_file():
        if time.time() > deadline:
            raise SwiftError(f"rank {os.environ.get('RANK')}: rank 0 did not publish {name} in {folder} within "
                             f"{timeout:.0f} s (is the output folder shared between the machines?)")
        time.sleep(0.05)
    return marker.read_text(encoding="utf-8")

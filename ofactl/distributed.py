"""torchrun awareness: who am I, which device, and collective helpers.

Under ``torchrun --nproc_per_node N`` the environment carries ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`setup` initialises the process group
(NCCL on GPUs, gloo on CPU).  Without them everything runs as rank 0 of 1 and
no process group is created.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    """This process's place in a (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str | None) -> torch.device:
    """``None``/``"auto"`` -> cuda if available, else cpu; otherwise ``torch.device(device)``.

    Under torchrun with more than one process, a CUDA device without an index is this process's
    (``cuda:$LOCAL_RANK``), so a model loaded before :func:`setup` lands where the rank runs.
    """
    if device in (None, "", "auto"):
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return dev


def setup(device: str | None = None) -> DistEnv:
    """Read the torchrun environment and initialise the process group if there is one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistEnv(rank, world, local, dev)


def barrier(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(env: DistEnv, values: list[float]) -> list[float]:
    """Sum a few floats over ranks (for logging)."""
    if not env.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=env.device if env.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def broadcast_flag(env: DistEnv, flag: bool) -> bool:
    """True on every rank if ``flag`` is True on any rank (e.g. a stop request)."""
    if not env.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=env.device if env.device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def cleanup(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()

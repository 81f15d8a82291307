"""Several processes, GPUs and machines through PyTorch's own distributed engine (``torch.distributed``,
started by ``torchrun``); one plain process without it.

``torchrun --nproc-per-node N`` (or several nodes with its c10d rendezvous) starts the processes with
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in their environment; ``context()`` reads
them, joins the process group (NCCL between GPUs, gloo on CPUs) and gives each process its device
(``cuda:LOCAL_RANK`` when there are GPUs). Work is split with ``share`` (deterministic, balanced by
count), sums are combined with ``all_reduce_sum``. Without torchrun everything is a no-op on one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence, TypeVar

import torch

T = TypeVar("T")


@dataclass(frozen=True)
class Context:
    """Where this process stands: ``rank`` of ``world`` processes, its ``device``; ``joined`` when a
    process group was initialised (by this module)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"
    joined: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.joined:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.joined and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def context(device: str = "auto", backend: str | None = None) -> Context:
    """This process's ``Context``. With WORLD_SIZE > 1 in the environment (torchrun) the default process
    group is initialised (``backend``: NCCL when the device is a GPU, else gloo). ``device``: "auto"
    (``cuda:LOCAL_RANK`` when CUDA is available, else the CPU) or a device name for every process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    if world <= 1:
        return Context(device=device)
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    joined = False
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend or ("nccl" if device.startswith("cuda") else "gloo"))
        joined = True
    return Context(rank, world, local, device, joined)


def share(items: Sequence[T], rank: int, world: int) -> list[T]:
    """This rank's items: every ``world``-th from ``rank`` on (deterministic; the counts differ by at most
    one between ranks)."""
    return list(items[rank::world])


def all_reduce_sum(x: torch.Tensor, ctx: Context) -> torch.Tensor:
    """The sum of ``x`` over every process (in place; x itself on one process). Tensors go through the
    process group's device (the CPU for gloo)."""
    if ctx.world > 1:
        torch.distributed.all_reduce(x, op=torch.distributed.ReduceOp.SUM)
    return x


def gather_objects(obj, ctx: Context) -> list:
    """Every process's ``obj``, in rank order (picklable Python values; the one object on one process)."""
    if ctx.world <= 1:
        return [obj]
    out = [None] * ctx.world
    torch.distributed.all_gather_object(out, obj)
    return out

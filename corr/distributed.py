"""Several processes (``torchrun``): who am I, my shard, wait for the others.

Launched by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``
...), :func:`context` joins the process group (NCCL on CUDA, gloo otherwise) and every rank
takes a deterministic shard of a work list: items ``rank, rank + world, rank + 2 world, ...``
of a list all ranks build identically. Without torchrun the context is a single process and
nothing here does any work. The process group only synchronises (barriers); data moves through
the shared output folder, written with atomic renames (no locks), so it works on a network file
system.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch

T = TypeVar("T")

__all__ = ["DistContext", "context", "shard"]


@dataclass(frozen=True)
class DistContext:
    """This process's place: ``rank`` of ``world`` (``local_rank`` on its machine)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every rank gets here (no-op for one process)."""
        if self.active and torch.distributed.is_initialized():
            if torch.distributed.get_backend() == "nccl":
                torch.distributed.barrier(device_ids=[self.local_rank])
            else:
                torch.distributed.barrier()

    def device(self, requested: str | None) -> str | None:
        """The device of this rank: ``cuda:LOCAL_RANK`` when CUDA is used, else as requested."""
        if not self.active:
            return requested
        if requested in (None, "auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank}"
        return requested

    def close(self) -> None:
        if self.active and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def context(timeout_hours: float | None = None) -> DistContext:
    """The process's :class:`DistContext`; joins the process group when launched by torchrun.

    Ranks wait for each other at stage ends (extraction, pairs), possibly for long, so the
    group's timeout is ``CORR_DIST_TIMEOUT_HOURS`` (default 24 h) rather than torch's 30 min.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not torch.distributed.is_initialized():
        hours = timeout_hours or float(os.environ.get("CORR_DIST_TIMEOUT_HOURS", "24"))
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        torch.distributed.init_process_group(backend, timeout=timedelta(hours=hours))
    return DistContext(rank=rank, world=world, local_rank=local)


def shard(items: Sequence[T], ctx: DistContext) -> list[T]:
    """This rank's share of ``items``: every ``world``-th item starting at ``rank``."""
    return list(items[ctx.rank :: ctx.world])

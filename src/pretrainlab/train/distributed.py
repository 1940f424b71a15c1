"""Multi-process training under `torchrun`: who this process is, and the few collectives we need.

`torchrun --nproc_per_node N -m pretrainlab train DESIGN` starts N processes with RANK, WORLD_SIZE
and LOCAL_RANK in their environment. `context()` reads them and, when WORLD_SIZE > 1, joins the
process group (gloo on CPU, nccl when CUDA is there). Without torchrun everything here is a no-op
for a single process, so the same code path trains on one process or many.

What runs where: rank 0 alone runs the data stages (generate, curate, tokenize) while the others
wait at a barrier; then every rank trains on its own slice of each batch (`TokenLoader(rank=...)`),
and rank 0 alone writes metrics, checkpoints, the manifest and the report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import TypeVar

import torch
import torch.distributed as dist

# Data stages run on rank 0 while the other ranks wait at a barrier: give them hours, not minutes.
BARRIER_TIMEOUT = timedelta(hours=6)
T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def device(self) -> torch.device:
        """This rank's device: its own GPU under nccl, else the CPU."""
        if self.backend == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def agree(self, value: T) -> T:
        """Rank 0's `value` on every rank (any picklable object)."""
        if not self.enabled:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of `value` over ranks (`value` itself on one process)."""
        if not self.enabled:
            return value
        out = value.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out / self.world_size


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


@cache
def context() -> DistContext:
    """This process's place in the job, joining the process group on first call under torchrun."""
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return DistContext()
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    backend = os.environ.get("PRETRAINLAB_DIST_BACKEND") or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=BARRIER_TIMEOUT)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, backend=backend)


def shutdown() -> None:
    """Leave the process group (a no-op on one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

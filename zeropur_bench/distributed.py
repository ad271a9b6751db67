"""Scale-out with ``torch.distributed`` (launched by ``torchrun``) and independent shards (job arrays).

The engine cuts a run into fixed batches (``Evaluator.plan``: boundaries depend on n and the batch size only)
and keeps every finished batch in ``<record>.partial/``. Scaling out only decides *who* computes which batch:

* ``torchrun --nproc_per_node=N -m zeropur_bench run ...``: rank r computes batches ``b % world_size == r``,
  writes them into the shared partial folder, all ranks meet at a barrier, and rank 0 assembles the one record.
  gloo on CPU, nccl on CUDA (each rank on ``cuda:LOCAL_RANK``).
* ``zeropur-bench run ... --shard K/N``: the same assignment without a rendezvous (one job of an array); then
  ``zeropur-bench run ... --merge-only`` assembles once every batch exists.

A rank or shard that dies leaves its finished batches on disk; rerunning with any world size (1 included)
resumes them: batches on disk are read, never recomputed, and the resume key (configuration + code version)
is checked across processes by the partial folder's ``config.json``. No scheduler of our own: torchrun, Slurm
arrays and a shared filesystem do that work.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Callable

import torch

from .errors import UserError

# Ranks that finish their batches wait for the slowest at the barrier: an adaptive attack on a big model can
# take days, far beyond torch.distributed's 30-minute default.
DEFAULT_TIMEOUT_HOURS = 7 * 24


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    backend: str | None  # None: not distributed

    @property
    def active(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ and "LOCAL_RANK" in os.environ


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"K/N"`` → (K, N) with 0 ≤ K < N."""
    if text is None:
        return None
    try:
        k, n = (int(t) for t in text.split("/"))
    except ValueError:
        raise UserError(f"--shard must be K/N (e.g. 0/4 … 3/4), got '{text}'") from None
    if not (n >= 1 and 0 <= k < n):
        raise UserError(f"--shard K/N needs 0 <= K < N, got '{text}'")
    return k, n


def resolve_device(device: str) -> str:
    """The device of this rank: ``cuda`` → ``cuda:LOCAL_RANK`` under torchrun; an explicit index is refused
    there (every rank would fight over one GPU)."""
    if not launched_by_torchrun():
        return device
    if device.startswith("cuda:"):
        raise UserError(f"--device {device} under torchrun: give --device cuda, each rank then uses "
                        "cuda:LOCAL_RANK (restrict the GPUs with CUDA_VISIBLE_DEVICES)")
    if device == "cuda":
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


def init(device: str) -> DistContext:
    """Join the process group when launched by torchrun with more than one process, else a no-op context."""
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return DistContext(0, 1, 0, None)
    import torch.distributed as dist

    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    hours = float(os.environ.get("ZEROPUR_BENCH_DIST_TIMEOUT_HOURS", DEFAULT_TIMEOUT_HOURS))
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(hours=hours))
    return DistContext(rank, world, local, backend)


def barrier(ctx: DistContext) -> Callable[[], None] | None:
    if not ctx.active:
        return None
    import torch.distributed as dist

    def wait() -> None:
        if ctx.backend == "nccl":
            dist.barrier(device_ids=[ctx.local_rank])
        else:
            dist.barrier()

    return wait


def finish(ctx: DistContext) -> None:
    if ctx.active:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()

"""Several processes (GPUs) per trial: DistributedDataParallel started by torchrun or by SLURM tasks.

A trial is distributed when its processes were started that way: torchrun sets ``RANK`` / ``WORLD_SIZE`` /
``LOCAL_RANK`` / ``MASTER_ADDR``; submitit with ``tasks_per_node > 1`` (or ``nodes > 1``) starts one task per
GPU and ``submitit.helpers.TorchDistributedEnvironment`` derives the same from SLURM's variables.
``distributed=off`` ignores both. Every rank trains on its share of each global batch; rank 0 alone
writes files (checkpoints, monitor.csv, features, result.json). Feature rows computed by all ranks are gathered
to rank 0 in dataset order, so the files and the spectral sums over them are those of one process.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from sweep.config.validate import DISTRIBUTED_MODES  # one list, checked before any job runs

INIT_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Dist:
    """This process's place in the trial; ``world == 1`` is the plain single-process run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, positions: np.ndarray) -> np.ndarray:
        """This rank's contiguous share of one global batch (sizes differ by at most one)."""
        return np.array_split(positions, self.world)[self.rank]

    def gather_rows(self, x: torch.Tensor, total: int) -> torch.Tensor | None:
        """Rows of all ranks' shards of one batch of ``total`` rows, in rank order, on rank 0 (None elsewhere)."""
        if self.world == 1:
            return x
        sizes = [len(s) for s in np.array_split(np.arange(total), self.world)]
        padded = x.new_zeros((max(sizes), *x.shape[1:]))
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([p[:n] for p, n in zip(parts, sizes)]) if self.is_main else None

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (decisions: stop, prune, the monitoring row)."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def mean(self, value: float) -> float:
        """Mean of a scalar over ranks (the logged loss)."""
        if self.world == 1:
            return value
        on_gpu = dist.get_backend() == "nccl"  # NCCL reduces CUDA tensors only
        t = torch.tensor([value], dtype=torch.float64, device="cuda" if on_gpu else "cpu")
        dist.all_reduce(t)
        return float(t.item()) / self.world

    def sync_buffers(self, module: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running stats, queues) on every rank. DDP broadcasts them at the start of
        each forward, so after the last step of an epoch the other ranks still hold their own."""
        if self.world == 1:
            return
        for buf in module.buffers():
            dist.broadcast(buf.data, src=0)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def _torchrun_env() -> tuple[int, int, int] | None:
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0"))
    return None


def _slurm_env() -> tuple[int, int, int] | None:
    """A submitit job with several tasks: export MASTER_ADDR / PORT, RANK, ... from SLURM's variables."""
    if os.environ.get("SUBMITIT_EXECUTOR") != "slurm" or int(os.environ.get("SLURM_NTASKS", "1")) < 2:
        return None
    from submitit.helpers import TorchDistributedEnvironment

    env = TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    return env.rank, env.world_size, env.local_rank


def detect(mode: str) -> tuple[int, int, int]:
    """(rank, world, local_rank) from the environment; (0, 1, 0) when not distributed or ``mode='off'``."""
    if mode not in DISTRIBUTED_MODES:
        raise ValueError(f"distributed={mode!r}: allowed one of {list(DISTRIBUTED_MODES)}")
    if mode == "off":
        return 0, 1, 0
    return _torchrun_env() or _slurm_env() or (0, 1, 0)


def init(mode: str, device: torch.device) -> tuple[Dist, torch.device]:
    """Join the process group (NCCL on CUDA, gloo on CPU); a CUDA device becomes this rank's local GPU."""
    rank, world, local_rank = detect(mode)
    if world == 1:
        return Dist(), device
    if device.type == "cuda":
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=INIT_TIMEOUT_S))
    return Dist(rank, world, local_rank), device


def shutdown(d: Dist) -> None:
    """Leave the process group (every rank, after the last collective)."""
    if d.world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()

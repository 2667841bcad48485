"""Run under ``torchrun --nproc_per_node 2`` (gloo, CPU): each rank computes the batch-statistic losses on its
share of one global batch through ``global_batch`` and saves the loss and its gradient w.r.t. its rows, for
tests/train/test_ddp.py to compare with the single-process loss on the whole batch."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from sweep.ssl import losses
from sweep.ssl._gather import global_batch

LOSSES = {
    "nt_xent": lambda a, b: losses.nt_xent(a, b, 0.2),
    "barlow_twins": lambda a, b: losses.barlow_twins_loss(a, b, 0.01),
    "vicreg": lambda a, b: losses.vicreg_loss(a, b),
}


def batch(rows: int = 13, dim: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch every rank (and the single-process reference) draws from; 13 rows split 7 + 6."""
    gen = torch.Generator().manual_seed(0)
    return torch.randn(rows, dim, generator=gen, dtype=torch.float64), torch.randn(rows, dim, generator=gen,
                                                                                  dtype=torch.float64)


def main(out_dir: Path) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    z1, z2 = batch()
    share = np.array_split(np.arange(len(z1)), world)[rank]
    result = {}
    for name, fn in LOSSES.items():
        a = z1[share].clone().float().requires_grad_(True)
        b = z2[share].clone().float().requires_grad_(True)
        loss = fn(global_batch(a), global_batch(b))
        loss.backward()
        result[name] = np.concatenate([[loss.item()], (a.grad / world).flatten().numpy(),
                                       (b.grad / world).flatten().numpy()])  # / world: DDP's averaging
    np.savez(out_dir / f"rank{rank}.npz", **result)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))

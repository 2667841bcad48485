"""The global batch of a multi-GPU trial, with gradients: what SSL papers' losses are computed on.

SimCLR's negatives, Barlow Twins' cross-correlation and VICReg's variance and covariance are statistics of the
whole batch. Under DistributedDataParallel each rank holds only its share, so each rank gathers every rank's
embeddings (in rank order, so the two views stay paired) and computes the loss of the global batch. Every rank
then holds the same loss; the backward pass sums every rank's gradient for this rank's rows (all-reduce), and
DDP's gradient averaging divides by the world size again, which leaves exactly the gradient of the single-process
loss on the global batch. Only all-gather and all-reduce are used, so gloo (CPU) and NCCL both work.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


def global_batch(z: Tensor) -> Tensor:
    """``z`` of every rank, concatenated in rank order, differentiable; ``z`` itself outside DDP."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z
    return _GatherWithGrad.apply(z)


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, z: Tensor) -> Tensor:  # noqa: D102 - see the module doc
        world, rank = dist.get_world_size(), dist.get_rank()
        sizes = _all_sizes(z.shape[0], z.device, world)
        padded = z.new_zeros((max(sizes), *z.shape[1:]), dtype=torch.float32)  # gloo has no bfloat16
        padded[: z.shape[0]] = z.float()
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded.contiguous())
        ctx.sizes, ctx.rank, ctx.dtype = sizes, rank, z.dtype
        return torch.cat([part[:size] for part, size in zip(parts, sizes)]).to(z.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # noqa: D102 - see the module doc
        total = grad.float().contiguous().clone()
        dist.all_reduce(total)  # every rank's d(its copy of the global loss) / d(these rows)
        start = sum(ctx.sizes[: ctx.rank])
        return total[start: start + ctx.sizes[ctx.rank]].to(ctx.dtype)


def _all_sizes(rows: int, device: torch.device, world: int) -> list[int]:
    """Each rank's row count (the last global batch may not split evenly)."""
    mine = torch.tensor([rows], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(sizes, mine)
    return [int(s.item()) for s in sizes]

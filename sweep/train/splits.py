"""Seeded index splits of a dataset: SSL train, unlabelled monitoring, probe train / val, test.

The monitoring subset is drawn first and never seen by SSL training, so label-free metrics are measured on
held-out images. The remaining train images are all used by SSL (labels are not), and split again for the
labelled readout: ``val`` (``data.val_fraction`` of them, picks the probe's L2) and ``probe_train``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from sweep.config.schema import DataConfig


@dataclass(frozen=True)
class SplitIndices:
    """Indices into the dataset's train split (``test`` indexes its test split)."""

    ssl_train: torch.Tensor
    monitor: torch.Tensor
    probe_train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor


def _subsample(n: int, limit: int | None, gen: torch.Generator) -> torch.Tensor:
    """All indices, or a seeded sorted subset of ``limit`` of them."""
    if limit is None or limit >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=gen)[:limit].sort().values


def make_splits(n_train: int, n_test: int, cfg: DataConfig) -> SplitIndices:
    """Split ``n_train`` train rows into monitor / val / probe_train with ``cfg.split_seed``.

    Raises ValueError naming ``data.monitor_size`` / ``data.val_fraction`` when a split would be too small.
    """
    gen = torch.Generator().manual_seed(cfg.split_seed)
    pool = _subsample(n_train, cfg.max_train_samples, gen)
    test = _subsample(n_test, cfg.max_test_samples, gen)
    pool = pool[torch.randperm(len(pool), generator=gen)]
    if cfg.monitor_size >= len(pool) - 2:
        raise ValueError(f"data.monitor_size={cfg.monitor_size}: allowed < {len(pool) - 2} "
                         f"(train rows available: {len(pool)})")
    monitor, rest = pool[: cfg.monitor_size], pool[cfg.monitor_size :]
    n_val = int(round(cfg.val_fraction * len(rest)))
    if n_val < 1 or n_val >= len(rest):
        raise ValueError(f"data.val_fraction={cfg.val_fraction}: gives {n_val} val rows of {len(rest)}; "
                         "allowed a fraction leaving >= 1 row on each side")
    return SplitIndices(ssl_train=rest.sort().values, monitor=monitor.sort().values,
                        probe_train=rest[n_val:].sort().values, val=rest[:n_val].sort().values, test=test)

"""Chosen rows of raw splits, read a batch at a time as uint8 and converted to float on the device: what both the
train job's stream (:mod:`_stream`) and the decode-once cache (:mod:`_cache`) read through, so neither imports
the other."""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch

from sweep.data._arrays import RawSplit, resize
from sweep.data._types import DataError

Batch = tuple[torch.Tensor, torch.Tensor]  # uint8 (B, C, H, W) pixels, int64 (B,) labels


class Rows(torch.utils.data.Dataset):
    """Chosen rows of one or more splits as one indexable set of (uint8 image, label).

    ``__getitems__`` reads a whole batch at once (one fancy index into an array, or one decode per file), which
    DataLoader uses when present.
    """

    def __init__(self, parts: Sequence[tuple[RawSplit, np.ndarray]]) -> None:
        self.parts = [(split, np.asarray(rows, dtype=np.int64)) for split, rows in parts if len(rows)]
        if not self.parts:
            raise DataError("no rows to stream (every split given is empty)")
        values = {float(split.read.max_value) for split, _ in self.parts}  # type: ignore[attr-defined]
        if len(values) != 1:
            raise DataError(f"splits streamed together have different pixel scales {sorted(values)}")
        self.max_value = values.pop()
        self.per_file = any(getattr(split.read, "per_file", False) for split, _ in self.parts)
        self.bounds = np.cumsum([0] + [len(rows) for _, rows in self.parts])

    def __len__(self) -> int:
        return int(self.bounds[-1])

    def __getitem__(self, position: int) -> Batch:
        x, y = self.__getitems__([position])
        return x[0], y[0]

    def __getitems__(self, positions: Sequence[int]) -> Batch:
        pos = np.asarray(positions, dtype=np.int64)
        if len(pos) == 0:  # an empty shard (more ranks than rows in a last batch): shaped like a real batch
            split, rows = self.parts[0]
            return torch.from_numpy(split.read.u8(rows[:1])[:0]), torch.zeros(0, dtype=torch.int64)  # type: ignore[attr-defined]
        part_of = np.searchsorted(self.bounds, pos, side="right") - 1
        pixels: np.ndarray | None = None
        labels = np.empty(len(pos), dtype=np.int64)
        for k, (split, rows) in enumerate(self.parts):
            mask = part_of == k
            if not mask.any():
                continue
            picked = rows[pos[mask] - self.bounds[k]]
            chunk = split.read.u8(picked)  # type: ignore[attr-defined]
            if pixels is None:
                pixels = np.empty((len(pos), *chunk.shape[1:]), dtype=np.uint8)
            pixels[mask] = chunk
            labels[mask] = split.labels[picked]
        assert pixels is not None
        return torch.from_numpy(pixels), torch.from_numpy(labels)


def _keep_batch(batch: Batch) -> Batch:
    """DataLoader collate for ``Rows``: ``__getitems__`` already returns the batch."""
    return batch


def iterate(rows: Rows, batches: Iterable[np.ndarray], num_workers: int, pin_memory: bool = False
            ) -> Iterator[Batch]:
    """uint8 batches of ``rows`` in the order of ``batches`` (lists of positions).

    File sets are decoded by ``num_workers`` DataLoader processes (0: in this process); array sets are one
    fancy index per batch, cheaper than shipping rows between processes, so they never use workers.
    """
    batch_list = [np.asarray(b, dtype=np.int64) for b in batches]
    if num_workers > 0 and rows.per_file and len(batch_list) > 1:
        loader = torch.utils.data.DataLoader(rows, batch_sampler=batch_list, num_workers=num_workers,
                                             collate_fn=_keep_batch, pin_memory=pin_memory,
                                             prefetch_factor=2)
        yield from loader
        return
    for b in batch_list:
        x, y = rows.__getitems__(b)
        yield (x.pin_memory(), y) if pin_memory else (x, y)


def to_float(pixels: torch.Tensor, device: torch.device, max_value: float, image_size: int | None,
             channels_last: bool = False) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 in [0, 1] on ``device``, resized there: the same numbers as the float
    readers (``u8 / max_value`` in float32, then ``resize``), with 4x less to copy."""
    x = pixels.to(device, non_blocking=True).float().div_(max_value)
    x = resize(x, image_size)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def sequential_batches(n: int, batch_size: int) -> list[np.ndarray]:
    """Positions 0..n-1 in order, ``batch_size`` at a time (the last batch may be short)."""
    return [np.arange(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]

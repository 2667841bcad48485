"""Streaming access for the train job: uint8 rows read batch by batch, converted to float on the device.

``load_dataset`` materialises float32 tensors (fine for 5000 digits, 11 GB for STL-10's unlabelled split);
``open_dataset`` keeps only labels and readers: array sets stay uint8 (in memory, or memory-mapped files such
as STL-10's ``*_X.bin``), file sets (``image_folder``) are decoded per batch, in DataLoader worker processes
when ``data.num_workers > 0``. Memory is one batch (plus the prefetched ones) whatever the dataset size.
Rows are chosen exactly as ``load_dataset`` chooses them (same stratified subsample, same order), so both
paths feed the same images.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sweep.data._arrays import RawSplit, resize, stratified_subsample
from sweep.data._cache import cached_split
from sweep.data._options import read_options
from sweep.data._registry import DATASETS
from sweep.data._stl10 import load_stl10_unlabeled
from sweep.data._types import DataError

Batch = tuple[torch.Tensor, torch.Tensor]  # uint8 (B, C, H, W) pixels, int64 (B,) labels


@dataclass(frozen=True)
class StreamData:
    """A dataset as readers: ``train_rows`` / ``test_rows`` are the rows kept by ``max_*_samples``."""

    name: str
    train: RawSplit
    test: RawSplit
    unlabeled: RawSplit | None  # stl10 with data.unlabeled: extra SSL rows, labels -1
    classes: list[str]
    input_shape: tuple[int, int, int]  # (C, H, W) after ``image_size``
    train_rows: np.ndarray
    test_rows: np.ndarray
    image_size: int | None


def open_dataset(cfg: Any) -> StreamData:
    """Open ``cfg.name`` without converting any pixels; DataError names the bad field or file."""
    opts = read_options(cfg, tuple(DATASETS.names()))
    train, test, classes = DATASETS.get(opts.name)(opts)
    unlabeled = load_stl10_unlabeled(opts) if opts.unlabeled else None
    if opts.cache_dir is not None:
        workers = int(getattr(cfg, "num_workers", 0) or 0)
        train = cached_split(train, opts.cache_dir, f"{opts.name}-train", workers)
        test = cached_split(test, opts.cache_dir, f"{opts.name}-{opts.test_dir}", workers)
    train_rows = stratified_subsample(train.labels, opts.max_train_samples, opts.split_seed)
    test_rows = stratified_subsample(test.labels, opts.max_test_samples, opts.split_seed)
    for what, rows in (("train", train_rows), ("test", test_rows)):
        if len(rows) == 0:
            raise DataError(f"{opts.name} {what}: no images found")
    c, h, w = train.read.u8(train_rows[:1]).shape[1:]  # type: ignore[attr-defined]
    if opts.image_size is not None:
        h = w = opts.image_size
    return StreamData(opts.name, train, test, unlabeled, classes, (int(c), int(h), int(w)), train_rows,
                      test_rows, opts.image_size)


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

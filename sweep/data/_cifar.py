"""CIFAR-10 / CIFAR-100 from the extracted "python version" archives on a local path (never downloaded).

Each file is a pickled dict: ``b'data'`` uint8 (N, 3072) = 1024 red, 1024 green, 1024 blue values per image,
each plane row-major 32x32, so a plain reshape to (N, 3, 32, 32) is already channel-first.
Pickles can run code when loaded; :class:`_ArrayUnpickler` only lets numpy arrays and builtins through.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from sweep.data._arrays import RawSplit, array_reader
from sweep.data._options import DataOptions, require_file, require_root
from sweep.data._types import DataError

CIFAR_SIDE = 32
CIFAR_ROW = 3 * CIFAR_SIDE * CIFAR_SIDE
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = "test_batch"
CIFAR10_META = "batches.meta"
CIFAR100_DIR = "cifar-100-python"
CIFAR100_TRAIN, CIFAR100_TEST, CIFAR100_META = "train", "test", "meta"
# Used only when batches.meta is absent (the official archive always has it).
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global except what numpy arrays need."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR file")
        return super().find_class(module, name)


def read_pickle(path: Path, what: str) -> dict[bytes, Any]:
    """Load one CIFAR pickle (Python 2 or 3) as a dict with bytes keys; DataError names the file."""
    require_file(path, what)
    try:
        with path.open("rb") as f:
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except Exception as exc:  # pickle raises many types on bad input (UnpicklingError, EOFError, KeyError, ...)
        raise DataError(f"malformed file {str(path)!r}: expected {what} ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise DataError(f"malformed file {str(path)!r}: expected {what}, got a {type(obj).__name__}")
    return {k.encode() if isinstance(k, str) else k: v for k, v in obj.items()}


def _entry(d: dict[bytes, Any], key: bytes, path: Path, what: str) -> Any:
    if key not in d:
        raise DataError(f"malformed file {str(path)!r}: expected {what}; key {key!r} missing (has {sorted(d)})")
    return d[key]


def read_batch(path: Path, label_key: bytes, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, 3, 32, 32) pixels and int64 labels of one batch file, checked against the format."""
    what = f"a CIFAR pickle with b'data' (N x {CIFAR_ROW} uint8) and {label_key!r} (N ints in 0..{n_classes - 1})"
    d = read_pickle(path, what)
    data = np.asarray(_entry(d, b"data", path, what))
    labels = np.asarray(_entry(d, label_key, path, what), dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_ROW or labels.shape != (len(data),):
        raise DataError(f"malformed file {str(path)!r}: expected {what}, got data {data.dtype} {data.shape} "
                        f"and {labels.shape[0] if labels.ndim else 0} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"malformed file {str(path)!r}: labels outside 0..{n_classes - 1}")
    return data.reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE), labels


def _read_split(folder: Path, files: tuple[str, ...], label_key: bytes, n_classes: int) -> RawSplit:
    parts = [read_batch(folder / f, label_key, n_classes) for f in files]
    pixels = np.concatenate([p for p, _ in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([y for _, y in parts])
    return RawSplit(labels, array_reader(pixels, 255.0))


def find_folder(opts: DataOptions, folder_name: str, marker: str) -> Path:
    """``data.root`` itself or its ``folder_name`` child, whichever holds ``marker``."""
    expected = f"{folder_name}/ (or that folder itself) with {marker}"
    root = require_root(opts, expected)
    for candidate in (root / folder_name, root):
        if (candidate / marker).is_file():
            return candidate
    raise DataError(f"data.root={str(root)!r}: expected {expected}; found neither "
                    f"{str(root / folder_name / marker)!r} nor {str(root / marker)!r}")


def _names(meta: dict[bytes, Any], key: bytes, path: Path, n: int) -> list[str]:
    names = [v.decode() if isinstance(v, bytes) else str(v) for v in _entry(meta, key, path, f"{key!r}")]
    if len(names) != n:
        raise DataError(f"malformed file {str(path)!r}: expected {n} names under {key!r}, got {len(names)}")
    return names


def load_cifar10_raw(opts: DataOptions) -> tuple[RawSplit, RawSplit, list[str]]:
    """50000 train / 10000 test images, 10 classes (names from batches.meta)."""
    folder = find_folder(opts, CIFAR10_DIR, CIFAR10_TRAIN[0])
    train = _read_split(folder, CIFAR10_TRAIN, b"labels", 10)
    test = _read_split(folder, (CIFAR10_TEST,), b"labels", 10)
    meta_path = folder / CIFAR10_META
    if not meta_path.is_file():
        return train, test, list(CIFAR10_CLASSES)
    meta = read_pickle(meta_path, "a CIFAR-10 meta pickle with b'label_names'")
    return train, test, _names(meta, b"label_names", meta_path, 10)


def load_cifar100_raw(opts: DataOptions) -> tuple[RawSplit, RawSplit, list[str]]:
    """50000 train / 10000 test images, 100 fine classes (names from meta)."""
    folder = find_folder(opts, CIFAR100_DIR, CIFAR100_TRAIN)
    meta_path = folder / CIFAR100_META
    meta = read_pickle(meta_path, "a CIFAR-100 meta pickle with b'fine_label_names'")
    classes = _names(meta, b"fine_label_names", meta_path, 100)
    train = _read_split(folder, (CIFAR100_TRAIN,), b"fine_labels", 100)
    test = _read_split(folder, (CIFAR100_TEST,), b"fine_labels", 100)
    return train, test, classes

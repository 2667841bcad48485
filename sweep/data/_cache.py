"""Decode a file set once: its uint8 rows written to a ``.npy`` file that later runs memory-map.

A sweep trains many trials on one data set; decoding every JPEG in every epoch of every trial is the cost that
``data.cache_dir`` removes. The file is named by a hash of what it holds (the files' paths, sizes and
modification times, the channel count and ``data.image_size``), written under a temporary name and renamed when
complete, so a crashed or concurrent writer never leaves a partial file under the final name. It is read with
``allow_pickle=False``: pixels only, never code.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from sweep.data._arrays import RawSplit, array_reader
from sweep.data._rows import Rows, iterate, sequential_batches
from sweep.data._types import DataError

CACHE_BATCH = 256  # rows decoded per batch while the cache is written


def cache_key(files: list[Path], channels: int, image_size: int | None) -> str:
    """A hash that changes when any file is added, removed, resized or touched, or the decoding changes."""
    h = hashlib.sha256(f"v1 {channels} {image_size}\n".encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def _fill(path: Path, split: RawSplit, num_workers: int) -> None:
    """Decode every row of ``split`` into a new ``.npy`` at ``path`` (temporary name, then rename)."""
    from sweep.safety import unique_suffix

    rows = Rows([(split, np.arange(len(split.labels)))])
    tmp = path.with_name(f".{path.name}.{unique_suffix()}")
    try:
        out = None
        start = 0
        for pixels, _ in iterate(rows, sequential_batches(len(rows), CACHE_BATCH), num_workers):
            if out is None:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(rows), *pixels.shape[1:]))
            out[start : start + len(pixels)] = pixels.numpy()
            start += len(pixels)
        assert out is not None
        out.flush()
        del out
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def cached_split(split: RawSplit, cache_dir: str, name: str, num_workers: int) -> RawSplit:
    """``split`` read from its uint8 cache file (written first when missing); only per-file splits change."""
    read = split.read
    if not getattr(read, "per_file", False):
        return split
    folder = Path(cache_dir).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"data.cache_dir={cache_dir!r}: cannot create it ({exc})") from exc
    key = cache_key(read.files, read.channels, read.image_size)  # type: ignore[attr-defined]
    path = folder / f"{name}-{key}.u8.npy"
    if not path.is_file():
        _fill(path, split, num_workers)
    pixels = np.load(path, mmap_mode="r", allow_pickle=False)
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or len(pixels) != len(split.labels):
        raise DataError(f"cache file {str(path)!r} holds {pixels.dtype} {pixels.shape}, expected uint8 rows for "
                        f"{len(split.labels)} images: delete it to rebuild")
    return RawSplit(split.labels, array_reader(pixels, 255.0))

"""``root/train/<class>/*`` and ``root/<test_dir>/<class>/*`` image files, decoded with Pillow.

Classes are the sorted sub-folder names of ``train`` (or only those listed in ``data.classes_file``, e.g. an
ImageNet-100 list; other folders are skipped in both splits); every held-out class must be one of them. Files
are only listed (and their headers read) up front; pixels are decoded for the rows asked for. Images are
resized to ``data.image_size`` or, when it is None, must all have one size. Channels: 1 when every image is
grayscale, else 3 (RGB; alpha is dropped). Streaming (:meth:`FileReader.u8`) decodes to uint8 in DataLoader
workers, with JPEG draft mode (DCT-domain downscaling) and Pillow's antialiased bilinear resize.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sweep.data._arrays import RawSplit, Reader, resize
from sweep.data._options import DataOptions, require_root
from sweep.data._types import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
GRAY_MODES = ("1", "L", "LA", "I;16", "I;16L", "I;16B")
UNSUPPORTED_MODES = ("I", "F")  # 32-bit int / float: no agreed [0, 1] scale
HEADER_THREADS = 8  # concurrent header reads when listing (ImageNet: 1.28M files)
_EXPECTED = "train/<class>/*.png|jpg and test/<class>/*.png|jpg (data.test_dir names the second folder)"


@dataclass(frozen=True)
class _Listing:
    """Files of one split with their labels, header sizes (W, H) and modes."""

    files: list[Path]
    labels: np.ndarray
    sizes: list[tuple[int, int]]
    modes: list[str]


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _class_dirs(split_dir: Path) -> dict[str, Path]:
    if not split_dir.is_dir():
        raise DataError(f"missing folder {str(split_dir)!r}: expected <class>/ sub-folders of images ({_EXPECTED})")
    dirs = {d.name: d for d in sorted(split_dir.iterdir()) if d.is_dir() and not d.name.startswith(".")}
    if not dirs:
        raise DataError(f"folder {str(split_dir)!r} has no <class>/ sub-folders ({_EXPECTED})")
    return dirs


def _header(path: Path) -> tuple[tuple[int, int], str]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.size, img.mode
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"malformed file {str(path)!r}: expected an image Pillow can read ({exc})") from exc


def _list_split(split_dir: Path, classes: list[str], subset: bool) -> _Listing:
    files: list[Path] = []
    labels: list[int] = []
    for name, folder in _class_dirs(split_dir).items():
        if name not in classes:
            if subset:
                continue
            raise DataError(f"folder {str(folder)!r}: class {name!r} is not among the train classes {classes}")
        found = _images_in(folder)
        if not found:
            raise DataError(f"folder {str(folder)!r} has no images (allowed suffixes {list(IMAGE_SUFFIXES)})")
        files += found
        labels += [classes.index(name)] * len(found)
    with ThreadPoolExecutor(HEADER_THREADS) as pool:  # file opens wait on the disk / network FS, not the CPU
        headers = list(pool.map(_header, files, chunksize=256))
    return _Listing(files, np.asarray(labels, dtype=np.int64), [h[0] for h in headers], [h[1] for h in headers])


def _check_sizes(listings: list[_Listing]) -> None:
    """Without ``data.image_size`` every image must share one size (batches need equal shapes)."""
    first = listings[0].sizes[0]
    for listing in listings:
        for path, size in zip(listing.files, listing.sizes):
            if size != first:
                raise DataError(f"file {str(path)!r} is {size[0]}x{size[1]} but {str(listings[0].files[0])!r} is "
                                f"{first[0]}x{first[1]} (WxH): set data.image_size to resize them all")


def _pixels(img: Any, channels: int) -> np.ndarray:
    """(H, W) or (H, W, 3) float32 in [0, 1]; 16-bit grayscale keeps its depth (scaled by 65535)."""
    if img.mode in UNSUPPORTED_MODES:
        raise ValueError(f"mode {img.mode!r} (32-bit) is not supported: save it as 8- or 16-bit")
    if img.mode.startswith("I;16"):
        gray = np.asarray(img, dtype=np.float32) / 65535.0
        return gray if channels == 1 else np.repeat(gray[:, :, None], 3, axis=2)
    return np.asarray(img.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255.0


def decode(path: Path, channels: int) -> torch.Tensor:
    """One image as float32 (C, H, W) in [0, 1]; DataError names a file Pillow cannot decode."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            arr = _pixels(img, channels)
    except (OSError, ValueError) as exc:
        raise DataError(f"malformed file {str(path)!r}: expected an 8- or 16-bit image ({exc})") from exc
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr))


def _u8_pixels(img: Any, channels: int) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8; 16-bit grayscale is rounded to 8 bits (65535 / 257 = 255)."""
    if img.mode in UNSUPPORTED_MODES:
        raise ValueError(f"mode {img.mode!r} (32-bit) is not supported: save it as 8- or 16-bit")
    if img.mode.startswith("I;16"):
        gray = np.round(np.asarray(img, dtype=np.float32) / 257.0).astype(np.uint8)
        return gray if channels == 1 else np.repeat(gray[:, :, None], 3, axis=2)
    return np.asarray(img.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)


def decode_u8(path: Path, channels: int, size: int | None) -> np.ndarray:
    """One image as uint8 (C, H, W), resized to ``size`` x ``size`` when given; DataError names a bad file."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            if size is not None and img.format == "JPEG":
                img.draft("L" if channels == 1 else "RGB", (size, size))  # decode at >= size, much cheaper
            arr = _u8_pixels(img, channels)
    except (OSError, ValueError) as exc:
        raise DataError(f"malformed file {str(path)!r}: expected an 8- or 16-bit image ({exc})") from exc
    if size is not None and arr.shape[:2] != (size, size):
        arr = np.asarray(Image.fromarray(arr).resize((size, size), Image.Resampling.BILINEAR))
    return arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))


class FileReader:
    """Decodes only the requested rows: float32 in [0, 1] (16-bit depth kept) when called, uint8 via :meth:`u8`."""

    per_file = True  # one decode per row: worth DataLoader worker processes
    max_value = 255.0

    def __init__(self, files: list[Path], channels: int, image_size: int | None) -> None:
        self.files, self.channels, self.image_size = files, channels, image_size

    def __call__(self, idx: np.ndarray) -> torch.Tensor:
        return torch.stack([resize(decode(self.files[i], self.channels)[None], self.image_size)[0] for i in idx])

    def u8(self, idx: np.ndarray) -> np.ndarray:
        return np.stack([decode_u8(self.files[i], self.channels, self.image_size) for i in idx])


def _reader(files: list[Path], channels: int, image_size: int | None) -> Reader:
    return FileReader(files, channels, image_size)


def read_class_list(path_text: str, available: list[str]) -> list[str]:
    """Sorted class names from ``data.classes_file`` (one per line, '#' comments); each must be a train folder."""
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise DataError(f"data.classes_file={path_text!r}: not a file (expected class folder names, one per line)")
    names = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    names = sorted(dict.fromkeys(n for n in names if n))
    missing = [n for n in names if n not in available]
    if not names or missing:
        raise DataError(f"data.classes_file={path_text!r}: " + (f"classes {missing[:5]} have no train/<class> "
                        "folder" if missing else "lists no class") + f" (train has {len(available)} classes)")
    return names


def load_image_folder_raw(opts: DataOptions) -> tuple[RawSplit, RawSplit, list[str]]:
    """Train / held-out splits from ``data.root``; labels index the sorted (kept) train class names."""
    root = require_root(opts, _EXPECTED)
    classes = list(_class_dirs(root / "train"))
    subset = opts.classes_file is not None
    if subset:
        classes = read_class_list(opts.classes_file, classes)  # type: ignore[arg-type]
    listings = [_list_split(root / split, classes, subset) for split in ("train", opts.test_dir)]
    if opts.image_size is None:
        _check_sizes(listings)
    gray = all(mode in GRAY_MODES for listing in listings for mode in listing.modes)
    channels = 1 if gray else 3
    train, test = (RawSplit(s.labels, _reader(s.files, channels, opts.image_size)) for s in listings)
    return train, test, classes

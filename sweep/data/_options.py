"""Read the data config (a ``DataConfig`` or an OmegaConf node) into checked, typed options."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep.data._types import DataError


@dataclass(frozen=True)
class DataOptions:
    """The fields of ``DataConfig`` that loading uses, checked once."""

    name: str
    root: str | None
    image_size: int | None
    max_train_samples: int | None
    max_test_samples: int | None
    split_seed: int
    unlabeled: bool = False  # stl10: also open unlabeled_X.bin (the SSL split's extra 100k images)
    classes_file: str | None = None  # image_folder: keep only the class folders listed here (ImageNet-100)
    test_dir: str = "test"  # image_folder: the held-out split's folder (ImageNet: "val")
    cache_dir: str | None = None  # streaming file sets: decode once into memory-mapped uint8 files here


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _optional_int(cfg: Any, field: str, lo: int) -> int | None:
    value = getattr(cfg, field, None)
    if value is None:
        return None
    if not _is_int(value) or value < lo:
        raise DataError(f"data.{field}={value!r}: allowed None or an int >= {lo}")
    return int(value)


def read_options(cfg: Any, names: tuple[str, ...]) -> DataOptions:
    """Attribute access only, so dataclasses and DictConfigs both work; DataError names the bad field."""
    name = getattr(cfg, "name", None)
    if name not in names:
        raise DataError(f"data.name={name!r}: allowed one of {list(names)}")
    root = getattr(cfg, "root", None)
    if root is not None and (not isinstance(root, str) or root == ""):
        raise DataError(f"data.root={root!r}: allowed None or a directory path")
    seed = getattr(cfg, "split_seed", 0)
    if not _is_int(seed) or seed < 0:
        raise DataError(f"data.split_seed={seed!r}: allowed an int >= 0")
    unlabeled = getattr(cfg, "unlabeled", False)
    if not isinstance(unlabeled, bool) or (unlabeled and name != "stl10"):
        raise DataError(f"data.unlabeled={unlabeled!r} with data.name={name!r}: allowed true only for 'stl10' "
                        "(its unlabeled_X.bin), else false")
    classes_file = getattr(cfg, "classes_file", None)
    if classes_file is not None and (not isinstance(classes_file, str) or name != "image_folder"):
        raise DataError(f"data.classes_file={classes_file!r} with data.name={name!r}: allowed None, or a text "
                        "file of class folder names (one per line) for 'image_folder'")
    test_dir = getattr(cfg, "test_dir", "test")
    if not isinstance(test_dir, str) or test_dir in ("", ".", "..") or "/" in test_dir:
        raise DataError(f"data.test_dir={test_dir!r}: allowed a folder name under data.root (e.g. 'test', 'val')")
    cache_dir = getattr(cfg, "cache_dir", None)
    if cache_dir is not None and (not isinstance(cache_dir, str) or cache_dir == ""):
        raise DataError(f"data.cache_dir={cache_dir!r}: allowed None or a directory path")
    return DataOptions(name=name, root=root, image_size=_optional_int(cfg, "image_size", 1),
                       max_train_samples=_optional_int(cfg, "max_train_samples", 1),
                       max_test_samples=_optional_int(cfg, "max_test_samples", 1), split_seed=int(seed),
                       unlabeled=unlabeled, classes_file=classes_file, test_dir=test_dir, cache_dir=cache_dir)


def require_root(opts: DataOptions, expected: str) -> Path:
    """``data.root`` as an existing directory; the error says what the directory should hold."""
    if opts.root is None:
        raise DataError(f"data.root is required for data.name={opts.name!r}: a directory holding {expected}")
    root = Path(opts.root).expanduser()
    if not root.is_dir():
        raise DataError(f"data.root={str(root)!r} is not a directory (data.name={opts.name!r} expects {expected})")
    return root


def require_file(path: Path, what: str) -> Path:
    """``path`` when it is a file; otherwise a DataError naming it and what it should be."""
    if not path.is_file():
        raise DataError(f"missing file {str(path)!r}: expected {what}")
    return path

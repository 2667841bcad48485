"""``load_dataset``: pick the loader by ``data.name``, then subsample, convert and resize the same way for all."""
from __future__ import annotations

from typing import Any

from sweep.data._arrays import materialize
from sweep.data._cifar import load_cifar10_raw, load_cifar100_raw
from sweep.data._embedded import load_digits_raw, load_mnist5k_raw
from sweep.data._image_folder import load_image_folder_raw
from sweep.data._options import read_options
from sweep.data._procedural import load_shapes_raw
from sweep.data._datasets import DATASETS, RawLoader
from sweep.data._stl10 import load_stl10_raw
from sweep.data._types import Dataset

BUILTIN_LOADERS: dict[str, RawLoader] = {
    "digits": load_digits_raw,
    "mnist5k": load_mnist5k_raw,
    "shapes": load_shapes_raw,
    "cifar10": load_cifar10_raw,
    "cifar100": load_cifar100_raw,
    "stl10": load_stl10_raw,
    "image_folder": load_image_folder_raw,
}
for _name, _loader in BUILTIN_LOADERS.items():
    DATASETS.register(_name, _loader)


def load_dataset(cfg: Any) -> Dataset:
    """Load ``cfg.name`` (a ``DataConfig`` or OmegaConf node): float32 images in [0, 1], int64 labels.

    ``max_train_samples`` / ``max_test_samples`` keep a stratified subset drawn with ``split_seed``;
    ``image_size`` resizes bilinearly. Raises DataError naming the field or path on bad input; never downloads.
    """
    opts = read_options(cfg, tuple(DATASETS.names()))
    train_raw, test_raw, classes = DATASETS.get(opts.name)(opts)
    train = materialize(train_raw, opts.max_train_samples, opts.split_seed, opts.image_size, f"{opts.name} train")
    test = materialize(test_raw, opts.max_test_samples, opts.split_seed, opts.image_size, f"{opts.name} test")
    c, h, w = train.images.shape[1:]
    return Dataset(name=opts.name, train=train, test=test, classes=classes, input_shape=(int(c), int(h), int(w)))

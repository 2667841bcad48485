"""``DATASETS``: ``data.name`` -> raw loader. A new data set is a module with a loader decorated
``@DATASETS.register("name")``, imported by ``sweep.data._load`` (next to the built-in ones)."""
from __future__ import annotations

from collections.abc import Callable

from sweep.data._arrays import RawSplit
from sweep.data._options import DataOptions
from sweep.registry import Registry

# options -> (train split, test split, class names); ``load_dataset`` subsamples, converts and resizes the result
RawLoader = Callable[[DataOptions], tuple[RawSplit, RawSplit, list[str]]]
DATASETS: Registry[RawLoader] = Registry("dataset", field="data.name")

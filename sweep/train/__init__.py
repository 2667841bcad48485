"""The SSL trial job: ``train(cfg) -> record`` and its Hydra entry ``sweep.train.job:main``.

``train`` is imported lazily so that light helpers (records, splits) do not pull in Hydra and the models.
"""
from __future__ import annotations

from typing import Any

__all__ = ["train"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from sweep.train.job import train

        return train
    raise AttributeError(f"module 'sweep.train' has no attribute {name!r}")

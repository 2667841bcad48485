"""The data contract: labelled image tensors split into train / test, and the one error type of the package."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from sweep.errors import SweepError


class DataError(SweepError, ValueError):
    """Bad data input: the message names the config field or the path, and what was expected there."""


@dataclass
class ImageSet:
    """Images float32 (N, C, H, W) in [0, 1] and their int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != torch.float32:
            raise DataError(f"ImageSet.images: expected float32 (N, C, H, W), got {self.images.dtype} "
                            f"{tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise DataError(f"ImageSet.labels: expected int64 ({self.images.shape[0]},), got {self.labels.dtype} "
                            f"{tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class Dataset:
    """A named dataset: ``classes[k]`` names label ``k``; ``input_shape`` is (C, H, W) of every image."""

    name: str
    train: ImageSet
    test: ImageSet
    classes: list[str]
    input_shape: tuple[int, int, int]

"""Input checks and tensor conversion shared by the readouts.

Readouts run on cached features of arbitrary provenance (saved ``.npy`` files, tensors on a GPU), so every
public function validates first and names the offending argument: a silent NaN or a float label would
otherwise turn into a plausible-looking accuracy.
"""
from __future__ import annotations

import re
from typing import Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]

DEVICE_CHOICES = "'auto', 'cpu', 'cuda' or 'cuda:N'"
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class ReadoutInputError(ValueError):
    """Bad readout input; the message names the argument and what is allowed."""


def resolve_device(device: str) -> torch.device:
    """``"auto"`` means CUDA when available, else CPU; anything else must be a valid torch device string."""
    if not isinstance(device, str) or not _DEVICE_PATTERN.match(device):
        raise ReadoutInputError(f"device={device!r} is not allowed; use {DEVICE_CHOICES}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ReadoutInputError(f"device={device!r} requested but torch sees no CUDA device; "
                                "use 'cpu' or 'auto'")
    return torch.device(device)


def compute_dtype(device: torch.device) -> torch.dtype:
    """float64 on CPU (probes are small; exact, reproducible optima), float32 on GPU (speed)."""
    return torch.float64 if device.type == "cpu" else torch.float32


def features_tensor(x: ArrayLike, name: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(N, D) finite float features as a tensor on ``device``; raises naming ``name`` otherwise."""
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise ReadoutInputError(f"{name} must be a numpy array or torch tensor of shape (N, D); "
                                f"got {type(x).__name__}")
    if x.ndim != 2:
        raise ReadoutInputError(f"{name} must have shape (N, D); got ndim={x.ndim} shape={tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ReadoutInputError(f"{name} must have at least one row and one column; "
                                f"got shape {tuple(x.shape)}")
    is_float = x.is_floating_point() if isinstance(x, torch.Tensor) else np.issubdtype(x.dtype, np.floating)
    if not is_float:
        raise ReadoutInputError(f"{name} must have a floating dtype; got {x.dtype}")
    t = torch.as_tensor(x).to(device=device, dtype=dtype)
    if not bool(torch.isfinite(t).all()):
        raise ReadoutInputError(f"{name} contains NaN or inf values; features must be finite")
    return t


def labels_tensor(y: ArrayLike, name: str, n_rows: int, device: torch.device) -> torch.Tensor:
    """(N,) non-negative int64 labels matching ``n_rows``; raises naming ``name`` otherwise."""
    if not isinstance(y, (np.ndarray, torch.Tensor)):
        raise ReadoutInputError(f"{name} must be a numpy array or torch tensor of shape (N,); "
                                f"got {type(y).__name__}")
    if y.ndim != 1:
        raise ReadoutInputError(f"{name} must have shape (N,); got shape {tuple(y.shape)}")
    if not _is_integer_dtype(y):
        raise ReadoutInputError(f"{name} must have an integer dtype (class indices); got {y.dtype}")
    if y.shape[0] != n_rows:
        raise ReadoutInputError(f"{name} has {y.shape[0]} labels but the features have {n_rows} rows")
    t = torch.as_tensor(y).to(device=device, dtype=torch.int64)
    if bool((t < 0).any()):
        raise ReadoutInputError(f"{name} contains negative labels; labels must be class indices >= 0")
    return t


def _is_integer_dtype(y: ArrayLike) -> bool:
    if isinstance(y, torch.Tensor):
        return not (y.is_floating_point() or y.is_complex() or y.dtype == torch.bool)
    return bool(np.issubdtype(y.dtype, np.integer))


def require_two_classes(y: torch.Tensor, name: str) -> None:
    """A split with one class cannot train a classifier nor measure one meaningfully."""
    n_classes = int(torch.unique(y).numel())
    if n_classes < 2:
        raise ReadoutInputError(f"{name} has {n_classes} distinct class(es); each split needs at least 2")


def require_same_dim(tensors: dict[str, torch.Tensor]) -> None:
    """All feature sets of one readout must live in the same D-dimensional space."""
    dims = {name: t.shape[1] for name, t in tensors.items()}
    if len(set(dims.values())) > 1:
        listed = ", ".join(f"{name}: D={dim}" for name, dim in dims.items())
        raise ReadoutInputError(f"feature dimensions differ ({listed}); all splits must share D")


def require_positive_int(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ReadoutInputError(f"{name} must be an integer >= 1; got {value!r}")

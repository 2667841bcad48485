"""Input checks shared by every metric: one error type, one message style.

Metrics run on embeddings produced by training jobs that may diverge; a NaN must surface as a clear
error naming the problem, never as a silently wrong number.
"""
from __future__ import annotations

import warnings
from typing import Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]


class MetricInputError(ValueError):
    """An embedding array a metric cannot be computed on (wrong shape, too small, NaN/inf)."""


def as_tensor(x: ArrayLike, name: str) -> torch.Tensor:
    """View ``x`` as a floating torch tensor without copying when possible (never written to)."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
    elif isinstance(x, np.ndarray):
        if x.dtype.kind not in "biuf":
            raise MetricInputError(f"{name} must have a real numeric dtype, got {x.dtype}")
        with warnings.catch_warnings():  # read-only arrays: we never write, so torch's warning is noise
            warnings.simplefilter("ignore", UserWarning)
            t = torch.from_numpy(np.ascontiguousarray(x))
    else:
        raise MetricInputError(f"{name} must be a numpy.ndarray or torch.Tensor, got {type(x).__name__}")
    if not t.is_floating_point():
        if t.is_complex():
            raise MetricInputError(f"{name} must be real-valued, got dtype {t.dtype}")
        t = t.to(torch.float64)
    return t


def check_matrix(x: ArrayLike, name: str = "x", min_rows: int = 2, check_values: bool = True) -> torch.Tensor:
    """Validate an (N, D) embedding matrix: 2-D, N >= min_rows, D >= 2, all finite (if check_values)."""
    t = as_tensor(x, name)
    if t.ndim != 2:
        raise MetricInputError(
            f"{name} must be a 2-D (N, D) array, got ndim={t.ndim} (shape {tuple(t.shape)})"
        )
    check_sizes(t.shape[0], t.shape[1], name, min_rows)
    if check_values:
        check_finite(t, name)
    return t


def check_sizes(n: int, d: int, name: str, min_rows: int = 2) -> None:
    """Raise unless there are at least ``min_rows`` samples and 2 features."""
    if n < min_rows:
        raise MetricInputError(f"{name} needs N >= {min_rows} samples, got N={n}")
    if d < 2:
        raise MetricInputError(f"{name} needs D >= 2 features, got D={d}")


def check_finite(t: torch.Tensor, name: str) -> None:
    """Raise naming how many entries are NaN or inf."""
    bad = int((~torch.isfinite(t)).sum().item())
    if bad:
        raise MetricInputError(f"{name} contains NaN or inf values ({bad} non-finite entries)")


def to_numpy64(x: ArrayLike, name: str = "x") -> np.ndarray:
    """A validated float64 numpy copy-or-view of an (N, D) matrix, for scikit-learn and scipy."""
    t = check_matrix(x, name)
    return t.to("cpu", torch.float64).numpy()

"""Input checks shared by every metric: one error type, one message style.

Metrics run on embeddings produced by training jobs that may diverge; a NaN must surface as a clear
error naming the problem, never as a silently wrong number.
"""
from __future__ import annotations

import math
import numbers
import warnings
from typing import Optional, Union

import numpy as np
import torch

from sweep.errors import SweepError

ArrayLike = Union[np.ndarray, torch.Tensor]


class MetricInputError(SweepError, ValueError):
    """An embedding array a metric cannot be computed on (wrong shape, too small, NaN/inf)."""


def as_tensor(x: ArrayLike, name: str) -> torch.Tensor:
    """View ``x`` as a floating torch tensor without copying when possible (never written to)."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
    elif isinstance(x, np.ndarray):
        if x.dtype.kind not in "biuf":
            raise MetricInputError(f"{name} must have a real numeric dtype, got {x.dtype}")
        # np.ascontiguousarray would turn a 0-D array into a 1-D one (and the error would say ndim=1)
        contiguous = x if x.flags.c_contiguous else np.ascontiguousarray(x)
        with warnings.catch_warnings():  # read-only arrays: we never write, so torch's warning is noise
            warnings.simplefilter("ignore", UserWarning)
            t = torch.from_numpy(contiguous)
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


def pow2_exponent(amax: float) -> int:
    """e such that amax / 2**e lies in [0.5, 1) (0 for amax == 0): dividing by 2**e is exact."""
    return math.frexp(amax)[1] if amax > 0.0 else 0


def scale_pow2(t: torch.Tensor, e: int) -> torch.Tensor:
    """t * 2**e, exact (a power of two), in at most two steps so the factor itself never over/underflows."""
    while e:
        step = max(-1000, min(1000, e))
        t = t * math.ldexp(1.0, step)
        e -= step
    return t


def unit_scaled_numpy64(x: ArrayLike, name: str = "x") -> tuple[np.ndarray, int]:
    """(x / 2**e as float64 numpy, e) with max|x / 2**e| in [0.5, 1): a validated (N, D) matrix brought to
    unit scale by an exact power of two, so that squares and distances neither overflow (|x| ~ 1e200) nor
    underflow (|x| ~ 1e-170). Metrics invariant to a global scale give the same value on the result."""
    t = check_matrix(x, name)
    e = pow2_exponent(float(t.abs().max().item()))
    return scale_pow2(t.to("cpu", torch.float64), -e).numpy(), e


ROW_METRICS_MAX_ROWS = 2048  # rows the clustering and nearest-neighbour metrics read (see row_subsample)
ROW_SUBSAMPLE_SEED = 0


def row_subsample(n: int, max_rows: int = ROW_METRICS_MAX_ROWS) -> Optional[np.ndarray]:
    """Indices of the rows the clustering and nearest-neighbour metrics read, or None for all of them.

    Why: those metrics cost O(N^2 D) (silhouette, TwoNN, cluster learnability) or k-means passes, against
    O(N D^2) for the spectral ones; above ``max_rows`` rows they read a uniform subsample of exactly ``max_rows``
    rows drawn without replacement by ``numpy.random.default_rng(ROW_SUBSAMPLE_SEED)``, kept in their original
    order, so every such metric of one matrix reads the same rows. Up to ``max_rows`` rows (every monitoring
    split, and LabelFreeMonitor's 2048 rows) they read all rows, as before."""
    if n <= max_rows:
        return None
    return np.sort(np.random.default_rng(ROW_SUBSAMPLE_SEED).choice(n, max_rows, replace=False))


def unit_scaled_rows(x: ArrayLike, name: str = "x", max_rows: int = ROW_METRICS_MAX_ROWS) -> np.ndarray:
    """The validated (all rows finite) :func:`row_subsample` of x at unit scale, as float64 numpy (see
    :func:`unit_scaled_numpy64`: the metrics that read rows are invariant to a global scale)."""
    t = check_matrix(x, name)
    idx = row_subsample(t.shape[0], max_rows)
    if idx is not None:
        t = t[torch.from_numpy(idx).to(t.device)]
    e = pow2_exponent(float(t.abs().max().item()))
    return scale_pow2(t.to("cpu", torch.float64), -e).numpy()


def check_number(value: object, name: str, *, minimum: float = 0.0, strict: bool = False) -> float:
    """A finite real number >= minimum (> minimum when ``strict``); raises naming ``name`` otherwise."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    v = float(value) if ok else math.nan  # type: ignore[arg-type]
    if not ok or not math.isfinite(v) or v < minimum or (strict and v == minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise MetricInputError(f"{name} must be a finite number {bound}, got {name}={value!r}")
    return v


def check_integer(value: object, name: str) -> int:
    """An integer (int or numpy integer, not bool, not a float such as 2.7); raises naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise MetricInputError(f"{name} must be an integer, got {name}={value!r}")
    return int(value)

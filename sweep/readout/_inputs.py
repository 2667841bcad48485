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

from sweep.errors import SweepError

ArrayLike = Union[np.ndarray, torch.Tensor]

DEVICE_CHOICES = "'auto', 'cpu', 'cuda' or 'cuda:N'"
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class ReadoutInputError(SweepError, ValueError):
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
    """float64 on every device: the probe's parameters, logits and loss need it for the line search to resolve
    progress down to a 1e-6 gradient. The expensive products of large problems run on a float32 copy of the
    features anyway (see :mod:`sweep.readout._linear`), so a GPU keeps its float32 speed where it matters and
    the optimum does not depend on the device (with float32 parameters the fit stalled at |grad| ~ 1e-4)."""
    del device
    return torch.float64


def source_tensor(x: ArrayLike, name: str, device: torch.device) -> torch.Tensor:
    """(N, D) finite float features as a tensor on ``device`` in their own dtype; raises naming ``name``.

    Finiteness is checked in the input's dtype, before any conversion: float64 features of size 1e39 are
    finite even though they exceed float32's range (callers rescale before converting, see ``pow2_scale``).
    """
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
    t = x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    if t.dtype == torch.float64 and device.type == "mps":  # pragma: no cover - MPS has no float64
        t = t.to(torch.float32)
    t = t.to(device=device)
    if not bool(torch.isfinite(t).all()):
        raise ReadoutInputError(f"{name} contains NaN or inf values; features must be finite")
    return t


def pow2_exponents(t: torch.Tensor, dim: int) -> torch.Tensor:
    """int64 exponents e with max |t| / 2**e in [0.5, 1) along ``dim`` (0: per column, 1: per row); 0 where
    the slice is all zero. Dividing by 2**e is exact, so rescaling this way changes no digit of the data."""
    amax = t.abs().amax(dim=dim).to(torch.float64)
    _, e = torch.frexp(amax)
    return torch.where(amax > 0, e.to(torch.int64), torch.zeros_like(e, dtype=torch.int64))


def pow2_scale(t: torch.Tensor, exponents: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """t / 2**exponents (broadcast along ``dim`` as in :func:`pow2_exponents`), returned in ``dtype``.

    The multiply runs in float64 (any source dtype converts exactly) with factors clamped to the float64
    range and applied in two steps when needed, so data from 1e-300 to 1e300 reaches unit scale before the
    conversion to a narrower ``dtype`` can overflow or underflow.
    """
    shape = (1, -1) if dim == 0 else (-1, 1)
    e = (-exponents).to(t.device).reshape(shape)
    first = e.clamp(-1000, 1000)
    out = t.to(torch.float64) * _pow2(first)  # always a new tensor (callers may modify it in place)
    rest = e - first
    if bool((rest != 0).any()):
        out.mul_(_pow2(rest))
    return out.to(dtype)


def _pow2(e: torch.Tensor) -> torch.Tensor:
    """2.0**e in float64 for integer e in [-1000, 1000] (exact)."""
    return torch.ldexp(torch.ones(e.shape, dtype=torch.float64, device=e.device), e)


def features_tensor(x: ArrayLike, name: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(N, D) finite float features as a tensor on ``device`` in ``dtype``; raises naming ``name`` otherwise
    (also when finite values do not fit ``dtype``: rescale with :func:`pow2_scale` to avoid that)."""
    t = source_tensor(x, name, device).to(dtype)
    if not bool(torch.isfinite(t).all()):
        raise ReadoutInputError(f"{name} has values beyond the range of {dtype}; rescale them first")
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


def encode_labels(classes: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Column index of each label in the sorted label ids ``classes``; -1 for ids not among them.

    Labels are arbitrary non-negative integers (ids 0, 1000, 2000 or 10**9 are fine): probes work on
    0..C-1, so memory and time depend on the number of classes present, never on the largest id.
    """
    idx = torch.searchsorted(classes, y).clamp(max=classes.numel() - 1)
    return torch.where(classes[idx] == y, idx, torch.full_like(idx, -1))


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

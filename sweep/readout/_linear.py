"""Linear probe: multinomial logistic regression on frozen features, L2 chosen on val, reported on test.

Model: features are standardised with the statistics of the split the probe is fitted on, then
``logits = z @ W + b``. Objective (convex; strictly convex in W for l2 > 0, so the optimum is unique and
the result does not depend on initialisation, thread count or device beyond floating-point rounding)::

    J(W, b) = mean_i CE(softmax(z_i W + b), y_i) + (l2 / 2) * ||W||_F^2      (bias not penalised)

the objective of scikit-learn's ``LogisticRegression(C=1 / (N * l2))`` on the standardised features, minimised
until max|grad J| <= tol (the criterion sklearn's lbfgs uses), or ``max_iter`` iterations, or a step that
changes nothing at float64 precision (``converged`` tells).

Solver (``_fit_path``): L-BFGS with two additions that change its speed, not its optimum.

* Preconditioning: the initial inverse-Hessian of the L-BFGS recursion is (A (x) S + l2 I)^-1 instead of a
  multiple of I, where S = z^T z / N is the feature correlation (eigendecomposed once per probe) and A the
  softmax curvature mean(diag p - p p^T) at the start of each fit. This Kronecker model of the Hessian is
  exact for uncorrelated classes and features; on correlated (real) features it cuts the iterations 2-3x.
* One pass over the L2 grid: the fits run from the largest L2 (the best-conditioned problem, fast from zero)
  to the smallest, each starting from the previous optimum extrapolated along log(l2), so every fit starts
  close to its optimum. (No closed form exists for this objective.)

Small CPU problems (N * D < ``_FAST_MIN_ELEMENTS``) run the same preconditioned L-BFGS idea through scipy's
compiled L-BFGS-B instead (:mod:`sweep.readout._lbfgsb`: the preconditioner as a change of variables, same
objective and stopping rule); there the torch loop's ~1 ms of dispatch per iteration was the whole cost.

Each iteration costs two products of the data with a (D, C) matrix (the line search reuses z @ d for every
trial step). For large problems these run in float32 on a float32 copy of z -- their rounding (~1e-8 on the
gradient) is far below the tolerance -- and convergence is always confirmed on an exact float64 gradient
(the fit continues in float64 if that check fails). Threads: :mod:`sweep.readout._threads`.

Robustness: features are first divided, per column, by the power of two nearest above their largest |value|
on the fit split (exact), so features of size 1e-13 or 1e200 give the same probe as unit-scale ones; a
column is constant (centred, not scaled) when its standard deviation is <= 1e-12 of its largest |value|,
a relative test. Label ids are arbitrary non-negative integers: the classes are the ids present in the fit
split, mapped to 0..C-1 (a label id of 10**9 costs nothing); val / test rows of classes the probe never saw
count as errors.

Protocol of :func:`linear_probe`: for each L2 of the grid fit on ``train`` only and score on ``val``;
pick the best val accuracy (ties -> the largest L2, the simpler model); report that same train-fitted
model on ``test``. There is no refit on train+val: val picks, test reports, and the test split never
influences any choice.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn.functional as F

from sweep.config.schema import ReadoutConfig
from sweep.readout._inputs import (
    ArrayLike,
    ReadoutInputError,
    compute_dtype,
    encode_labels,
    labels_tensor,
    pow2_exponents,
    pow2_scale,
    require_positive_int,
    require_same_dim,
    require_two_classes,
    resolve_device,
    source_tensor,
)
from sweep.readout._lbfgs import _Fit, _fit_path, _mm, _Problem
from sweep.readout._threads import limit_threads, readout_threads

_DEFAULTS = ReadoutConfig()
_CONSTANT_REL = 1e-12  # std <= this * max|column| on the fit split: a constant column (centred, not scaled)
RISK_LOSSES = ("error", "log_loss")


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of :func:`linear_probe`; ``test_accuracy`` comes from the model that ``val`` selected."""

    val_accuracy: float
    test_accuracy: float
    best_l2: float
    val_accuracy_by_l2: dict[float, float] = field(default_factory=dict)
    train_accuracy: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python copy for JSON records (``json.dumps`` turns the L2 keys into strings)."""
        return {
            "val_accuracy": self.val_accuracy,
            "test_accuracy": self.test_accuracy,
            "best_l2": self.best_l2,
            "val_accuracy_by_l2": dict(self.val_accuracy_by_l2),
            "train_accuracy": self.train_accuracy,
        }


@dataclass(frozen=True, eq=False)  # tensors: compare fields explicitly, not with ==
class LinearClassifier:
    """A fitted probe: exact power-of-two rescaling + standardiser (fit-split statistics) + linear map.

    ``logits(x) = ((x / 2**col_exponents - mean) / scale) @ weight + bias``; ``mean`` and ``scale`` are in the
    rescaled units. Column k of ``weight`` is the class with label id ``classes[k]`` (``predict`` returns
    label ids); a class of ``classes`` absent from the fit split has bias -inf (never predicted).
    """

    mean: torch.Tensor
    scale: torch.Tensor
    weight: torch.Tensor  # (D, K)
    bias: torch.Tensor  # (K,)
    l2: float
    n_iter: int
    converged: bool  # max|grad| <= tol at the end
    col_exponents: Optional[torch.Tensor] = None  # (D,) int64; None: no rescaling
    classes: Optional[torch.Tensor] = None  # (K,) sorted int64 label ids; None: 0..K-1

    @property
    def n_classes(self) -> int:
        return int(self.weight.shape[1])

    @property
    def label_ids(self) -> torch.Tensor:
        if self.classes is not None:
            return self.classes
        return torch.arange(self.n_classes, device=self.weight.device)

    def transform(self, x: ArrayLike, name: str = "x") -> torch.Tensor:
        """Validated features, rescaled like the fit split, in the probe's dtype (not yet standardised)."""
        t = source_tensor(x, name, self.weight.device)
        if t.shape[1] != self.weight.shape[0]:
            raise ReadoutInputError(f"{name} has D={t.shape[1]} but the probe was fitted on "
                                    f"D={self.weight.shape[0]}")
        return self._rescale(t)

    def _rescale(self, t: torch.Tensor) -> torch.Tensor:
        """A validated source-dtype tensor in the probe's rescaled units and dtype."""
        if self.col_exponents is None:
            return t.to(self.weight.dtype)
        return pow2_scale(t, self.col_exponents, 0, self.weight.dtype)

    def logits(self, x: ArrayLike, name: str = "x") -> torch.Tensor:
        return self._logits(self.transform(x, name))

    def _logits(self, z: torch.Tensor) -> torch.Tensor:
        return ((z - self.mean) / self.scale) @ self.weight + self.bias

    def predict(self, x: ArrayLike, name: str = "x") -> torch.Tensor:
        """Predicted label ids."""
        return self.label_ids[self.logits(x, name).argmax(dim=1)]

    def risk(self, x: ArrayLike, y: ArrayLike, loss: str = "error", name: str = "x") -> float:
        """0-1 error (``loss="error"``) or mean cross-entropy (``"log_loss"``) on (x, y)."""
        logits = self.logits(x, name)
        labels = labels_tensor(y, f"{name} labels", logits.shape[0], logits.device)
        return _risk_from_logits(logits, encode_labels(self.label_ids, labels), loss, self.n_classes)

    def accuracy(self, x: ArrayLike, y: ArrayLike, name: str = "x") -> float:
        return 1.0 - self.risk(x, y, "error", name)


def _risk_from_logits(logits: torch.Tensor, y: torch.Tensor, loss: str, n_classes: int) -> float:
    """Risk with ``y`` given as column indices (-1: a class the probe does not know, always an error)."""
    if loss == "error":
        return float((logits.argmax(dim=1) != y).double().mean().item())
    if loss == "log_loss":
        if bool((y < 0).any()) or int(y.max()) >= n_classes:
            raise ReadoutInputError(f"labels contain classes the probe does not know (it knows {n_classes}); "
                                    "log_loss is undefined for unseen classes")
        return float(F.cross_entropy(logits.double(), y).item())
    raise ReadoutInputError(f"loss={loss!r} is not allowed; use one of {RISK_LOSSES}")


# ----------------------------------------------------------------------------- problem set-up
@dataclass
class _Prepared:
    """A fit split ready for the solver, and the transform to apply to other splits."""

    z: torch.Tensor  # (N, D) standardised, compute dtype
    y: torch.Tensor  # (N,) column indices 0..K-1 among the classes present in the fit split
    present: torch.Tensor  # (K,) label ids present in the fit split (sorted)
    col_exponents: torch.Tensor
    mean: torch.Tensor
    scale: torch.Tensor


def _standardiser(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Column mean and std of rescaled features (max |column| in [0.5, 1)); constant columns get scale 1."""
    mean = z.mean(dim=0)
    scale = z.std(dim=0, unbiased=False)
    top = z.abs().amax(dim=0)
    scale = torch.where(scale <= _CONSTANT_REL * top, torch.ones_like(scale), scale)
    return mean, scale


def _prepare(x: torch.Tensor, labels: torch.Tensor, dtype: torch.dtype) -> _Prepared:
    """Rescale (per column, exact), standardise, and map the labels to 0..K-1 of the fit split."""
    exps = pow2_exponents(x, 0)
    z = pow2_scale(x, exps, 0, dtype)
    mean, scale = _standardiser(z)
    present = torch.unique(labels)
    z.sub_(mean).div_(scale)  # z is a fresh tensor (pow2_scale always multiplies): standardise in place
    return _Prepared(z=z, y=encode_labels(present, labels), present=present, col_exponents=exps, mean=mean,
                     scale=scale)


def _apply(prep: _Prepared, x: torch.Tensor) -> torch.Tensor:
    """Another split through the fit split's rescaling and standardiser."""
    return pow2_scale(x, prep.col_exponents, 0, prep.z.dtype).sub_(prep.mean).div_(prep.scale)


def _classifier(prep: _Prepared, fit: "_Fit", l2: float, classes: torch.Tensor) -> LinearClassifier:
    """Embed a fit on the present classes into the columns of ``classes`` (absent ones: bias -inf)."""
    cols = encode_labels(classes, prep.present)
    weight = torch.zeros(prep.z.shape[1], classes.numel(), dtype=prep.z.dtype, device=prep.z.device)
    bias = torch.full((classes.numel(),), -math.inf, dtype=prep.z.dtype, device=prep.z.device)
    weight[:, cols] = fit.weight
    bias[cols] = fit.bias
    return LinearClassifier(mean=prep.mean, scale=prep.scale, weight=weight, bias=bias, l2=float(l2),
                            n_iter=fit.n_iter, converged=fit.converged, col_exponents=prep.col_exponents,
                            classes=classes)


def _work(n: int, d: int, k: int) -> float:
    return float(n) * d * max(k, 1)


# ----------------------------------------------------------------------------- public API
def _check_l2(l2: float, name: str = "l2") -> float:
    if isinstance(l2, bool) or not isinstance(l2, (int, float)) or not math.isfinite(l2) or l2 < 0:
        raise ReadoutInputError(f"{name} must be a finite number >= 0; got {l2!r}")
    return float(l2)


def _check_grid(l2_grid: Sequence[float]) -> list[float]:
    if isinstance(l2_grid, (str, bytes)) or not isinstance(l2_grid, Sequence) or len(l2_grid) == 0:
        raise ReadoutInputError(f"l2_grid must be a non-empty sequence of numbers >= 0; got {l2_grid!r}")
    grid = [_check_l2(v, "l2_grid entries") for v in l2_grid]
    if len(set(grid)) != len(grid):
        raise ReadoutInputError(f"l2_grid must not repeat values; got {list(l2_grid)}")
    return grid


def _check_tol(tol: float) -> float:
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (math.isfinite(tol) and tol > 0):
        raise ReadoutInputError(f"tol must be a finite number > 0; got {tol!r}")
    return float(tol)


def _fit(x: torch.Tensor, labels: torch.Tensor, classes: torch.Tensor, l2: float, max_iter: int, tol: float,
         threads: Optional[int] = None) -> LinearClassifier:
    """One probe on validated tensors (x in its source dtype, labels ids); ``classes``: the label ids the
    classifier has columns for (a superset of the fit split's)."""
    prep = _prepare(x, labels, compute_dtype(x.device))
    n_threads = readout_threads(_work(*prep.z.shape, prep.present.numel()), threads)
    with limit_threads(n_threads):
        fit = _fit_path(_Problem(prep.z, prep.y, prep.present.numel()), [l2], max_iter, tol)[l2]
    return _classifier(prep, fit, l2, classes)


def fit_linear_classifier(
    x: ArrayLike,
    y: ArrayLike,
    *,
    l2: float,
    n_classes: int | None = None,
    max_iter: int = _DEFAULTS.max_iter,
    tol: float = _DEFAULTS.tol,
    device: str = _DEFAULTS.device,
    name: str = "x",
    threads: Optional[int] = None,
) -> LinearClassifier:
    """Fit one probe with a fixed L2 on (x, y).

    Classes: the label ids present in ``y`` (any non-negative integers), or 0..n_classes-1 when
    ``n_classes`` is given (absent ones are never predicted). ``threads``: see :mod:`sweep.readout._threads`.
    """
    dev = resolve_device(device)
    t = source_tensor(x, name, dev)
    labels = labels_tensor(y, f"{name} labels", t.shape[0], dev)
    require_two_classes(labels, name)
    require_positive_int(max_iter, "max_iter")
    if n_classes is None:
        classes = torch.unique(labels)
    else:
        require_positive_int(n_classes, "n_classes")
        if int(labels.max()) >= n_classes:
            raise ReadoutInputError(f"n_classes={n_classes} but {name} labels go up to {int(labels.max())}")
        classes = torch.arange(int(n_classes), device=dev)
    return _fit(t, labels, classes, _check_l2(l2), max_iter, _check_tol(tol), threads)


def select_l2(val_accuracy_by_l2: dict[float, float]) -> float:
    """Best val accuracy; ties go to the largest L2 (the most regularised, simplest model)."""
    if not val_accuracy_by_l2:
        raise ReadoutInputError("val_accuracy_by_l2 is empty; need at least one L2 value")
    return max(val_accuracy_by_l2, key=lambda l2: (val_accuracy_by_l2[l2], l2))


def linear_probe(
    train_x: ArrayLike,
    train_y: ArrayLike,
    val_x: ArrayLike,
    val_y: ArrayLike,
    test_x: ArrayLike,
    test_y: ArrayLike,
    l2_grid: Sequence[float] = tuple(_DEFAULTS.l2_grid),
    max_iter: int = _DEFAULTS.max_iter,
    device: str = _DEFAULTS.device,
    tol: float = _DEFAULTS.tol,
    threads: Optional[int] = None,
) -> ProbeResult:
    """Train on ``train`` per L2, choose the L2 on ``val``, report that model's accuracy on ``test``.

    Deterministic (zero init, full-batch L-BFGS along the L2 path). ``device="auto"`` uses CUDA when
    available, else CPU (float64 parameters on both; large problems multiply on a float32 copy of the
    features). Label ids are arbitrary non-negative integers (remapped to the classes present in train).
    ``threads``: CPU threads; None picks cores / concurrent readout jobs, 1 for small problems (see
    :mod:`sweep.readout._threads`). Raises :class:`ReadoutInputError` (a ValueError) naming the
    bad argument: shapes, integer label dtype, NaN/inf features, a split with fewer than 2 classes, differing
    D, bad grid.
    """
    grid = _check_grid(l2_grid)
    require_positive_int(max_iter, "max_iter")
    tol = _check_tol(tol)
    dev = resolve_device(device)
    splits = _load_splits({"train": (train_x, train_y), "val": (val_x, val_y), "test": (test_x, test_y)}, dev)
    (xtr, ytr), (xva, yva), (xte, yte) = splits["train"], splits["val"], splits["test"]
    prep = _prepare(xtr, ytr, compute_dtype(dev))
    n_classes = prep.present.numel()
    n_threads = readout_threads(_work(*prep.z.shape, n_classes), threads)
    with limit_threads(n_threads):
        fits = _fit_path(_Problem(prep.z, prep.y, n_classes), grid, max_iter, tol)
        zva, zte = _apply(prep, xva), _apply(prep, xte)
        va_idx, te_idx = encode_labels(prep.present, yva), encode_labels(prep.present, yte)

        def accuracy(fit: _Fit, z: torch.Tensor, y_idx: torch.Tensor) -> float:
            return 1.0 - _risk_from_logits(_mm(z, fit.weight) + fit.bias, y_idx, "error", n_classes)

        val_acc = {l2: accuracy(fits[l2], zva, va_idx) for l2 in grid}
        best = select_l2(val_acc)
        return ProbeResult(
            val_accuracy=val_acc[best],
            test_accuracy=accuracy(fits[best], zte, te_idx),
            best_l2=best,
            val_accuracy_by_l2=val_acc,
            train_accuracy=accuracy(fits[best], prep.z, prep.y),
        )


def _load_splits(raw: dict[str, tuple[ArrayLike, ArrayLike]], dev: torch.device
                 ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Validate named (x, y) splits (features stay in their dtype); names appear in every error message."""
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name, (x, y) in raw.items():
        t = source_tensor(x, f"{name}_x", dev)
        labels = labels_tensor(y, f"{name}_y", t.shape[0], dev)
        require_two_classes(labels, f"{name} split ({name}_y)")
        out[name] = (t, labels)
    require_same_dim({f"{name}_x": t for name, (t, _) in out.items()})
    return out

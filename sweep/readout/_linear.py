"""Linear probe: multinomial logistic regression on frozen features, L2 chosen on val, reported on test.

Model: features are standardised with the statistics of the split the probe is fitted on, then
``logits = z @ W + b``. Objective (convex; strictly convex in W for l2 > 0, so the optimum is unique and
the result does not depend on initialisation or device beyond floating-point rounding)::

    J(W, b) = mean_i CE(softmax(z_i W + b), y_i) + (l2 / 2) * ||W||_F^2      (bias not penalised)

minimised full-batch with L-BFGS (strong-Wolfe line search) from zeros until max|grad J| <= tol, or
``max_iter`` iterations, or a step that changes nothing at the dtype's precision (``converged`` tells).

Protocol of :func:`linear_probe`: for each L2 of the grid fit on ``train`` only and score on ``val``;
pick the best val accuracy (ties -> the largest L2, the simpler model); report that same train-fitted
model on ``test``. There is no refit on train+val: val picks, test reports, and the test split never
influences any choice.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from sweep.config.schema import ReadoutConfig
from sweep.readout._inputs import (
    ArrayLike,
    ReadoutInputError,
    compute_dtype,
    features_tensor,
    labels_tensor,
    require_positive_int,
    require_same_dim,
    require_two_classes,
    resolve_device,
)

_DEFAULTS = ReadoutConfig()
_MIN_SCALE = 1e-12  # a feature with a smaller std is constant on the fit split: centred, not scaled
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
    """A fitted probe: standardiser (fit-split statistics) + linear map; evaluates other splits."""

    mean: torch.Tensor
    scale: torch.Tensor
    weight: torch.Tensor  # (D, K)
    bias: torch.Tensor  # (K,)
    l2: float
    n_iter: int
    converged: bool  # max|grad| <= tol at the end

    @property
    def n_classes(self) -> int:
        return int(self.weight.shape[1])

    def logits(self, x: ArrayLike, name: str = "x") -> torch.Tensor:
        z = features_tensor(x, name, self.weight.device, self.weight.dtype)
        if z.shape[1] != self.weight.shape[0]:
            raise ReadoutInputError(f"{name} has D={z.shape[1]} but the probe was fitted on "
                                    f"D={self.weight.shape[0]}")
        return self._logits(z)

    def _logits(self, z: torch.Tensor) -> torch.Tensor:
        return ((z - self.mean) / self.scale) @ self.weight + self.bias

    def predict(self, x: ArrayLike, name: str = "x") -> torch.Tensor:
        return self.logits(x, name).argmax(dim=1)

    def risk(self, x: ArrayLike, y: ArrayLike, loss: str = "error", name: str = "x") -> float:
        """0-1 error (``loss="error"``) or mean cross-entropy (``"log_loss"``) on (x, y)."""
        logits = self.logits(x, name)
        labels = labels_tensor(y, f"{name} labels", logits.shape[0], logits.device)
        return _risk_from_logits(logits, labels, loss, self.n_classes)

    def accuracy(self, x: ArrayLike, y: ArrayLike, name: str = "x") -> float:
        return 1.0 - self.risk(x, y, "error", name)


def _risk_from_logits(logits: torch.Tensor, y: torch.Tensor, loss: str, n_classes: int) -> float:
    if loss == "error":
        return float((logits.argmax(dim=1) != y).double().mean().item())
    if loss == "log_loss":
        if int(y.max()) >= n_classes:
            raise ReadoutInputError(f"labels go up to {int(y.max())} but the probe knows {n_classes} "
                                    "classes; log_loss is undefined for unseen classes")
        return float(F.cross_entropy(logits.double(), y).item())
    raise ReadoutInputError(f"loss={loss!r} is not allowed; use one of {RISK_LOSSES}")


def _standardiser(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = z.mean(dim=0)
    scale = z.std(dim=0, unbiased=False)
    scale = torch.where(scale < _MIN_SCALE, torch.ones_like(scale), scale)
    return mean, scale


def _objective(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor, l2: float) -> torch.Tensor:
    return F.cross_entropy(z @ w + b, y) + 0.5 * l2 * (w * w).sum()


def _fit(z: torch.Tensor, y: torch.Tensor, n_classes: int, l2: float, max_iter: int, tol: float
         ) -> LinearClassifier:
    """Fit on already validated tensors (z raw features, standardised here with its own statistics)."""
    mean, scale = _standardiser(z)
    zs = (z - mean) / scale
    w = torch.zeros(z.shape[1], n_classes, dtype=z.dtype, device=z.device, requires_grad=True)
    b = torch.zeros(n_classes, dtype=z.dtype, device=z.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, max_eval=2 * max_iter,
                                  tolerance_grad=tol, tolerance_change=torch.finfo(z.dtype).eps,
                                  history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = _objective(zs, y, w, b, l2)
        loss.backward()
        return loss

    optimizer.step(closure)
    grad_max = _grad_max(zs, y, w, b, l2)
    n_iter = int(optimizer.state[w].get("n_iter", 0))
    return LinearClassifier(mean=mean, scale=scale, weight=w.detach(), bias=b.detach(), l2=float(l2),
                            n_iter=n_iter, converged=grad_max <= tol)


def _grad_max(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor, l2: float) -> float:
    w_, b_ = w.detach().requires_grad_(True), b.detach().requires_grad_(True)
    grads = torch.autograd.grad(_objective(z, y, w_, b_, l2), [w_, b_])
    return max(float(g.abs().max().item()) for g in grads)


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
) -> LinearClassifier:
    """Fit one probe with a fixed L2 on (x, y); ``n_classes`` defaults to ``max(y) + 1``."""
    dev = resolve_device(device)
    z = features_tensor(x, name, dev, compute_dtype(dev))
    labels = labels_tensor(y, f"{name} labels", z.shape[0], dev)
    require_two_classes(labels, name)
    require_positive_int(max_iter, "max_iter")
    k = int(labels.max()) + 1 if n_classes is None else n_classes
    require_positive_int(k, "n_classes")
    if int(labels.max()) >= k:
        raise ReadoutInputError(f"n_classes={k} but {name} labels go up to {int(labels.max())}")
    return _fit(z, labels, k, _check_l2(l2), max_iter, _check_tol(tol))


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
) -> ProbeResult:
    """Train on ``train`` per L2, choose the L2 on ``val``, report that model's accuracy on ``test``.

    Deterministic (zero init, full-batch L-BFGS). ``device="auto"`` uses CUDA when available (float32),
    else CPU (float64). Raises :class:`ReadoutInputError` (a ValueError) naming the bad argument: shapes,
    integer label dtype, NaN/inf features, a split with fewer than 2 classes, differing D, bad grid.
    """
    grid = _check_grid(l2_grid)
    require_positive_int(max_iter, "max_iter")
    tol = _check_tol(tol)
    dev = resolve_device(device)
    splits = _load_splits({"train": (train_x, train_y), "val": (val_x, val_y), "test": (test_x, test_y)}, dev)
    n_classes = max(int(y.max()) for _, y in splits.values()) + 1
    (ztr, ytr), (zva, yva), (zte, yte) = splits["train"], splits["val"], splits["test"]

    val_acc: dict[float, float] = {}
    models: dict[float, LinearClassifier] = {}
    for l2 in grid:
        models[l2] = _fit(ztr, ytr, n_classes, l2, max_iter, tol)
        val_acc[l2] = 1.0 - _risk_from_logits(models[l2]._logits(zva), yva, "error", n_classes)
    best = select_l2(val_acc)
    model = models[best]
    return ProbeResult(
        val_accuracy=val_acc[best],
        test_accuracy=1.0 - _risk_from_logits(model._logits(zte), yte, "error", n_classes),
        best_l2=best,
        val_accuracy_by_l2=val_acc,
        train_accuracy=1.0 - _risk_from_logits(model._logits(ztr), ytr, "error", n_classes),
    )


def _load_splits(raw: dict[str, tuple[ArrayLike, ArrayLike]], dev: torch.device
                 ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Validate and convert named (x, y) splits; names appear in every error message."""
    dtype = compute_dtype(dev)
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name, (x, y) in raw.items():
        z = features_tensor(x, f"{name}_x", dev, dtype)
        labels = labels_tensor(y, f"{name}_y", z.shape[0], dev)
        require_two_classes(labels, f"{name} split ({name}_y)")
        out[name] = (z, labels)
    require_same_dim({f"{name}_x": z for name, (z, _) in out.items()})
    return out

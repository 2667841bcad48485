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

import numpy as np
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
from sweep.readout._lbfgsb import solve_lbfgsb
from sweep.readout._threads import limit_threads, readout_threads

_DEFAULTS = ReadoutConfig()
_CONSTANT_REL = 1e-12  # std <= this * max|column| on the fit split: a constant column (centred, not scaled)
RISK_LOSSES = ("error", "log_loss")
_HISTORY = 20  # L-BFGS memory
_FAST_MIN_ELEMENTS = 1 << 18  # N * D from which the per-iteration products run on a float32 copy
_REFRESH_EVERY = 20  # iterations between exact float64 recomputations of the logits in float32 mode


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


# ----------------------------------------------------------------------------- solver
@dataclass
class _Fit:
    weight: torch.Tensor  # (D, K)
    bias: torch.Tensor  # (K,)
    n_iter: int
    converged: bool
    s_hist: list[torch.Tensor] = field(default_factory=list, repr=False)  # final L-BFGS pairs
    y_hist: list[torch.Tensor] = field(default_factory=list, repr=False)


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b; on CPU through numpy's BLAS, which runs these tall-skinny products (and their transposes)
    2-5x faster than torch's CPU matmul (measured at 20000 x 256 x 10, one thread)."""
    if a.device.type == "cpu":
        return torch.from_numpy(np.matmul(a.numpy(), b.numpy()))
    return a @ b


class _Problem:
    """Data of one fit split, shared by every L2 of the grid."""

    def __init__(self, z: torch.Tensor, y: torch.Tensor, n_classes: int) -> None:
        self.z, self.y = z.contiguous(), y
        self.n, self.d = z.shape
        self.k = n_classes
        fast = z.dtype == torch.float64 and self.n * self.d >= _FAST_MIN_ELEMENTS
        self.z32 = self.z.to(torch.float32) if fast else None
        zc = self.z32 if self.z32 is not None else self.z
        corr = (_mm(zc.T, zc) / self.n).to(z.dtype)  # feature correlation: only shapes the preconditioner
        s, self.q = torch.linalg.eigh(corr)
        self.s = s.clamp(min=0.0)
        self.eps = float(torch.finfo(z.dtype).eps)  # a step that changes J by less than this: no progress
        self.yidx = y.view(-1, 1)
        self.minus_one = torch.full((self.n, 1), -1.0, dtype=z.dtype, device=z.device)

    def logits(self, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return _mm(self.z, w) + b

    def direction_logits(self, dw: torch.Tensor, db: torch.Tensor, exact: bool) -> torch.Tensor:
        if exact or self.z32 is None:
            return _mm(self.z, dw) + db
        return _mm(self.z32, dw.to(torch.float32)).to(self.z.dtype) + db

    def loss(self, logits: torch.Tensor, w: torch.Tensor, l2: float) -> tuple[float, torch.Tensor]:
        """(J, softmax probabilities) at ``logits`` (the probabilities feed :meth:`gradient`)."""
        top = logits.amax(dim=1, keepdim=True)
        e = torch.exp(logits - top)
        total = e.sum(dim=1, keepdim=True)
        data = float((top + torch.log(total) - logits.gather(1, self.yidx)).mean())
        return data + 0.5 * l2 * float((w * w).sum()), e.div_(total)

    def gradient(self, p: torch.Tensor, w: torch.Tensor, l2: float, exact: bool
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(dJ/dW, dJ/db, p) for the softmax probabilities ``p`` of :meth:`loss`."""
        r = p.clone()
        r.scatter_add_(1, self.yidx, self.minus_one)
        r /= self.n
        if exact or self.z32 is None:
            gw = _mm(self.z.T, r)
        else:
            gw = _mm(self.z32.T, r.to(torch.float32)).to(self.z.dtype)
        return gw + l2 * w, r.sum(dim=0), p


class _Preconditioner:
    """H0 = (A (x) S + l2 I)^-1 on W and A^+ on b, A = softmax curvature mean(diag p - p p^T) at the start of
    a fit, S = Q diag(s) Q^T the feature correlation; applied to flat (D * K + K) parameter vectors."""

    def __init__(self, prob: "_Problem", p: torch.Tensor, l2: float) -> None:
        curv = torch.diag(p.mean(dim=0)) - (p.T @ p) / prob.n
        a, self.v = torch.linalg.eigh(curv)
        a = a.clamp(min=0.0)
        den = prob.s[:, None] * a[None, :] + l2
        self.den = den.clamp(min=1e-10 * float(den.max()))
        self.bden = a.clamp(min=1e-10 * max(float(a.max()), 1e-300))
        self.q, self.d, self.k = prob.q, prob.d, prob.k

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """H0 @ x for one flat vector (P,) or the rows of a (m, P) matrix."""
        dk = self.d * self.k
        if x.ndim == 1:
            xw, xb = x[:dk].view(self.d, self.k), x[dk:]
            hw = self.q @ ((self.q.T @ xw @ self.v) / self.den) @ self.v.T
            return torch.cat([hw.reshape(-1), self.v @ ((self.v.T @ xb) / self.bden)])
        return torch.stack([self(row) for row in x])


def _split(theta: torch.Tensor, d: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, b) views of a flat parameter vector."""
    return theta[: d * k].view(d, k), theta[d * k :]


def _solve(prob: _Problem, l2: float, w: torch.Tensor, b: torch.Tensor, max_iter: int, tol: float,
           history: Optional[tuple[float, list[torch.Tensor], list[torch.Tensor]]] = None) -> _Fit:
    """Preconditioned L-BFGS from (w, b) to max|grad| <= tol (see the module docstring).

    The search direction uses the compact representation of the L-BFGS inverse Hessian (Byrd, Nocedal &
    Schnabel 1994) with initial matrix gamma * H0: a few (m, P) products instead of a 4m-step loop of vector
    operations, which would dominate the cost on small problems.
    """
    d, k = prob.d, prob.k
    exact = prob.z32 is None
    theta = torch.cat([w.reshape(-1), b])

    def evaluate(theta: torch.Tensor, exact_products: bool) -> tuple[torch.Tensor, float, torch.Tensor,
                                                                       torch.Tensor]:
        w_, b_ = _split(theta, d, k)
        logits = prob.logits(w_, b_)
        f, p = prob.loss(logits, w_, l2)
        gw, gb, p = prob.gradient(p, w_, l2, exact_products)
        return logits, f, torch.cat([gw.reshape(-1), gb]), p

    logits, f, g, p = evaluate(theta, True)
    h0 = _Preconditioner(prob, p, l2)
    s_hist: list[torch.Tensor] = []
    y_hist: list[torch.Tensor] = []
    hy_hist: list[torch.Tensor] = []  # H0 y_i
    gamma = 1.0
    if history is not None:  # the previous L2's pairs: y = H s, exact for the penalty once shifted
        prev_l2, prev_s, prev_y = history
        shift = torch.zeros_like(theta)
        shift[: d * k] = l2 - prev_l2
        for sp, yp in zip(prev_s, prev_y):
            yn = yp + shift * sp
            sy = float(torch.dot(sp, yn))
            if sy > 1e-10 * float(torch.dot(yn, yn)) and sy > 0.0:
                s_hist.append(sp)
                y_hist.append(yn)
                hy_hist.append(h0(yn))
        if s_hist:
            gamma = float(torch.dot(s_hist[-1], y_hist[-1])) / float(torch.dot(y_hist[-1], hy_hist[-1]))
    it = 0
    converged = False
    while True:
        if float(g.abs().max()) <= tol:
            if exact:
                converged = True
                break
            exact = True  # confirm on the exact float64 gradient
            logits, f, g, p = evaluate(theta, True)
            if float(g.abs().max()) <= tol:
                converged = True
                break
        if it >= max_iter:
            break
        direction = -_lbfgs_apply(g, h0, gamma, s_hist, y_hist, hy_hist)
        gtd = float(torch.dot(g, direction))
        if not gtd < 0.0:  # not a descent direction (round-off): restart from the preconditioned gradient
            if not s_hist:
                break
            s_hist.clear(), y_hist.clear(), hy_hist.clear()
            gamma = 1.0
            continue
        # backtracking (Armijo) line search; logits along the line are logits + t * (z @ d): one product
        dw, db = _split(direction, d, k)
        dlogits = prob.direction_logits(dw, db, exact)
        w0, _ = _split(theta, d, k)
        t, accepted = 1.0, False
        for _ in range(40):
            f_t, p_t = prob.loss(logits + t * dlogits, w0 + t * dw, l2)
            if f_t <= f + 1e-4 * t * gtd:
                accepted = True
                break
            curvature = f_t - f - gtd * t
            t_quad = -gtd * t * t / (2.0 * curvature) if curvature > 0 else 0.5 * t
            t = min(max(t_quad, 0.1 * t), 0.5 * t)
        if not accepted:
            if not s_hist:
                break
            s_hist.clear(), y_hist.clear(), hy_hist.clear()
            gamma = 1.0
            continue
        step = t * direction
        theta_new = theta + step
        w_new, b_new = _split(theta_new, d, k)
        if exact or (it + 1) % _REFRESH_EVERY:
            logits_new = logits + t * dlogits
        else:  # float32 products: re-anchor the logits on an exact product now and then
            logits_new = prob.logits(w_new, b_new)
            f_t, p_t = prob.loss(logits_new, w_new, l2)
        gw_new, gb_new, p = prob.gradient(p_t, w_new, l2, exact)
        g_new = torch.cat([gw_new.reshape(-1), gb_new])
        y = g_new - g
        sy, yy = float(torch.dot(step, y)), float(torch.dot(y, y))
        if sy > 1e-10 * yy and sy > 0.0:
            if len(s_hist) == _HISTORY:
                s_hist.pop(0), y_hist.pop(0), hy_hist.pop(0)
            hy = h0(y)
            s_hist.append(step)
            y_hist.append(y)
            hy_hist.append(hy)
            gamma = sy / float(torch.dot(y, hy))
        stalled = f - f_t <= 2.0 * prob.eps * max(1.0, abs(f))
        theta, logits, f, g = theta_new, logits_new, f_t, g_new
        it += 1
        if stalled:  # no progress at float64 precision: confirm exactly, then stop
            if not exact:
                exact = True
                logits, f, g, p = evaluate(theta, True)
                continue
            converged = float(g.abs().max()) <= tol
            break
    w, b = _split(theta, d, k)
    return _Fit(weight=w.clone(), bias=b.clone(), n_iter=it, converged=converged, s_hist=s_hist,
                y_hist=y_hist)


def _lbfgs_apply(g: torch.Tensor, h0: _Preconditioner, gamma: float, s_hist: list[torch.Tensor],
                 y_hist: list[torch.Tensor], hy_hist: list[torch.Tensor]) -> torch.Tensor:
    """H g for the L-BFGS inverse Hessian with initial matrix gamma * H0 (compact form, oldest pair first):

        H = gamma H0 + [S, gamma H0 Y] M [S^T; gamma Y^T H0],
        M = [[R^-T (D + gamma Y^T H0 Y) R^-1, -R^-T], [-R^-1, 0]]

    with R the upper triangle of S^T Y and D its diagonal (rows of S, Y: the pairs s_i, y_i)."""
    hg = gamma * h0(g)
    if not s_hist:
        return hg
    s, y, hy = torch.stack(s_hist), torch.stack(y_hist), torch.stack(hy_hist)
    sy = s @ y.T
    r = torch.triu(sy)
    u = s @ g
    v = gamma * (hy @ g)
    r_inv_u = torch.linalg.solve_triangular(r, u[:, None], upper=True)[:, 0]
    inner = torch.diagonal(sy) * r_inv_u + gamma * ((y @ hy.T) @ r_inv_u) - v
    top = torch.linalg.solve_triangular(r.T, inner[:, None], upper=False)[:, 0]
    return hg + s.T @ top - gamma * (hy.T @ r_inv_u)


def _uses_lbfgsb(prob: _Problem) -> bool:
    """Small CPU problems (float64 products: N * D < _FAST_MIN_ELEMENTS) go to scipy's compiled L-BFGS-B, where
    the torch loop's per-iteration overhead would dominate (946 x 64: 0.58x sklearn's speed before)."""
    return prob.z.device.type == "cpu" and prob.z32 is None


def _solve_small(prob: _Problem, l2: float, w: torch.Tensor, b: torch.Tensor, max_iter: int, tol: float) -> _Fit:
    """:func:`sweep.readout._lbfgsb.solve_lbfgsb` on the problem's data and preconditioner factors."""
    fit = solve_lbfgsb(prob.z.numpy(), prob.y.numpy(), prob.s.numpy(), prob.q.numpy(), l2, w.numpy(), b.numpy(),
                       max_iter, tol)
    return _Fit(weight=torch.from_numpy(fit.weight), bias=torch.from_numpy(fit.bias), n_iter=fit.n_iter,
                converged=fit.converged)


def _fit_path(prob: _Problem, grid: Sequence[float], max_iter: int, tol: float) -> dict[float, _Fit]:
    """Every L2 of the grid, largest first, each from the previous optimum extrapolated along log(l2)."""
    order = sorted(grid, reverse=True)
    w = torch.zeros(prob.d, prob.k, dtype=prob.z.dtype, device=prob.z.device)
    b = torch.zeros(prob.k, dtype=prob.z.dtype, device=prob.z.device)
    fits: dict[float, _Fit] = {}
    for i, l2 in enumerate(order):
        if i >= 2:
            prev, last = order[i - 2], order[i - 1]
            if min(prev, last, l2) > 0.0:
                ratio = (math.log(l2) - math.log(last)) / (math.log(last) - math.log(prev))
                step = min(max(ratio, 0.0), 1.0)
                w = fits[last].weight + step * (fits[last].weight - fits[prev].weight)
                b = fits[last].bias + step * (fits[last].bias - fits[prev].bias)
        if _uses_lbfgsb(prob):
            fits[l2] = _solve_small(prob, l2, w, b, max_iter, tol)
        else:
            history = (order[i - 1], fits[order[i - 1]].s_hist, fits[order[i - 1]].y_hist) if i else None
            fits[l2] = _solve(prob, l2, w, b, max_iter, tol, history)
        w, b = fits[l2].weight, fits[l2].bias
    return fits


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

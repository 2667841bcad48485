"""The torch L-BFGS solver of the linear probe (:mod:`sweep.readout._linear` has the model, the protocol and why).

What is here: the logistic problem of one fit split (``_Problem``: loss, gradient, the products in float32 on
large problems), the Kronecker preconditioner H0 (``_Preconditioner``), the L-BFGS memory and step
(``_Memory``, ``_line_search``, ``_solve``) and the pass over the L2 grid (``_fit_path``), which sends small CPU
problems to scipy's compiled L-BFGS-B (:mod:`sweep.readout._lbfgsb`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from sweep.readout._lbfgsb import solve_lbfgsb

_HISTORY = 20  # L-BFGS memory
_FAST_MIN_ELEMENTS = 1 << 18  # N * D from which the per-iteration products run on a float32 copy
_REFRESH_EVERY = 20  # iterations between exact float64 recomputations of the logits in float32 mode


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


class _Memory:
    """The L-BFGS pairs (s, y, H0 y), oldest first, at most ``_HISTORY``, and the scale gamma of H0."""

    def __init__(self, h0: _Preconditioner) -> None:
        self.h0, self.gamma = h0, 1.0
        self.s: list[torch.Tensor] = []
        self.y: list[torch.Tensor] = []
        self.hy: list[torch.Tensor] = []  # H0 y_i

    def push(self, step: torch.Tensor, y: torch.Tensor) -> None:
        """Keep the pair when its curvature s.y is positive (else the update would lose positive definiteness)."""
        sy, yy = float(torch.dot(step, y)), float(torch.dot(y, y))
        if not (sy > 1e-10 * yy and sy > 0.0):
            return
        if len(self.s) == _HISTORY:
            self.s.pop(0), self.y.pop(0), self.hy.pop(0)
        hy = self.h0(y)
        self.s.append(step)
        self.y.append(y)
        self.hy.append(hy)
        self.gamma = sy / float(torch.dot(y, hy))

    def warm_start(self, history: tuple[float, list[torch.Tensor], list[torch.Tensor]], l2: float, dk: int,
                   like: torch.Tensor) -> None:
        """The previous L2's pairs: y = H s, exact for the penalty once shifted by (l2 - previous l2) s."""
        prev_l2, prev_s, prev_y = history
        shift = torch.zeros_like(like)
        shift[:dk] = l2 - prev_l2
        for sp, yp in zip(prev_s, prev_y):
            self.push(sp, yp + shift * sp)

    def clear(self) -> None:
        self.s.clear(), self.y.clear(), self.hy.clear()
        self.gamma = 1.0

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        return -_lbfgs_apply(g, self.h0, self.gamma, self.s, self.y, self.hy)


def _line_search(prob: _Problem, logits: torch.Tensor, dlogits: torch.Tensor, w0: torch.Tensor,
                 dw: torch.Tensor, f: float, gtd: float, l2: float
                 ) -> tuple[bool, float, float, torch.Tensor]:
    """Backtracking (Armijo) along the direction, logits moving as logits + t * (z @ d) (one product for all
    trial steps): (accepted, t, J at t, probabilities at t)."""
    t = 1.0
    for _ in range(40):
        f_t, p_t = prob.loss(logits + t * dlogits, w0 + t * dw, l2)
        if f_t <= f + 1e-4 * t * gtd:
            return True, t, f_t, p_t
        curvature = f_t - f - gtd * t
        t_quad = -gtd * t * t / (2.0 * curvature) if curvature > 0 else 0.5 * t
        t = min(max(t_quad, 0.1 * t), 0.5 * t)
    return False, t, f_t, p_t


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

    def evaluate(theta: torch.Tensor) -> tuple[torch.Tensor, float, torch.Tensor, torch.Tensor]:
        w_, b_ = _split(theta, d, k)
        logits = prob.logits(w_, b_)
        f, p = prob.loss(logits, w_, l2)
        gw, gb, p = prob.gradient(p, w_, l2, True)
        return logits, f, torch.cat([gw.reshape(-1), gb]), p

    logits, f, g, p = evaluate(theta)
    memory = _Memory(_Preconditioner(prob, p, l2))
    if history is not None:
        memory.warm_start(history, l2, d * k, theta)
    it, converged = 0, False
    while True:
        if float(g.abs().max()) <= tol:
            if exact:
                converged = True
                break
            exact = True  # confirm on the exact float64 gradient
            logits, f, g, p = evaluate(theta)
            if float(g.abs().max()) <= tol:
                converged = True
                break
        if it >= max_iter:
            break
        direction = memory.direction(g)
        gtd = float(torch.dot(g, direction))
        dw, db = _split(direction, d, k)
        accepted = False
        if gtd < 0.0:  # else not a descent direction (round-off)
            dlogits = prob.direction_logits(dw, db, exact)
            accepted, t, f_t, p_t = _line_search(prob, logits, dlogits, _split(theta, d, k)[0], dw, f, gtd, l2)
        if not accepted:  # restart from the preconditioned gradient, unless that was it already
            if not memory.s:
                break
            memory.clear()
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
        memory.push(step, g_new - g)
        stalled = f - f_t <= 2.0 * prob.eps * max(1.0, abs(f))
        theta, logits, f, g = theta_new, logits_new, f_t, g_new
        it += 1
        if stalled:  # no progress at float64 precision: confirm exactly, then stop
            if not exact:
                exact = True
                logits, f, g, p = evaluate(theta)
                continue
            converged = float(g.abs().max()) <= tol
            break
    w, b = _split(theta, d, k)
    return _Fit(weight=w.clone(), bias=b.clone(), n_iter=it, converged=converged, s_hist=memory.s,
                y_hist=memory.y)


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

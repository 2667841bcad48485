"""The probe's solver for small CPU problems: scipy's L-BFGS-B on whitened variables.

Why a second solver: on small problems (the demo's 946 x 64 features) a probe fit costs a few hundred
iterations whose products are microseconds each, so the cost is the per-iteration overhead of the loop. The torch
loop of :func:`sweep.readout._lbfgs._solve` spends ~1 ms per iteration on dispatch; here the loop is scipy's
compiled L-BFGS-B and each objective evaluation is a handful of numpy calls on class-major (K, N) logits, whose
per-row softmax reductions run along contiguous memory.

Same objective, same optimum, same stopping rule: the variables are whitened by the same Kronecker model of the
Hessian as the torch solver's preconditioner (W = Q U V^T, U = Phi / sqrt(s a^T + l2), b = V (phi_b / sqrt(a)),
with S = Q diag(s) Q^T the feature correlation and A = V diag(a) V^T the softmax curvature at the start), which
changes only the path, and the fit stops when max|grad J| <= tol on the exact float64 gradient in the original
variables, after ``max_iter`` iterations, or when a step lowers J by less than float64 can resolve.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.optimize

_FTOL = 2.0 * float(np.finfo(np.float64).eps)  # relative decrease of J below which a step made no progress
_HISTORY = 20  # L-BFGS memory, as the torch solver's
_MAX_LINE_SEARCH = 50


@dataclass(frozen=True)
class SmallFit:
    weight: np.ndarray  # (D, K)
    bias: np.ndarray  # (K,)
    n_iter: int
    converged: bool


@dataclass(frozen=True)
class _Whitening:
    """W = q (phi_w / r) v^T and b = v (phi_b / rb): the preconditioner as a change of variables."""

    q: np.ndarray  # (D, D) eigenvectors of the feature correlation
    v: np.ndarray  # (K, K) eigenvectors of the softmax curvature
    r: np.ndarray  # (D, K) sqrt(s_i a_j + l2)
    rb: np.ndarray  # (K,) sqrt(a_j)

    def to_phi(self, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.concatenate([((self.q.T @ w @ self.v) * self.r).ravel(), (self.v.T @ b) * self.rb])

    def rotated(self, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(U, b): the weights in the (Q, V) basis and the bias in the original one."""
        d, k = self.r.shape
        return phi[: d * k].reshape(d, k) / self.r, self.v @ (phi[d * k :] / self.rb)


def _softmax_curvature(zt: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """mean_i(diag p_i - p_i p_i^T) at (w, b), from class-major features zt (D, N)."""
    p = _class_major_softmax(w.T @ zt + b[:, None])
    return np.diag(p.mean(axis=1)) - (p @ p.T) / zt.shape[1]


def _class_major_softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=0))
    return e / e.sum(axis=0)


def _whitening(s: np.ndarray, q: np.ndarray, curv: np.ndarray, l2: float) -> _Whitening:
    """The torch solver's preconditioner (same clamps), as square roots for a change of variables."""
    a, v = np.linalg.eigh(curv)
    a = np.clip(a, 0.0, None)
    den = s[:, None] * a[None, :] + l2
    den = np.maximum(den, 1e-10 * float(den.max()))
    bden = np.maximum(a, 1e-10 * max(float(a.max()), 1e-300))
    return _Whitening(q=q, v=v, r=np.sqrt(den), rb=np.sqrt(bden))


def _objective(z: np.ndarray, y: np.ndarray, l2: float, white: _Whitening
               ) -> Callable[[np.ndarray], tuple[float, np.ndarray, float]]:
    """phi -> (J, dJ/dphi, max|dJ/d(W, b)|) for standardised features z (N, D) and class ids y."""
    n = z.shape[0]
    zq = z @ white.q
    zqt = np.ascontiguousarray(zq.T)  # (D, N): logits are computed class-major, (K, N)
    rows = np.arange(n)

    def evaluate(phi: np.ndarray) -> tuple[float, np.ndarray, float]:
        u, b = white.rotated(phi)
        logits = (white.v @ u.T) @ zqt
        logits += b[:, None]
        top = logits.max(axis=0)
        e = np.exp(logits - top)
        total = e.sum(axis=0)
        f = float(np.mean(top + np.log(total) - logits[y, rows])) + 0.5 * l2 * float(np.vdot(u, u))
        e /= total
        e[y, rows] -= 1.0
        e /= n  # dJ/dlogits, class-major
        gu = (zqt @ e.T) @ white.v + l2 * u  # Q^T (dJ/dW) V
        gb = e.sum(axis=1)
        gmax = max(float(np.abs(white.q @ gu @ white.v.T).max()), float(np.abs(gb).max()))
        grad = np.concatenate([(gu / white.r).ravel(), (white.v.T @ gb) / white.rb])
        return f, grad, gmax

    return evaluate


def solve_lbfgsb(z: np.ndarray, y: np.ndarray, s: np.ndarray, q: np.ndarray, l2: float, w0: np.ndarray,
                 b0: np.ndarray, max_iter: int, tol: float) -> SmallFit:
    """Minimise J from (w0, b0); ``s, q``: eigenvalues / vectors of the feature correlation z^T z / N."""
    white = _whitening(s, q, _softmax_curvature(np.ascontiguousarray(z.T), w0, b0), l2)
    evaluate = _objective(z, y, l2, white)
    last: dict[str, object] = {}

    def fun(phi: np.ndarray) -> tuple[float, np.ndarray]:
        f, grad, gmax = evaluate(phi)
        last.update(phi=phi.copy(), gmax=gmax)
        return f, grad

    def gmax_at(phi: np.ndarray) -> float:
        if "phi" not in last or not np.array_equal(last["phi"], phi):
            fun(phi)
        return float(last["gmax"])  # type: ignore[arg-type]

    def stop_when_converged(intermediate_result: scipy.optimize.OptimizeResult) -> None:
        if gmax_at(intermediate_result.x) <= tol:
            raise StopIteration

    phi0 = white.to_phi(w0, b0)
    if gmax_at(phi0) <= tol:
        return SmallFit(weight=w0.copy(), bias=b0.copy(), n_iter=0, converged=True)
    res = scipy.optimize.minimize(fun, phi0, jac=True, method="L-BFGS-B", callback=stop_when_converged,
                                  options={"maxiter": max_iter, "gtol": 0.0, "ftol": _FTOL, "maxcor": _HISTORY,
                                           "maxls": _MAX_LINE_SEARCH})
    u, b = white.rotated(res.x)
    return SmallFit(weight=white.q @ u @ white.v.T, bias=b, n_iter=int(res.nit),
                    converged=gmax_at(res.x) <= tol)

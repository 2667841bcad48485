"""LiDAR (Thilak et al., ICLR 2024): effective rank of the LDA matrix built from augmented views.

Each sample is a class whose members are its Q augmented views. With class means mu_i and grand
mean mu,
    Sigma_b = E_i[(mu_i - mu)(mu_i - mu)^T],
    Sigma_w = E_i E_q[(z_iq - mu_i)(z_iq - mu_i)^T] + delta * I,
    Sigma_lidar = Sigma_w^{-1/2} Sigma_b Sigma_w^{-1/2},
and LiDAR = exp(-sum p_k log p_k) with p_k = lambda_k / sum(lambda) + eps. The eigenvalues are those of
the equivalent generalized problem Sigma_b v = lambda (Sigma_w + delta I) v, reduced to a symmetric one
through the eigendecomposition of Sigma_w. Defaults delta = 1e-4, eps = 1e-8 are the paper's.

Scale: delta is an absolute ridge, so LiDAR is not invariant to a global scale of the views by definition;
it is computed exactly at any scale all the same. The views are brought to unit scale by an exact power of
two 2**-e and delta by 4**-e (both sides of the generalized problem scale alike), so views of size 1e200 or
1e-170 give the defined value instead of an overflow; when the scaled delta exceeds the float64 range the
problem is divided through by it (only the normalised spectrum enters LiDAR).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ._inputs import (
    ArrayLike,
    MetricInputError,
    as_tensor,
    check_finite,
    check_number,
    pow2_exponent,
    scale_pow2,
)
from ._spectrum import check_eps, entropy_effective_rank

LIDAR_DELTA = 1e-4
LIDAR_EPS = 1e-8


def _check_views(views: ArrayLike) -> torch.Tensor:
    v = as_tensor(views, "views")
    if v.ndim != 3:
        raise MetricInputError(
            f"views must be a 3-D (N, Q, D) array, got ndim={v.ndim} (shape {tuple(v.shape)})"
        )
    n, q, d = v.shape
    if n < 2:
        raise MetricInputError(f"views needs N >= 2 samples, got N={n}")
    if q < 2:
        raise MetricInputError(f"views needs Q >= 2 augmented views per sample, got Q={q}")
    if d < 2:
        raise MetricInputError(f"views needs D >= 2 features, got D={d}")
    check_finite(v, "views")
    return v


def _scaled_lda(views: ArrayLike) -> tuple[np.ndarray, np.ndarray, int]:
    """(Sigma_b, Sigma_w) in float64 of the views divided by 2**e (max |view| in [0.5, 1)), and e."""
    v = _check_views(views).to(torch.float64)
    e = pow2_exponent(float(v.abs().max().item()))
    v = scale_pow2(v, -e)
    n, q, _ = v.shape
    class_means = v.mean(dim=1)
    between = class_means - class_means.mean(dim=0)
    within = (v - class_means[:, None, :]).reshape(n * q, -1)
    return (between.T @ between / n).cpu().numpy(), (within.T @ within / (n * q)).cpu().numpy(), e


def _check_delta(delta: float) -> float:
    if isinstance(delta, (int, float)) and not isinstance(delta, bool) and not delta > 0.0:
        raise MetricInputError(f"delta must be > 0 so Sigma_w is invertible, got delta={delta}")
    return check_number(delta, "delta", strict=True)


def lda_matrices(views: ArrayLike, delta: float = LIDAR_DELTA) -> tuple[np.ndarray, np.ndarray]:
    """(Sigma_b, Sigma_w + delta I) in float64 for (N, Q, D) views (input units: may overflow at extreme
    scales, which :func:`lidar` avoids)."""
    delta = _check_delta(delta)
    sigma_b, sigma_w, e = _scaled_lda(views)
    factor = 4.0**e
    return sigma_b * factor, sigma_w * factor + delta * np.eye(sigma_w.shape[0])


def _ldexp(x: float, e: int) -> float:
    try:
        return math.ldexp(x, e)
    except OverflowError:
        return math.inf


def lidar(views: ArrayLike, delta: float = LIDAR_DELTA, eps: float = LIDAR_EPS) -> float:
    """LiDAR of (N, Q, D) embeddings of Q augmented views of N samples (torch or numpy)."""
    delta = _check_delta(delta)
    eps = check_eps(eps)
    sigma_b, sigma_w, e = _scaled_lda(views)
    delta_s = _ldexp(delta, -2 * e)  # delta in the scaled units
    w, u = np.linalg.eigh(sigma_w)
    w = np.clip(w, 0.0, None)
    if delta_s > 1.0:  # delta dominates: divide the problem by it (inf: Sigma_w / delta vanishes)
        d = w / delta_s + 1.0
    else:  # a delta below the float64 range only matters where Sigma_w is exactly 0: keep those finite
        d = w + max(delta_s, 2.0**-1000)
    r = u / np.sqrt(d)  # B^{-1/2} in the eigenbasis of Sigma_w: eigenvalues of r^T Sigma_b r
    lam = np.linalg.eigvalsh(r.T @ sigma_b @ r)
    return entropy_effective_rank(np.clip(lam, 0.0, None), eps)

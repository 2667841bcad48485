"""LiDAR (Thilak et al., ICLR 2024): effective rank of the LDA matrix built from augmented views.

Each sample is a class whose members are its Q augmented views. With class means mu_i and grand
mean mu,
    Sigma_b = E_i[(mu_i - mu)(mu_i - mu)^T],
    Sigma_w = E_i E_q[(z_iq - mu_i)(z_iq - mu_i)^T] + delta * I,
    Sigma_lidar = Sigma_w^{-1/2} Sigma_b Sigma_w^{-1/2},
and LiDAR = exp(-sum p_k log p_k) with p_k = lambda_k / sum(lambda) + eps. The eigenvalues are
taken from the equivalent generalized problem Sigma_b v = lambda Sigma_w v (no explicit inverse
square root, so an ill-conditioned Sigma_w stays accurate). Defaults delta = 1e-4, eps = 1e-8 are
the paper's.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg
import torch

from ._inputs import ArrayLike, MetricInputError, as_tensor, check_finite
from ._spectrum import entropy_effective_rank

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


def lda_matrices(views: ArrayLike, delta: float = LIDAR_DELTA) -> tuple[np.ndarray, np.ndarray]:
    """(Sigma_b, Sigma_w + delta I) in float64 for (N, Q, D) views."""
    v = _check_views(views).to(torch.float64)
    n, q, _ = v.shape
    class_means = v.mean(dim=1)
    between = class_means - class_means.mean(dim=0)
    within = (v - class_means[:, None, :]).reshape(n * q, -1)
    sigma_b = between.T @ between / n
    sigma_w = within.T @ within / (n * q)
    sigma_w += delta * torch.eye(sigma_w.shape[0], dtype=torch.float64, device=sigma_w.device)
    return sigma_b.cpu().numpy(), sigma_w.cpu().numpy()


def lidar(views: ArrayLike, delta: float = LIDAR_DELTA, eps: float = LIDAR_EPS) -> float:
    """LiDAR of (N, Q, D) embeddings of Q augmented views of N samples (torch or numpy)."""
    if not delta > 0.0:
        raise MetricInputError(f"delta must be > 0 so Sigma_w is invertible, got delta={delta}")
    if eps < 0.0:
        raise MetricInputError(f"eps must be >= 0, got eps={eps}")
    sigma_b, sigma_w = lda_matrices(views, delta)
    lam = scipy.linalg.eigh(sigma_b, sigma_w, eigvals_only=True)
    return entropy_effective_rank(np.clip(lam, 0.0, None), eps)

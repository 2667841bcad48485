"""SSL objectives as pure functions of embeddings (no modules, no state).

Each function takes per-view embeddings of shape (N, D) and returns a scalar tensor; methods in
:mod:`sweep.ssl.methods` decide which network produced which argument (online, target, predictor).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_pair(a: Tensor, b: Tensor, name: str) -> None:
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"{name}: expected two (N, D) embeddings of equal shape, "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}")


def _check_temperature(temperature: float, name: str) -> None:
    if not temperature > 0:
        raise ValueError(f"{name}: temperature must be > 0, got {temperature}")


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.2) -> Tensor:
    """SimCLR's NT-Xent: each of the 2N views must pick its partner among the other 2N - 1 views.

    Cosine similarities divided by ``temperature``; the mean over all 2N anchors is symmetric in (z1, z2).
    """
    _check_pair(z1, z2, "nt_xent")
    _check_temperature(temperature, "nt_xent")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, targets)


def _standardize(z: Tensor, eps: float) -> Tensor:
    """Zero mean, unit (biased) variance per dimension over the batch: Barlow Twins' affine-free BatchNorm."""
    return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + eps)


def cross_correlation(z1: Tensor, z2: Tensor, eps: float = 1e-5) -> Tensor:
    """(D, D) cross-correlation of batch-standardised embeddings (identity: invariant, decorrelated views)."""
    return _standardize(z1, eps).T @ _standardize(z2, eps) / z1.shape[0]


def _off_diagonal(m: Tensor) -> Tensor:
    return m[~torch.eye(m.shape[0], dtype=torch.bool, device=m.device)]


def barlow_twins_loss(z1: Tensor, z2: Tensor, lambd: float = 0.005, scale_loss: float = 1.0) -> Tensor:
    """Barlow Twins: sum (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2, times ``scale_loss``.

    Symmetric: swapping the views transposes C, which leaves both sums unchanged.
    """
    _check_pair(z1, z2, "barlow_twins_loss")
    if z1.shape[0] < 2:
        raise ValueError("barlow_twins_loss: needs a batch of at least 2 samples to standardise")
    c = cross_correlation(z1, z2)
    on_diag = (1 - torch.diagonal(c)).pow(2).sum()
    off_diag = _off_diagonal(c).pow(2).sum()
    return scale_loss * (on_diag + lambd * off_diag)


def _variance_term(z: Tensor, eps: float) -> Tensor:
    """Hinge on the per-dimension standard deviation (target 1), VICReg's anti-collapse term."""
    return F.relu(1 - torch.sqrt(z.var(0) + eps)).mean()


def _covariance_term(z: Tensor) -> Tensor:
    """Sum of squared off-diagonal covariances over D: pushes dimensions to decorrelate."""
    n, d = z.shape
    zc = z - z.mean(0)
    cov = zc.T @ zc / (n - 1)
    return _off_diagonal(cov).pow(2).sum() / d


def vicreg_loss(z1: Tensor, z2: Tensor, sim_weight: float = 25.0, var_weight: float = 25.0,
                cov_weight: float = 1.0, eps: float = 1e-4) -> Tensor:
    """VICReg (Bardes et al. 2022): weighted invariance (MSE) + variance (mean of views) + covariance (sum).

    The weighting of the two views follows the official code, which makes the loss symmetric.
    """
    _check_pair(z1, z2, "vicreg_loss")
    if z1.shape[0] < 2:
        raise ValueError("vicreg_loss: needs a batch of at least 2 samples to estimate variances")
    invariance = F.mse_loss(z1, z2)
    variance = (_variance_term(z1, eps) + _variance_term(z2, eps)) / 2
    covariance = _covariance_term(z1) + _covariance_term(z2)
    return sim_weight * invariance + var_weight * variance + cov_weight * covariance


def negative_cosine(p: Tensor, z: Tensor) -> Tensor:
    """SimSiam / BYOL regression term: -mean cos(p, stopgrad(z)).

    ``z`` is detached here because both methods need the stop-gradient on the target side;
    BYOL's 2 - 2 cos equals ``2 + 2 * negative_cosine``.
    """
    _check_pair(p, z, "negative_cosine")
    return -F.cosine_similarity(p, z.detach(), dim=1).mean()


def moco_infonce(q: Tensor, k: Tensor, queue: Tensor, temperature: float = 0.2) -> Tensor:
    """MoCo InfoNCE: the query must pick its key (positive) against the queued keys (negatives).

    ``q`` (N, D) and ``k`` (N, D) are normalised here; ``queue`` (K, D) is expected already normalised
    (MoCo stores normalised keys). Keys and queue get no gradient.
    """
    _check_pair(q, k, "moco_infonce")
    _check_temperature(temperature, "moco_infonce")
    if queue.ndim != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(f"moco_infonce: queue must be (K, {q.shape[1]}), got {tuple(queue.shape)}")
    q = F.normalize(q, dim=1)
    k = F.normalize(k, dim=1).detach()
    positive = (q * k).sum(1, keepdim=True)
    negatives = q @ queue.detach().T
    logits = torch.cat([positive, negatives], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))

"""Effective-dimension metrics as pure functions of a spectrum.

Every spectral metric of the package is computed from two eigenvalue arrays (of the un-centred Gram
X^T X and of the centred covariance), so the streaming and full-matrix paths share this code and agree.
Each metric is a ratio, invariant to a global scale of the spectrum; the functions divide by the largest
value before squaring so that spectra near the ends of the float64 range (1e-300, 1e300) give the same
value as unit-scale ones.
"""
from __future__ import annotations

import math

import numpy as np

from ._inputs import MetricInputError, check_number

RANKME_EPS = 1e-7  # Garrido et al. 2023, eq. 1


def check_eps(eps: object, name: str = "eps") -> float:
    """The smoothing constant of an entropy effective rank: a finite number >= 0."""
    return check_number(eps, name)


def _unit(e: np.ndarray) -> np.ndarray:
    """e / max(e) (e >= 0, descending or not); an all-zero spectrum stays zero."""
    top = float(np.max(e)) if e.size else 0.0
    return e / top if top > 0.0 else np.zeros_like(e)


def descending(eigenvalues: np.ndarray, name: str = "eigenvalues") -> np.ndarray:
    """A float64 copy of a 1-D spectrum, sorted from largest to smallest."""
    e = np.asarray(eigenvalues, dtype=np.float64)
    if e.ndim != 1:
        raise MetricInputError(f"{name} must be 1-D, got ndim={e.ndim}")
    if not np.all(np.isfinite(e)):
        raise MetricInputError(f"{name} contains NaN or inf values")
    return np.sort(e)[::-1].copy()


def clean_spectrum(eigenvalues: np.ndarray, abs_tol: float) -> np.ndarray:
    """Descending spectrum with eigenvalues <= abs_tol set to exactly 0.

    Eigen-solvers return round-off (tiny or slightly negative values) for the null space of a
    rank-deficient matrix; treating it as zero, like ``numpy.linalg.matrix_rank`` does, keeps the
    rank of a collapsed embedding at its true value instead of the noise's.
    """
    e = descending(eigenvalues)
    e[e <= max(abs_tol, 0.0)] = 0.0
    return e


def entropy_effective_rank(weights: np.ndarray, eps: float) -> float:
    """exp(Shannon entropy) of p_k = w_k / sum(w) + eps; 1.0 for an all-zero spectrum.

    An all-zero spectrum (the embedding collapsed to the origin) has no direction at all; we return
    1.0, the floor of the metric on any non-zero spectrum, so a collapse threshold catches it.
    """
    eps = check_eps(eps)
    w = _unit(np.asarray(weights, dtype=np.float64))
    total = float(np.sum(w))
    if total <= 0.0:
        return 1.0
    p = w / total + eps
    return float(math.exp(-float(np.sum(p * np.log(p)))))


def rankme_from_gram_eigenvalues(gram_eigs: np.ndarray, n_samples: int, eps: float = RANKME_EPS) -> float:
    """RankMe from the (cleaned, descending) eigenvalues of Z^T Z: sigma_k = sqrt(lambda_k).

    Only the top min(N, D) values are singular values of the N x D matrix Z; the rest are
    structural zeros that an SVD would not return, so they are dropped to match the paper exactly.
    """
    m = min(int(n_samples), gram_eigs.size)
    sigma = np.sqrt(_unit(np.clip(gram_eigs[:m], 0.0, None)))
    return entropy_effective_rank(sigma, eps)


def stable_rank_from_gram_eigenvalues(gram_eigs: np.ndarray) -> float:
    """||X||_F^2 / ||X||_2^2 = sum(lambda) / max(lambda); 1.0 for the zero matrix (see module doc)."""
    e = _unit(gram_eigs)
    return float(np.sum(e)) if e.size and e.max() > 0.0 else 1.0


def participation_ratio_from_eigenvalues(cov_eigs: np.ndarray) -> float:
    """(sum lambda)^2 / sum lambda^2 of covariance eigenvalues; 1.0 for a zero covariance."""
    e = _unit(cov_eigs)
    sq = float(np.sum(e**2))
    return float(np.sum(e)) ** 2 / sq if sq > 0.0 else 1.0


def nesum_from_eigenvalues(cov_eigs: np.ndarray) -> float:
    """NESum (He & Ozay 2022): sum_k lambda_k / lambda_1; 1.0 for a zero covariance."""
    e = _unit(cov_eigs)
    return float(np.sum(e)) if e.size and e.max() > 0.0 else 1.0

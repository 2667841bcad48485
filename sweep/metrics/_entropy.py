"""Differential entropy of an embedding distribution (label-free monitoring, Xu et al. 2024).

Default estimator, ``"gaussian"``: the entropy of the Gaussian with the sample covariance,
    H = 1/2 * sum_k log(2 pi e (lambda_k + ridge))   [nats],
with lambda_k the eigenvalues of the unbiased (N - 1) sample covariance. Why this one: it is
well-defined for every finite input (the ridge keeps a collapsed embedding finite instead of -inf),
deterministic, O(N D^2) like the other spectral metrics, and an upper bound on the entropy of any
distribution with that covariance (Gaussians maximise entropy at fixed covariance). With
ridge = 0 a rank-deficient covariance gives -inf. The eigenvalues are the spectral metrics' own (the same
accumulation and covariance eigenvalue problem, round-off-level values set to 0), so ``metric_suite`` computes
them once for NESum, participation ratio, alpha and the entropy.

Opt-in estimator, ``"knn"``: Kozachenko-Leonenko,
    H = psi(N) - psi(k) + log V_D + D/N * sum_i log r_i,
r_i the distance from point i to its k-th nearest neighbour and V_D the volume of the unit D-ball.
It is consistent for any density but biased in high D at small N, O(N^2 D) time (O(N) memory:
scikit-learn chunks the neighbour search), and undefined when a
point has k exact duplicates (r_i = 0); such distances are floored at ``1e-300`` (relative to the data's
scale) and documented rather than raised, so the value is then a very large negative number.

Scale: both estimators run on x / 2**e (an exact power of two bringing max |x| to [0.5, 1)) and add back
D * e * log 2, the exact change of a differential entropy under that scaling; the Gaussian ridge is applied
in the input's units through a log-sum-exp. So inputs near the ends of the float64 range (|x| ~ 1e200 or
1e-170) give the defined value instead of inf / NaN, and H(c x) = H(x) + D log|c| whenever the ridge is
negligible.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.special
import torch
from sklearn.neighbors import NearestNeighbors

from ._streaming import accumulate
from ._inputs import (
    ArrayLike,
    MetricInputError,
    check_integer,
    check_matrix,
    check_number,
    pow2_exponent,
    scale_pow2,
)

ENTROPY_ESTIMATORS = ("gaussian", "knn")
_DISTANCE_FLOOR = 1e-300


def embedding_entropy(x: ArrayLike, estimator: str = "gaussian", ridge: float = 1e-6, k: int = 3) -> float:
    """Differential entropy (nats) of the rows of x; see the module docstring for the estimators."""
    if estimator not in ENTROPY_ESTIMATORS:
        raise MetricInputError(f"estimator must be one of {ENTROPY_ESTIMATORS}, got {estimator!r}")
    if estimator == "gaussian":
        ridge = check_number(ridge, "ridge")
        acc = accumulate(x, "x")
        return gaussian_entropy_from_spectrum(acc._cov_spectra()[0], acc._e, ridge)
    return knn_entropy(check_matrix(x, "x").to("cpu", torch.float64), k)


def _unit_scale(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    e = pow2_exponent(float(t.abs().max().item()))
    return scale_pow2(t, -e), e


def gaussian_entropy_from_spectrum(cov_eigs: np.ndarray, e: int, ridge: float = 1e-6) -> float:
    """1/2 sum log(2 pi e (lambda + ridge)) for covariance eigenvalues ``cov_eigs * 4**e`` (input units).

    The eigenvalues come from the spectral accumulator (:func:`sweep.metrics._streaming.accumulate`), the one
    pass that every spectral metric shares, in its unit-scaled form with round-off-level values set to 0."""
    lam = np.clip(np.asarray(cov_eigs, dtype=np.float64), 0.0, None)
    with np.errstate(divide="ignore"):  # log(0) = -inf is meant: a zero eigenvalue (and ridge 0)
        log_lam = np.log(lam) + 2.0 * e * math.log(2.0)  # eigenvalues in the input's units, in logs
        log_total = np.logaddexp(log_lam, math.log(ridge) if ridge > 0.0 else -math.inf)
    if np.any(np.isneginf(log_total)):
        return -math.inf
    return float(0.5 * np.sum(math.log(2.0 * math.pi * math.e) + log_total))


def knn_entropy(t: torch.Tensor, k: int = 3) -> float:
    """Kozachenko-Leonenko k-NN estimate on the float64 rows t."""
    n, d = t.shape
    k = check_integer(k, "k")
    if not 1 <= k < n:
        raise MetricInputError(f"k must satisfy 1 <= k < N={n}, got k={k}")
    # sklearn chunks the distance computation (O(N) memory); column k of the (k+1)-NN distances
    # including the point itself is its k-th neighbour's distance, duplicates included.
    ts, e = _unit_scale(t)
    pts = ts.numpy()
    r = NearestNeighbors(n_neighbors=k + 1).fit(pts).kneighbors(pts)[0][:, k]
    log_unit_ball = 0.5 * d * math.log(math.pi) - float(scipy.special.gammaln(0.5 * d + 1.0))
    mean_log_r = float(np.mean(np.log(np.maximum(r, _DISTANCE_FLOOR)))) + e * math.log(2.0)
    return float(scipy.special.digamma(n) - scipy.special.digamma(k) + log_unit_ball + d * mean_log_r)

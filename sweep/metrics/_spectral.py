"""Single spectral metrics of an (N, D) embedding matrix, each from the shared Gram pass.

RankMe follows Garrido et al. 2023 exactly: singular values of the *un-centred* Z,
p_k = sigma_k / sum(sigma) + 1e-7, RankMe = exp(-sum p_k log p_k). Variants used elsewhere
(centred, squared singular values as in reptrix) exist only under explicit names.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ._alpha import DEFAULT_ALPHA_WINDOW, AlphaFit, alpha_from_spectrum
from ._inputs import ArrayLike
from ._spectrum import (
    RANKME_EPS,
    check_eps,
    entropy_effective_rank,
    nesum_from_eigenvalues,
    participation_ratio_from_eigenvalues,
    rankme_from_gram_eigenvalues,
    stable_rank_from_gram_eigenvalues,
)
from ._streaming import accumulate


def _gram(z: ArrayLike, name: str = "z") -> tuple[np.ndarray, int]:
    """Un-centred Gram spectrum at a unit scale (every metric here is scale-free), and N."""
    acc = accumulate(z, name)
    return acc._gram_spectrum(), acc.n


def _cov(z: ArrayLike, name: str = "z") -> tuple[np.ndarray, np.ndarray, int]:
    """(covariance spectrum, its alpha-fit form) at a unit scale, and N: one eigenvalue problem, not two."""
    acc = accumulate(z, name)
    cov, alpha_cov = acc._cov_spectra()
    return cov, alpha_cov, acc.n


def rankme(z: ArrayLike, eps: float = RANKME_EPS) -> float:
    """RankMe (paper definition): effective rank from the singular values of un-centred Z."""
    eps = check_eps(eps)
    gram, n = _gram(z)
    return rankme_from_gram_eigenvalues(gram, n, eps)


def rankme_centered(z: ArrayLike, eps: float = RANKME_EPS) -> float:
    """RankMe on the singular values of the column-centred Z (a variant, not the paper's)."""
    eps = check_eps(eps)
    cov, _, n = _cov(z)
    return rankme_from_gram_eigenvalues(cov, n, eps)


def rankme_sq(z: ArrayLike, eps: float = RANKME_EPS, center: bool = False) -> float:
    """RankMe on squared singular values (Gram / covariance eigenvalues); reptrix uses center=True."""
    eps = check_eps(eps)
    if center:
        lam, _, n = _cov(z)
    else:
        lam, n = _gram(z)
    return entropy_effective_rank(lam[: min(n, lam.size)], eps)


def stable_rank(x: ArrayLike) -> float:
    """||X||_F^2 / ||X||_2^2 of the un-centred X: a smooth lower bound on rank(X)."""
    return stable_rank_from_gram_eigenvalues(_gram(x, "x")[0])


def participation_ratio(x: ArrayLike) -> float:
    """(sum lambda)^2 / sum lambda^2 of the centred covariance eigenvalues."""
    return participation_ratio_from_eigenvalues(_cov(x, "x")[0])


def nesum(x: ArrayLike) -> float:
    """NESum (He & Ozay 2022): sum_k lambda_k / lambda_1 of the centred covariance."""
    return nesum_from_eigenvalues(_cov(x, "x")[0])


def alpha_req(x: ArrayLike, window: Sequence[int] = DEFAULT_ALPHA_WINDOW) -> AlphaFit:
    """alpha-ReQ: power-law decay of the centred covariance spectrum over a 1-based rank window.

    Never raises for valid data: D too small for the window gives alpha NaN with ``reason`` (and an
    :class:`~sweep.metrics.AlphaWindowWarning`), as does a window cut short by zero eigenvalues (alpha set).
    """
    return alpha_from_spectrum(_cov(x, "x")[1], window)

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


def _spectra(z: ArrayLike, name: str = "z") -> tuple[np.ndarray, np.ndarray, int]:
    """(Gram, covariance) spectra at a unit scale (every metric here is scale-free), and N."""
    acc = accumulate(z, name)
    gram, cov, _ = acc._scaled_spectra()
    return gram, cov, acc.n


def rankme(z: ArrayLike, eps: float = RANKME_EPS) -> float:
    """RankMe (paper definition): effective rank from the singular values of un-centred Z."""
    eps = check_eps(eps)
    gram, _, n = _spectra(z)
    return rankme_from_gram_eigenvalues(gram, n, eps)


def rankme_centered(z: ArrayLike, eps: float = RANKME_EPS) -> float:
    """RankMe on the singular values of the column-centred Z (a variant, not the paper's)."""
    eps = check_eps(eps)
    _, cov, n = _spectra(z)
    return rankme_from_gram_eigenvalues(cov, n, eps)


def rankme_sq(z: ArrayLike, eps: float = RANKME_EPS, center: bool = False) -> float:
    """RankMe on squared singular values (Gram / covariance eigenvalues); reptrix uses center=True."""
    eps = check_eps(eps)
    gram, cov, n = _spectra(z)
    lam = cov if center else gram
    return entropy_effective_rank(lam[: min(n, lam.size)], eps)


def stable_rank(x: ArrayLike) -> float:
    """||X||_F^2 / ||X||_2^2 of the un-centred X: a smooth lower bound on rank(X)."""
    gram, _, _ = _spectra(x, "x")
    return stable_rank_from_gram_eigenvalues(gram)


def participation_ratio(x: ArrayLike) -> float:
    """(sum lambda)^2 / sum lambda^2 of the centred covariance eigenvalues."""
    _, cov, _ = _spectra(x, "x")
    return participation_ratio_from_eigenvalues(cov)


def nesum(x: ArrayLike) -> float:
    """NESum (He & Ozay 2022): sum_k lambda_k / lambda_1 of the centred covariance."""
    _, cov, _ = _spectra(x, "x")
    return nesum_from_eigenvalues(cov)


def alpha_req(x: ArrayLike, window: Sequence[int] = DEFAULT_ALPHA_WINDOW) -> AlphaFit:
    """alpha-ReQ: power-law decay of the centred covariance spectrum over a 1-based rank window.

    Never raises for valid data: D too small for the window gives alpha NaN with ``reason`` (and an
    :class:`~sweep.metrics.AlphaWindowWarning`), as does a window cut short by zero eigenvalues (alpha set).
    """
    _, _, alpha_cov = accumulate(x, "x")._scaled_spectra()
    return alpha_from_spectrum(alpha_cov, window)

"""alpha-ReQ (Agrawal et al., NeurIPS 2022): the power-law decay of the covariance eigenspectrum.

The authors' code (kumarkrishna/fastssl, ``stringer_get_powerlaw`` called with
``trange=np.arange(3, 100)``) fits log(lambda_k) = c - alpha * log(k) by least squares weighted
with 1/k on the 1-based ranks k = 4..100; ``DEFAULT_ALPHA_WINDOW`` pins that window (the same as
``MetricsConfig.alpha_window``). Skipping the first three ranks ignores the few dominant directions
that sit above the power law; weighting by 1/k balances the log-spaced ranks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ._inputs import MetricInputError
from ._spectrum import descending

DEFAULT_ALPHA_WINDOW: tuple[int, int] = (4, 100)
MIN_FIT_POINTS = 3


@dataclass(frozen=True)
class AlphaFit:
    """Result of the power-law fit.

    alpha: decay exponent (lambda_k ~ k^-alpha); r2: coefficient of determination of the weighted
    fit; window: 1-based inclusive ranks actually used; collapsed: True when the embedding had too
    few non-zero eigenvalues to fit (alpha and r2 are then NaN) -- a training failure, not a bug.
    """

    alpha: float
    r2: float
    window: tuple[int, int]
    collapsed: bool = False


def check_window(window: Sequence[int]) -> tuple[int, int]:
    """Validate a 1-based inclusive rank window (lo, hi) with room for 3 points."""
    try:
        lo, hi = (int(v) for v in window)
    except (TypeError, ValueError):
        raise MetricInputError(f"window must be a pair (lo, hi) of 1-based ranks, got {window!r}") from None
    if lo < 1 or hi < lo + MIN_FIT_POINTS - 1:
        raise MetricInputError(
            f"window must satisfy 1 <= lo and hi >= lo + {MIN_FIT_POINTS - 1} (at least "
            f"{MIN_FIT_POINTS} ranks), got window=({lo}, {hi})"
        )
    return lo, hi


def fit_power_law(eigenvalues: np.ndarray, window: Sequence[int] = DEFAULT_ALPHA_WINDOW) -> AlphaFit:
    """Weighted (1/k) least-squares fit of log lambda_k on log k over the rank window.

    Pure: works on a sorted copy of the spectrum. The window's upper end is clipped to the number of
    strictly positive eigenvalues (log 0 is undefined); fewer than 3 remaining ranks is an error.
    """
    lo, hi = check_window(window)
    e = descending(eigenvalues)
    hi_used = min(hi, int(np.count_nonzero(e > 0.0)))
    if hi_used - lo + 1 < MIN_FIT_POINTS:
        raise MetricInputError(
            f"window=({lo}, {hi}) leaves {max(hi_used - lo + 1, 0)} positive eigenvalues of {e.size}; "
            f"the fit needs at least {MIN_FIT_POINTS}"
        )
    k = np.arange(lo, hi_used + 1, dtype=np.float64)
    alpha, r2 = _weighted_loglog_fit(k, e[lo - 1 : hi_used])
    return AlphaFit(alpha=alpha, r2=r2, window=(lo, hi_used))


def _weighted_loglog_fit(k: np.ndarray, lam: np.ndarray) -> tuple[float, float]:
    """Slope (negated) and weighted R^2 of log(lam) = c - alpha log(k), weights 1/k."""
    w = 1.0 / k
    x, y = np.log(k), np.log(lam)
    xm, ym = np.average(x, weights=w), np.average(y, weights=w)
    sxx = float(np.sum(w * (x - xm) ** 2))
    sxy = float(np.sum(w * (x - xm) * (y - ym)))
    slope = sxy / sxx
    resid = y - (ym + slope * (x - xm))
    ss_res = float(np.sum(w * resid**2))
    ss_tot = float(np.sum(w * (y - ym) ** 2))
    # A flat spectrum is an exact power law with alpha = 0: its fit is perfect, not undefined.
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0.0 else 1.0
    return -slope, r2


def alpha_from_spectrum(cov_eigs: np.ndarray, window: Sequence[int] = DEFAULT_ALPHA_WINDOW) -> AlphaFit:
    """alpha-ReQ on a cleaned covariance spectrum; a collapsed spectrum gives a NaN fit, not an error.

    A spectrum with fewer than lo + 2 eigenvalues in total means D is too small for the window (a
    configuration error, raised); fewer than lo + 2 *non-zero* ones means the embedding collapsed.
    """
    lo, hi = check_window(window)
    e = descending(cov_eigs)
    if e.size < lo + MIN_FIT_POINTS - 1:
        raise MetricInputError(
            f"window=({lo}, {hi}) needs D >= {lo + MIN_FIT_POINTS - 1} eigenvalues, got D={e.size}"
        )
    nonzero = int(np.count_nonzero(e > 0.0))
    if nonzero < lo + MIN_FIT_POINTS - 1:
        return AlphaFit(alpha=math.nan, r2=math.nan, window=(lo, min(hi, nonzero)), collapsed=True)
    return fit_power_law(e, (lo, hi))

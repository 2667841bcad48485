"""alpha-ReQ (Agrawal et al., NeurIPS 2022): the power-law decay of the covariance eigenspectrum.

The authors' code (kumarkrishna/fastssl, ``stringer_get_powerlaw`` called with
``trange=np.arange(3, 100)``) fits log(lambda_k) = c - alpha * log(k) by least squares weighted
with 1/k on the 1-based ranks k = 4..100; ``DEFAULT_ALPHA_WINDOW`` pins that window (the same as
``MetricsConfig.alpha_window``). Skipping the first three ranks ignores the few dominant directions
that sit above the power law; weighting by 1/k balances the log-spaced ranks.
"""
from __future__ import annotations

import math
import warnings
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
    few non-zero eigenvalues to fit (alpha and r2 are then NaN) -- a training failure, not a bug;
    window_cut: True when fewer ranks than min(hi, D) were used because the spectrum has fewer non-zero
    eigenvalues (rank-deficient data, N <= D, or a collapse), or when D < lo + 2 leaves no window at all;
    reason: why alpha is NaN or the window was cut ("" when the requested window was used in full).
    """

    alpha: float
    r2: float
    window: tuple[int, int]
    collapsed: bool = False
    window_cut: bool = False
    reason: str = ""


class AlphaWindowWarning(UserWarning):
    """The alpha-ReQ fit used fewer ranks than requested (or none): the exponent is less comparable."""


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
    if hi_used < min(hi, e.size):
        reason = (f"window=({lo}, {hi}) cut to ({lo}, {hi_used}): only {hi_used} of {e.size} eigenvalues "
                  "are non-zero")
        return AlphaFit(alpha=alpha, r2=r2, window=(lo, hi_used), window_cut=True, reason=reason)
    return AlphaFit(alpha=alpha, r2=r2, window=(lo, hi_used))


def _weighted_loglog_fit(k: np.ndarray, lam: np.ndarray) -> tuple[float, float]:
    """Slope (negated) and weighted R^2 of log(lam) = c - alpha log(k), weights 1/k."""
    w = 1.0 / k
    x, y = np.log(k), np.log(lam / lam[0])  # the slope is scale-free; keeps log() away from over/underflow
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
    """alpha-ReQ on a cleaned covariance spectrum; never raises for a valid spectrum.

    Fewer than lo + 2 eigenvalues in total (D too small for the window, e.g. D = 2..5 with the default
    window): alpha NaN, ``window_cut`` and the reason, with an :class:`AlphaWindowWarning` -- the other
    spectral metrics of such an embedding are still defined. Fewer than lo + 2 *non-zero* ones: the
    embedding collapsed (alpha NaN, ``collapsed``). A window cut short by zero eigenvalues warns too.
    """
    lo, hi = check_window(window)
    e = descending(cov_eigs)
    need = lo + MIN_FIT_POINTS - 1
    if e.size < need:
        reason = (f"D={e.size} < {need}: window=({lo}, {hi}) needs at least {need} eigenvalues "
                  f"(ranks {lo}..{need}); alpha is undefined")
        warnings.warn(reason, AlphaWindowWarning, stacklevel=3)
        return AlphaFit(alpha=math.nan, r2=math.nan, window=(lo, min(hi, e.size)), window_cut=True,
                        reason=reason)
    nonzero = int(np.count_nonzero(e > 0.0))
    if nonzero < need:
        reason = (f"collapsed: only {nonzero} of {e.size} covariance eigenvalues are non-zero; "
                  f"window=({lo}, {hi}) needs {need}")
        return AlphaFit(alpha=math.nan, r2=math.nan, window=(lo, min(hi, nonzero)), collapsed=True,
                        window_cut=True, reason=reason)
    fit = fit_power_law(e, (lo, hi))
    if fit.window_cut:
        warnings.warn(f"alpha-ReQ {fit.reason}", AlphaWindowWarning, stacklevel=3)
    return fit

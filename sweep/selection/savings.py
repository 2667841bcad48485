"""Readout savings: how many random readouts a policy is worth, with a bootstrap interval over configs.

Why a new verdict statistic: "p = P(random-b does at least as well)" cannot pass even for a perfect policy
(random-b ties it whenever its b reads include the best config, so p >= about b / N). Savings can: a policy
that needs 4 readouts to be within 1 point as often as random reading is with 12 saves 3x.

Definitions (regret in points against the sweep's oracle = its best VALIDATION readout, reported on test):
- Repetition: a bootstrap sweep, N configs drawn WITH replacement from the scope's N configs (a drawn twice
  config is two configs with equal readouts), visited in a random order; every policy runs on it, and random
  reading is computed on it exactly.
- Random reading, exactly: reading b of the sweep's N configs at random and choosing by validation picks the
  k-th best by validation with probability C(N - k, b - 1) / C(N, b) (ties: smaller trial id); so
  P_rand(within tol | b) and E_rand[regret | b] are exact sums per sweep, then averaged over repetitions
  (draws that read no finite readout choose nothing: never within, left out of the mean regret).
- Savings (P): the random readouts needed to reach the policy's P(within tol), b* = the smallest b with
  P_rand(b) >= P_policy, interpolated linearly between b - 1 and b (P_rand(0) = 0), divided by the policy's
  mean readouts. Savings (regret): the same with E_rand[regret | b] <= the policy's mean regret (E_rand(0) is
  taken as the regret of the worst config). Above 1: the policy beats reading as many configs at random.
- Interval: percentile bootstrap over the repetitions (each already a resample of configs): resample the
  repetitions with replacement, recompute the statistic, 2.5% and 97.5% points.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy.special import gammaln

TOLERANCE_POINTS = 1.0


@dataclass(frozen=True)
class RandomCurves:
    """Exact random reading on one sweep, b = 0..N: P(within tol) and the expected regret (points)."""

    p_within: np.ndarray
    regret: np.ndarray


def _log_comb(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    """log C(n, k), -inf where k < 0 or k > n."""
    ok = (k >= 0) & (k <= n)
    with np.errstate(invalid="ignore"):
        out = gammaln(n + 1.0) - gammaln(k + 1.0) - gammaln(n - k + 1.0)
    return np.where(ok, out, -np.inf)


def choice_probabilities(n: int) -> np.ndarray:
    """P[b, k-1] = probability that the k-th best of n is the best of b random reads, b = 0..n (row 0 = 0)."""
    b = np.arange(n + 1, dtype=float)[:, None]
    k = np.arange(1, n + 1, dtype=float)[None, :]
    logp = _log_comb(n - k, b - 1) - _log_comb(np.full_like(b, n), b)
    probs = np.exp(logp)
    probs[0] = 0.0
    return probs


def random_curves(
    ids: Sequence[int], val: Mapping[int, float], test: Mapping[int, float], tol: float = TOLERANCE_POINTS,
    oracle_test: Optional[float] = None,
) -> RandomCurves:
    """Exact random reading on one sweep (module docstring); ``ids`` the sweep's usable configs, regret against
    ``oracle_test`` (default: the test accuracy of the best validation readout)."""
    n = len(ids)
    ranked = sorted((t for t in ids if math.isfinite(val.get(t, math.nan))), key=lambda t: (-val[t], t))
    if not ranked:
        return RandomCurves(np.zeros(n + 1), np.full(n + 1, math.nan))
    if oracle_test is None:
        oracle_test = test.get(ranked[0], math.nan)
    regret = np.array([100.0 * (oracle_test - test.get(t, math.nan)) for t in ranked])
    probs = choice_probabilities(n)[:, : len(ranked)]
    within = np.where(np.isfinite(regret), regret <= tol + 1e-9, False).astype(float)
    p_within = probs @ within
    ok = np.isfinite(regret)
    mass = probs[:, ok].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_regret = np.where(mass > 0, probs[:, ok] @ regret[ok] / np.where(mass > 0, mass, 1.0), np.nan)
    mean_regret[0] = float(np.nanmax(regret)) if ok.any() else math.nan
    return RandomCurves(p_within, mean_regret)


def stack_curves(curves: Sequence[np.ndarray]) -> np.ndarray:
    """Curves over b = 0..N_r as one array: a sweep with fewer usable configs (failed ones drawn) keeps its
    value at b = N_r beyond it, since reading more than all of them reads all of them."""
    width = max(len(c) for c in curves)
    return np.array([np.concatenate([c, np.full(width - len(c), c[-1])]) for c in curves])


def readouts_to_reach(curve: np.ndarray, target: float, increasing: bool = True) -> float:
    """The (linearly interpolated) b at which ``curve`` (indexed by b = 0..N) first reaches ``target``;
    ``increasing=False`` for a falling curve (regret). N when it never does."""
    values = np.asarray(curve, float) if increasing else -np.asarray(curve, float)
    goal = target if increasing else -target
    if not np.isfinite(goal):
        return math.nan
    for b in range(len(values)):
        if np.isfinite(values[b]) and values[b] >= goal - 1e-12:
            if b == 0:
                return 0.0
            prev = values[b - 1]
            if not np.isfinite(prev) or values[b] == prev:
                return float(b)
            return float(b - 1 + (goal - prev) / (values[b] - prev))
    return float(len(values) - 1)


@dataclass(frozen=True)
class Savings:
    value: float
    low: float
    high: float


def savings_statistics(
    within: np.ndarray, regret: np.ndarray, readouts: np.ndarray, p_curves: np.ndarray, regret_curves: np.ndarray,
    n_boot: int = 1000, seed: int = 0,
) -> tuple[Savings, Savings]:
    """(savings by P(within), savings by mean regret) with percentile intervals over repetitions.

    Per repetition r: ``within[r]`` (0/1), ``regret[r]`` (points, inf when nothing chosen), ``readouts[r]``,
    and the exact random curves ``p_curves[r]`` / ``regret_curves[r]`` over b = 0..N."""
    within, regret, readouts = (np.asarray(a, float) for a in (within, regret, readouts))
    p_curves, regret_curves = np.asarray(p_curves, float), np.asarray(regret_curves, float)

    def stat(idx: np.ndarray) -> tuple[float, float]:
        mean_reads = readouts[idx].mean()
        if mean_reads <= 0:
            return math.nan, math.nan
        b_p = readouts_to_reach(p_curves[idx].mean(axis=0), within[idx].mean())
        finite = regret[idx][np.isfinite(regret[idx])]
        target = finite.mean() if len(finite) == len(idx) else math.inf
        curve = np.nanmean(regret_curves[idx], axis=0) if len(idx) else regret_curves[0]
        b_r = readouts_to_reach(curve, target, increasing=False) if math.isfinite(target) else 0.0
        return b_p / mean_reads, b_r / mean_reads

    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():  # a statistic NaN in every resample (no readout) stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        point = stat(np.arange(len(within)))
        boots = np.array([stat(rng.integers(0, len(within), len(within))) for _ in range(int(n_boot))])
        low = np.nanpercentile(boots, 2.5, axis=0) if len(boots) else [math.nan, math.nan]
        high = np.nanpercentile(boots, 97.5, axis=0) if len(boots) else [math.nan, math.nan]
    return (Savings(point[0], float(low[0]), float(high[0])), Savings(point[1], float(low[1]), float(high[1])))


def binomial_se_points(accuracy: float, n_images: int) -> float:
    """Standard error (points) of an accuracy measured on ``n_images`` independent images."""
    if not n_images or not math.isfinite(accuracy):
        return math.nan
    return 100.0 * math.sqrt(accuracy * (1.0 - accuracy) / n_images)


@dataclass(frozen=True)
class TopTies:
    """Ties at the top of validation: how many configs share the best readout, and what that hides on test."""

    tied: int  # configs sharing the best validation readout (1: no tie)
    test_spread_pts: float  # max - min test accuracy among them (0 without a tie)
    near: int  # configs within one validation standard error of the best (NaN-free count)
    p_tie_decides: float  # over bootstrap sweeps: P(the oracle's config is one of >= 2 with the best readout
    # but different test accuracies), i.e. how often the tie-break (smaller id) decides the oracle


def top_ties(ids: Sequence[int], val: Mapping[int, float], test: Mapping[int, float], val_se_pts: float = math.nan,
             n_reps: int = 1000, seed: int = 0) -> TopTies:
    """:class:`TopTies` for one sweep of configs ``ids``."""
    finite = [t for t in ids if math.isfinite(val.get(t, math.nan))]
    if not finite:
        return TopTies(0, math.nan, 0, math.nan)
    best = max(val[t] for t in finite)
    tied = [t for t in finite if val[t] == best]
    spread = 100.0 * (max(test.get(t, math.nan) for t in tied) - min(test.get(t, math.nan) for t in tied))
    near = sum(100.0 * (best - val[t]) <= val_se_pts for t in finite) if math.isfinite(val_se_pts) else 0
    v = np.array([val[t] for t in finite])
    w = np.array([test.get(t, math.nan) for t in finite])
    rng = np.random.default_rng(seed)
    decides = 0
    for _ in range(int(n_reps)):
        pick = np.unique(rng.integers(0, len(finite), len(finite)))
        top = v[pick] == v[pick].max()
        decides += int(top.sum() >= 2 and np.ptp(w[pick][top]) > 0)
    return TopTies(len(tied), spread if math.isfinite(spread) else 0.0, int(near), decides / max(1, int(n_reps)))

"""Label-free selection policies: pure functions of the trials table plus a readout oracle.

Each policy decides WHICH trials to read out (a labelled linear probe is the expensive, label-using step);
the oracle callback ``readout(trial_id) -> accuracy`` is wrapped so the number of distinct readouts is
measured, not declared. Trials that failed (state other than COMPLETE, or a NaN in a metric the policy
needs) are never read and never chosen; every tie is broken by the smaller trial id so results are
deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

Readout = Callable[[int], float]

POLICY_NAMES = ("adaptive_alpha_window", "alpha_band", "rankme_topk", "oracle")


class SelectionError(ValueError):
    """Bad input to a selection policy; the message names the field and the allowed values."""


@dataclass(frozen=True)
class SelectionResult:
    policy: str
    chosen_trial: Optional[int]  # None when the policy read nothing usable
    readouts_used: int  # distinct trials read out
    read_trials: tuple[int, ...]  # in the order they were read
    chosen_accuracy: float  # the readout value that chose it (NaN when nothing was chosen)


class CountingReadout:
    """Wraps a readout oracle: each trial is read once (cached) and every distinct read is counted."""

    def __init__(self, readout: Readout) -> None:
        self._readout = readout
        self._values: dict[int, float] = {}

    def __call__(self, trial: int) -> float:
        trial = int(trial)
        if trial not in self._values:
            self._values[trial] = float(self._readout(trial))
        return self._values[trial]

    @property
    def read_trials(self) -> tuple[int, ...]:
        return tuple(self._values)

    def best(self) -> tuple[Optional[int], float]:
        """Best finite readout so far; ties go to the smaller trial id."""
        finite = [(t, v) for t, v in self._values.items() if math.isfinite(v)]
        if not finite:
            return None, float("nan")
        trial, value = min(finite, key=lambda tv: (-tv[1], tv[0]))
        return trial, value

    def result(self, policy: str) -> SelectionResult:
        trial, value = self.best()
        return SelectionResult(policy, trial, len(self._values), self.read_trials, value)


# ----------------------------------------------------------------------------- candidates
def _require_columns(trials: pd.DataFrame, columns: Iterable[str]) -> None:
    missing = [c for c in columns if c not in trials.columns]
    if missing:
        raise SelectionError(f"trials table lacks column(s) {missing}; present: {sorted(trials.columns)}")


def usable_trials(trials: pd.DataFrame, metrics: Sequence[str] = ()) -> pd.DataFrame:
    """Rows that may be read and chosen: state COMPLETE (when a state column exists), finite metrics.

    Sorted by trial id, so every policy sees the same deterministic order.
    """
    _require_columns(trials, ["trial", *metrics])
    keep = pd.Series(True, index=trials.index)
    if "state" in trials.columns:
        keep &= trials["state"].astype(str).str.upper() == "COMPLETE"
    for metric in metrics:
        keep &= np.isfinite(pd.to_numeric(trials[metric], errors="coerce").astype(float))
    return trials.loc[keep].sort_values("trial", kind="stable")


def _check_positive(name: str, value: int) -> None:
    if int(value) < 1:
        raise SelectionError(f"{name} must be an integer >= 1, got {value!r}")


# ----------------------------------------------------------------------------- 1. adaptive alpha window
def _visiting_order(trials: pd.DataFrame, order: Optional[Sequence[int]]) -> list[int]:
    """Trial ids in visiting order; default: ascending trial id (the order the sweep created them)."""
    known = [int(t) for t in trials["trial"]]
    if order is None:
        return sorted(known)
    order = [int(t) for t in order]
    if len(set(order)) != len(order):
        raise SelectionError("order must not repeat a trial id")
    unknown = sorted(set(order) - set(known))
    if unknown:
        raise SelectionError(f"order names trial ids {unknown[:5]} that are not in the trials table")
    return order


def _window_from_top(
    read: dict[int, float], alpha: dict[int, float], seen: list[float], top_k: int
) -> tuple[float, float]:
    """Alpha range of the top-k read-out configs; a side stays open while it is the extreme of all seen."""
    finite = sorted(((-v, t) for t, v in read.items() if math.isfinite(v)))
    if not finite:
        return -math.inf, math.inf
    top_alphas = [alpha[t] for _, t in finite[:top_k]]
    lo, hi = min(top_alphas), max(top_alphas)
    if lo <= min(seen):
        lo = -math.inf
    if hi >= max(seen):
        hi = math.inf
    return lo, hi


def adaptive_alpha_window(
    trials: pd.DataFrame,
    readout: Readout,
    order: Optional[Sequence[int]] = None,
    batch_size: int = 10,
    top_k: int = 5,
    alpha_column: str = "alpha",
) -> SelectionResult:
    """alpha-ReQ's adaptive window (Agrawal et al., 2022): visit configs in batches, read out only those
    whose alpha lies in the current window, then reset the window to the alpha range of the top-k
    read-out configs.

    Details we decided (the authors' simulation code was not available to us):
    - the window starts fully open, so the whole first batch is read out;
    - the window is updated once per batch, from ALL configs read so far (fewer than k if fewer were read);
    - a side stays open (+-inf) while the top-k extreme on that side is also the extreme of every usable
      alpha visited so far (the optimum may lie beyond what has been seen);
    - bounds are inclusive; accuracy ties among the top-k go to the smaller trial id;
    - failed trials keep their slot in a batch (they were trained) but are never read;
    - a readout that returns NaN still counts as used and is never chosen.
    """
    _check_positive("batch_size", batch_size)
    _check_positive("top_k", top_k)
    good = usable_trials(trials, [alpha_column])
    alpha = dict(zip(good["trial"].astype(int), good[alpha_column].astype(float), strict=True))
    counter = CountingReadout(readout)
    read: dict[int, float] = {}
    seen: list[float] = []
    lo, hi = -math.inf, math.inf
    visit = _visiting_order(trials, order)
    for start in range(0, len(visit), batch_size):
        for trial in visit[start : start + batch_size]:
            if trial not in alpha:
                continue
            seen.append(alpha[trial])
            if lo <= alpha[trial] <= hi:
                read[trial] = counter(trial)
        lo, hi = _window_from_top(read, alpha, seen, top_k) if seen else (lo, hi)
    return counter.result("adaptive_alpha_window")


# ----------------------------------------------------------------------------- 2. fixed alpha band
def alpha_band(
    trials: pd.DataFrame,
    readout: Readout,
    band: Sequence[float] = (0.8, 1.2),
    alpha_column: str = "alpha",
) -> SelectionResult:
    """Read out every config whose alpha lies in the inclusive band; pick the best readout."""
    if len(band) != 2 or not float(band[0]) < float(band[1]):
        raise SelectionError(f"band must be [low, high] with low < high, got {list(band)!r}")
    good = usable_trials(trials, [alpha_column])
    alphas = good[alpha_column].astype(float)
    inside = good.loc[(alphas >= float(band[0])) & (alphas <= float(band[1])), "trial"]
    counter = CountingReadout(readout)
    for trial in inside.astype(int):
        counter(trial)
    return counter.result("alpha_band")


# ----------------------------------------------------------------------------- 3. RankMe top ceil(log2 N)
def rankme_budget(n: int) -> int:
    """ceil(log2 N) readouts for N configs of one method; at least one when N >= 1."""
    if n < 1:
        return 0
    return max(1, math.ceil(math.log2(n)))


def rankme_topk(
    trials: pd.DataFrame,
    readout: Readout,
    rankme_column: str = "rankme",
    method_column: Optional[str] = "method",
) -> SelectionResult:
    """Read out the top ceil(log2 N) configs by RankMe within each method (RankMe is only comparable
    between runs of one method, N counted per method); pick the best readout over all methods."""
    good = usable_trials(trials, [rankme_column])
    counter = CountingReadout(readout)
    per_method = method_column is not None and method_column in good.columns
    groups = good.groupby(method_column, sort=True, dropna=False) if per_method else [(None, good)]
    for _, group in groups:
        ranked = group.assign(_neg=-group[rankme_column].astype(float)).sort_values(
            ["_neg", "trial"], kind="stable"
        )
        for trial in ranked["trial"].head(rankme_budget(len(group))).astype(int):
            counter(trial)
    return counter.result("rankme_topk")


# ----------------------------------------------------------------------------- 4. label-based oracle
def oracle(trials: pd.DataFrame, readout: Readout) -> SelectionResult:
    """Read out every completed trial and keep the best: the label-based reference for regret."""
    counter = CountingReadout(readout)
    for trial in usable_trials(trials)["trial"].astype(int):
        counter(trial)
    return counter.result("oracle")


def run_policies(
    trials: pd.DataFrame,
    readout: Readout,
    order: Optional[Sequence[int]] = None,
    batch_size: int = 10,
    top_k: int = 5,
    band: Sequence[float] = (0.8, 1.2),
) -> list[SelectionResult]:
    """All four policies on one trials table; columns a policy needs but the table lacks skip it."""
    results = []
    if "alpha" in trials.columns:
        results.append(adaptive_alpha_window(trials, readout, order, batch_size, top_k))
        results.append(alpha_band(trials, readout, band))
    if "rankme" in trials.columns:
        results.append(rankme_topk(trials, readout))
    results.append(oracle(trials, readout))
    return results

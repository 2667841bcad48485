"""Label-free selection policies: pure functions of the trials table plus a readout oracle.

Each policy decides WHICH trials to read out (a labelled linear probe is the expensive, label-using step);
the oracle callback ``readout(trial_id) -> accuracy`` is wrapped so the number of distinct readouts is
measured, not declared. Trials that failed (state other than COMPLETE, or a NaN in a metric the policy
needs) are never read and never chosen; every tie is broken by the smaller trial id so results are
deterministic.

Policies (registered in ``POLICIES``; a new one is a function plus ``@register_policy``):
``adaptive_alpha_window`` (alpha-ReQ's sequential window, checked against the
authors' simulation), ``alpha_band`` (fixed alpha interval), ``rankme_topk`` (top ceil(log2 N) by RankMe
per method), ``alpha_rankme`` (both signals by rank aggregation, ceil(log2 N) readouts in total) and
``calibrated_rank`` (learns from its first readouts which signal ranks this sweep, and in which
direction, then reads the top of that ranking) and ``oracle`` (reads everything: the label-based reference). :func:`read_ranked` is the budgeted core of the
ranking policies, for variants with another order or budget (``benchmarks/selection.py``).

A policy that reads or chooses nothing says why in ``SelectionResult.note`` (e.g. a fixed alpha band that
misses every usable alpha names where they lie), so the report never shows an unexplained blank.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pandas as pd

from sweep.errors import SweepError
from sweep.config.schema import SelectionConfig
from sweep.registry import Registry

Readout = Callable[[int], float]


class SelectionError(SweepError, ValueError):
    """Bad input to a selection policy; the message names the field and the allowed values."""


@dataclass(frozen=True)
class SelectionResult:
    policy: str
    chosen_trial: Optional[int]  # None when the policy read nothing usable
    readouts_used: int  # distinct trials read out
    read_trials: tuple[int, ...]  # in the order they were read
    chosen_accuracy: float  # the readout value that chose it (NaN when nothing was chosen)
    note: str = ""  # why the policy read or chose nothing ("" when it chose a trial): shown in the report
    detail: str = ""  # how it decided when to stop (the guided reader's guarantee), shown beside its choice
    # predicted readouts of the configs (the guided reader): trial, read, observed, predicted, low, high
    predictions: Optional[pd.DataFrame] = field(default=None, compare=False, repr=False)


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

    def result(self, policy: str, note: str = "") -> SelectionResult:
        """The policy's outcome; when it chose nothing, ``note`` (or a generic reason) says why."""
        trial, value = self.best()
        if trial is not None:
            note = ""
        elif not note:
            note = (f"{policy} read nothing" if not self._values else
                    f"{policy} read {len(self._values)} config(s), none with a finite readout")
        return SelectionResult(policy, trial, len(self._values), self.read_trials, value, note)


def _no_usable_note(policy: str, needs: Sequence[str]) -> str:
    """Why a policy read nothing when no trial qualified at all."""
    finite = f" with finite {', '.join(needs)}" if needs else ""
    return f"{policy} read nothing: no usable trial (state COMPLETE{finite})"


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
    keep = np.ones(len(trials), dtype=bool)  # numpy masks: evaluations call this thousands of times
    if "state" in trials.columns:
        keep &= np.char.upper(trials["state"].to_numpy(dtype=str)) == "COMPLETE"
    for metric in metrics:
        keep &= np.isfinite(pd.to_numeric(trials[metric], errors="coerce").to_numpy(dtype=float))
    return trials.loc[keep].sort_values("trial", kind="stable")


def _best_first(group: pd.DataFrame, *keys: pd.Series) -> list[int]:
    """Trial ids sorted by ``keys`` (ascending, first key first, NaN last), ties to the smaller trial id."""
    ids = group["trial"].to_numpy(dtype=np.int64)
    order = np.lexsort((ids, *(np.asarray(k, dtype=float) for k in reversed(keys))))
    return [int(t) for t in ids[order]]


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


def _top_k(read: dict[int, float], top_k: int) -> list[int]:
    """The k best finite readouts; accuracy ties go to the smaller trial id."""
    finite = sorted((-v, t) for t, v in read.items() if math.isfinite(v))
    return [t for _, t in finite[:top_k]]


def _update_window(
    bounds: tuple[float, float], read: dict[int, float], alpha: dict[int, float], top_k: int
) -> tuple[float, float]:
    """New window from the alpha range of the top-k readouts, as in the authors' simulation.

    A side moves to the top-k extreme only when some READ config lies strictly beyond it; otherwise that
    side keeps its previous bound (open at the start), since the optimum may lie beyond what was read.
    """
    top = _top_k(read, top_k)
    if not top:
        return bounds
    read_alphas = [alpha[t] for t in read]
    top_alphas = [alpha[t] for t in top]
    lo, hi = bounds
    if min(top_alphas) > min(read_alphas):
        lo = min(top_alphas)
    if max(top_alphas) < max(read_alphas):
        hi = max(top_alphas)
    return lo, hi


def adaptive_alpha_window(
    trials: pd.DataFrame,
    readout: Readout,
    order: Optional[Sequence[int]] = None,
    batch_size: int = 10,
    top_k: int = 5,
    alpha_column: str = "alpha",
) -> SelectionResult:
    """alpha-ReQ's adaptive window (Agrawal et al., NeurIPS 2022): visit configs in batches, read out only
    those whose alpha lies in the current window, then narrow the window to the alpha range of the top-k
    read-out configs.

    Checked against the authors' simulation (github.com/kumarkrishna/fastssl,
    ``python_scripts/model_selection_sim.py``, ``simulate_model_selection``), which we follow:
    - batches of ``parallel_models = 10`` consecutive configs of a random permutation, the last batch
      shorter; the window starts open (their [0, 10000]), so the whole first batch is read;
    - a config is read iff ``lo <= alpha <= hi`` (inclusive); each read is one linear evaluation;
    - after every batch, the top ``k = parallel_models // 2`` (our ``top_k = 5`` with ``batch_size = 10``)
      of ALL configs read so far, by readout, define the new bounds; a side is moved to the top-k extreme
      only if some read config's alpha lies beyond it, else it keeps its previous value (never reopens);
    - success there is "best accuracy - chosen <= 1 point" over 1000 seeded permutations.
    Where we differ, deliberately:
    - the reference ranks by test accuracy; we rank by the readout we are given (validation);
    - they flag top-k models by accuracy VALUE (ties at the k-th value widen the set) and locate the
      extremes through an unstable argsort; we take exactly k, ties to the smaller trial id, and compare
      alphas by value (a top-k alpha equal to the read minimum leaves that side as it was);
    - they assume every run succeeded: our failed trials keep their slot in a batch (they were trained)
      but are never read; a readout that returns NaN counts as used, is never chosen and never top-k.
    """
    _check_positive("batch_size", batch_size)
    _check_positive("top_k", top_k)
    good = usable_trials(trials, [alpha_column])
    alpha = dict(zip(good["trial"].astype(int), good[alpha_column].astype(float), strict=True))
    counter = CountingReadout(readout)
    read: dict[int, float] = {}
    bounds = (-math.inf, math.inf)
    visit = _visiting_order(trials, order)
    for start in range(0, len(visit), batch_size):
        for trial in visit[start : start + batch_size]:
            if trial in alpha and bounds[0] <= alpha[trial] <= bounds[1]:
                read[trial] = counter(trial)
        bounds = _update_window(bounds, read, alpha, top_k)
    note = _no_usable_note("adaptive_alpha_window", [alpha_column]) if not alpha else ""
    return counter.result("adaptive_alpha_window", note)


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
    return counter.result("alpha_band", _band_note(band, alphas) if inside.empty else "")


def _band_note(band: Sequence[float], alphas: pd.Series) -> str:
    """Why a fixed band read nothing: where the usable alphas lie instead."""
    head = f"alpha_band [{float(band[0]):g}, {float(band[1]):g}] read nothing"
    if alphas.empty:
        return f"{head}: no usable trial has a finite alpha"
    return f"{head}: all {len(alphas)} usable alphas lie in [{alphas.min():.2f}, {alphas.max():.2f}]"


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
        for trial in rankme_order(group, rankme_column)[: rankme_budget(len(group))]:
            counter(trial)
    note = _no_usable_note("rankme_topk", [rankme_column]) if good.empty else ""
    return counter.result("rankme_topk", note)


# ----------------------------------------------------------------------------- 4. alpha + RankMe combined
ALLOCATIONS = ("adaptive", "proportional")


def rankme_order(group: pd.DataFrame, rankme_column: str = "rankme") -> list[int]:
    """Trial ids of one method, highest RankMe first; ties go to the smaller trial id."""
    return _best_first(group, -group[rankme_column].astype(float))


def combined_order(
    group: pd.DataFrame, rankme_column: str = "rankme", alpha_column: str = "alpha"
) -> list[int]:
    """Trial ids of one method, best first, by the sum of two ranks (1 = best, ties share the mean rank):
    RankMe descending (RankMe paper: within one method, higher effective rank predicts better linear
    probes) and |alpha - 1| ascending (alpha-ReQ: probes generalise best for alpha near 1, too flat or too
    steep both hurt). Each signal vetoes the other's failure mode: the highest RankMe sits at alpha < 1
    (flat, noisy spectra), alpha near 1 alone ignores how much of the space is used. Ties in the sum go to
    the higher RankMe, then the smaller trial id."""
    rankme = group[rankme_column].astype(float)
    distance = (group[alpha_column].astype(float) - 1.0).abs()
    score = rankme.rank(ascending=False, method="average") + distance.rank(ascending=True, method="average")
    return _best_first(group, score, -rankme)


def proportional_split(sizes: Sequence[int], budget: int) -> list[int]:
    """Largest-remainder split of ``budget`` in proportion to ``sizes`` (sum = min(budget, sum(sizes)));
    equal remainders go to the larger group, then to the earlier one."""
    total = sum(sizes)
    budget = min(budget, total)
    if total == 0:
        return [0] * len(sizes)
    quotas = [budget * n / total for n in sizes]
    shares = [math.floor(q) for q in quotas]
    by_remainder = sorted(range(len(sizes)), key=lambda i: (-(quotas[i] - shares[i]), -sizes[i], i))
    for i in by_remainder[: budget - sum(shares)]:
        shares[i] += 1
    return shares


def method_groups(good: pd.DataFrame, method_column: Optional[str]) -> list[pd.DataFrame]:
    """One frame per method (one pooled frame without a method column), larger methods first."""
    if method_column is None or method_column not in good.columns:
        return [good] if len(good) else []
    groups = [g for _, g in good.groupby(method_column, sort=True, dropna=False)]
    return sorted(groups, key=len, reverse=True)  # stable: equal sizes keep the method-name order


def _read_adaptive(orders: list[list[int]], budget: int, counter: CountingReadout) -> None:
    """Read the best-ranked config of every method, then give each further readout to the method whose
    best readout so far is highest (RankMe cannot compare methods; one label per method can)."""
    taken = [0] * len(orders)
    for i, order in enumerate(orders):
        if sum(taken) < budget and order:
            counter(order[0])
            taken[i] = 1
    while sum(taken) < budget:
        open_ = [i for i, order in enumerate(orders) if taken[i] < len(order)]
        if not open_:
            return
        i = max(open_, key=lambda j: (_best_of(counter, orders[j][: taken[j]]), -j))
        counter(orders[i][taken[i]])
        taken[i] += 1


def _best_of(counter: CountingReadout, trials: Sequence[int]) -> float:
    values = [counter(t) for t in trials]  # cached: no new readouts
    finite = [v for v in values if math.isfinite(v)]
    return max(finite) if finite else -math.inf


def alpha_rankme(
    trials: pd.DataFrame,
    readout: Readout,
    budget: Optional[int] = None,
    allocation: str = "adaptive",
    rankme_column: str = "rankme",
    alpha_column: str = "alpha",
    method_column: Optional[str] = "method",
) -> SelectionResult:
    """Both label-free signals under one readout budget: rank every method's configs by
    :func:`combined_order` and read ``budget`` configs in total (default ceil(log2 N), N = usable configs
    of all methods, not per method). ``allocation`` splits the budget across methods: ``adaptive`` reads
    each method's top config, then spends the rest on the method with the best readout so far;
    ``proportional`` splits it by method size (largest remainder). Picks the best readout."""
    if allocation not in ALLOCATIONS:
        raise SelectionError(f"allocation must be one of {list(ALLOCATIONS)}, got {allocation!r}")
    if budget is not None:
        _check_positive("budget", budget)
    good = usable_trials(trials, [rankme_column, alpha_column])
    total = rankme_budget(len(good)) if budget is None else int(budget)
    orders = [combined_order(g, rankme_column, alpha_column) for g in method_groups(good, method_column)]
    note = _no_usable_note("alpha_rankme", [rankme_column, alpha_column]) if good.empty else ""
    return read_ranked(orders, total, readout, allocation, "alpha_rankme", note)


def read_ranked(
    orders: Sequence[Sequence[int]], budget: int, readout: Readout, allocation: str = "adaptive",
    policy: str = "ranked", note: str = "",
) -> SelectionResult:
    """Read ``budget`` configs in total from per-method best-first ``orders`` (allocation as in
    :func:`alpha_rankme`) and pick the best readout: the shared core of every budgeted ranking policy."""
    if allocation not in ALLOCATIONS:
        raise SelectionError(f"allocation must be one of {list(ALLOCATIONS)}, got {allocation!r}")
    orders = [list(o) for o in orders]
    counter = CountingReadout(readout)
    if allocation == "adaptive":
        _read_adaptive(orders, int(budget), counter)
    else:
        shares = proportional_split([len(o) for o in orders], int(budget))
        for order, share in zip(orders, shares, strict=True):
            for trial in order[:share]:
                counter(trial)
    return counter.result(policy, note)


# ----------------------------------------------------------------------------- 5. calibrated ranking
# Signals a calibrated policy may pick, in tie-break order: the papers' two metrics, RankMe normalised by its
# width ceiling, and alpha-ReQ's distance to 1 (negated, so that larger always means "ranked higher").
CALIBRATION_SIGNALS = ("rankme", "rankme_normalized", "alpha", "alpha_near_1")
MIN_CALIBRATION = 3  # a rank correlation needs at least 3 readouts


def signal_values(group: pd.DataFrame, signal: str, alpha_column: str = "alpha") -> np.ndarray:
    """Values of a calibration signal: a metric column, or ``alpha_near_1`` = -|alpha - 1|."""
    if signal == "alpha_near_1":
        return -np.abs(group[alpha_column].to_numpy(dtype=float) - 1.0)
    return group[signal].to_numpy(dtype=float)


def _average_ranks(a: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank (O(k^2): calibration sets hold a handful of readouts)."""
    below = (a[:, None] > a[None, :]).sum(axis=1)
    equal = (a[:, None] == a[None, :]).sum(axis=1)
    return below + (equal + 1) / 2.0


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rho of the finite pairs (average ranks); NaN with < 3 pairs or a constant side."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return math.nan
    rx, ry = _average_ranks(x[ok]), _average_ranks(y[ok])
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / math.sqrt((rx * rx).sum() * (ry * ry).sum()))


def calibrate_signal(values: dict[str, np.ndarray], readouts: np.ndarray) -> tuple[str, float]:
    """(signal, sign) whose Spearman with ``readouts`` (aligned with every array of ``values``) is largest in
    absolute value; ties go to the earlier signal; the first signal, higher first (RankMe's own rule when it
    is first), when none correlates."""
    names = list(values)
    best, best_rho = (names[0], 1.0), 0.0
    for signal in names:
        rho = _spearman(values[signal], readouts)
        if math.isfinite(rho) and abs(rho) > abs(best_rho):
            best, best_rho = (signal, 1.0 if rho > 0 else -1.0), rho
    return best


def _calibrated_group(group: pd.DataFrame, visit: Sequence[int], budget: Optional[int], signals: Sequence[str],
                      alpha_column: str, counter: CountingReadout) -> None:
    """One method's reads: calibrate on the first configs visited, then read the top of the learned ranking."""
    ids = group["trial"].to_numpy(dtype=np.int64)
    position = {int(t): i for i, t in enumerate(ids)}
    mine = [t for t in visit if t in position]
    total = rankme_budget(len(mine)) if budget is None else min(int(budget), len(mine))
    first = mine[: min(total, max(MIN_CALIBRATION, math.ceil(total / 2)))]
    readouts = np.array([counter(t) for t in first], dtype=float)
    values = {s: signal_values(group, s, alpha_column) for s in signals}
    rows = [position[t] for t in first]
    signal, sign = calibrate_signal({s: v[rows] for s, v in values.items()}, readouts)
    ranked = ids[np.lexsort((ids, -sign * values[signal]))]
    taken = set(first)
    for trial in [int(t) for t in ranked if int(t) not in taken][: total - len(first)]:
        counter(trial)


def calibrated_rank(
    trials: pd.DataFrame,
    readout: Readout,
    order: Optional[Sequence[int]] = None,
    budget: Optional[int] = None,
    signals: Sequence[str] = CALIBRATION_SIGNALS,
    method_column: Optional[str] = "method",
    alpha_column: str = "alpha",
    policy: str = "calibrated_rank",
) -> SelectionResult:
    """Let a few readouts say which label-free signal ranks this sweep, and in which direction.

    Why: on real sweeps a metric can rank configs well yet in the direction opposite to its paper's rule
    (e.g. alpha far above 1 going with HIGHER accuracy), and which metric carries the signal changes with the
    method and the data. Per method, with b = ``budget`` (default ceil(log2 N) of that method): read the first
    k = max(3, ceil(b / 2)) (at most b) usable configs in visiting order (default: trial id), pick the signal
    of ``signals`` present in the table whose Spearman with those readouts is largest in absolute value (its
    sign kept), read the remaining b - k configs best first by that signed signal (ties to the smaller trial
    id), and choose the best readout. Declared before the testbed's Barlow Twins, VICReg and digits results
    were seen; not tuned on them.
    """
    if budget is not None:
        _check_positive("budget", budget)
    present = [s for s in signals if s in trials.columns or (s == "alpha_near_1" and alpha_column in trials.columns)]
    if not present:
        raise SelectionError(f"calibrated_rank needs one of the signal columns {list(signals)}; "
                             f"present: {sorted(trials.columns)}")
    needs = list(dict.fromkeys(alpha_column if s == "alpha_near_1" else s for s in present))
    good = usable_trials(trials, needs)
    usable_ids = set(good["trial"].astype(int))
    visit = [t for t in _visiting_order(trials, order) if t in usable_ids]
    counter = CountingReadout(readout)
    for group in method_groups(good, method_column):
        _calibrated_group(group, visit, budget, present, alpha_column, counter)
    note = _no_usable_note(policy, needs) if good.empty else ""
    return counter.result(policy, note)


# ----------------------------------------------------------------------------- 6. label-based oracle
def oracle(trials: pd.DataFrame, readout: Readout) -> SelectionResult:
    """Read out every completed trial and keep the best: the label-based reference for regret."""
    counter = CountingReadout(readout)
    good = usable_trials(trials)
    for trial in good["trial"].astype(int):
        counter(trial)
    return counter.result("oracle", _no_usable_note("oracle", []) if good.empty else "")


# ----------------------------------------------------------------------------- registry
PolicyRun = Callable[[pd.DataFrame, Readout, Optional[Sequence[int]], SelectionConfig], "SelectionResult"]


@dataclass(frozen=True)
class Policy:
    """A registered policy: ``run(trials, readout, order, settings)``, skipped on a table without its columns."""

    run: PolicyRun
    needs: tuple[str, ...] = ()  # every one of these columns
    needs_any: tuple[str, ...] = ()  # at least one of these columns (when given)
    order_dependent: bool = False  # True: the result depends on the visiting order
    label_free: bool = True  # False for the oracle: the label-based reference, never a candidate

    def applies(self, columns: Iterable[str]) -> bool:
        have = set(columns)
        return set(self.needs) <= have and (not self.needs_any or bool(have & set(self.needs_any)))


POLICIES: Registry[Policy] = Registry("policy")


def register_policy(name: str, needs: Sequence[str] = (), needs_any: Sequence[str] = (),
                    order_dependent: bool = False, label_free: bool = True) -> Callable[[PolicyRun], PolicyRun]:
    """``@register_policy("name", needs=("rankme",))`` on ``f(trials, readout, order, settings) -> SelectionResult``
    (settings: :class:`SelectionConfig`); ``run_policies``, ``sweep select`` and the report then run it."""

    def add(run: PolicyRun) -> PolicyRun:
        POLICIES.register(name, Policy(run, tuple(needs), tuple(needs_any), order_dependent, label_free))
        return run

    return add


@register_policy("adaptive_alpha_window", needs=("alpha",), order_dependent=True)
def _adaptive_alpha_window(trials: pd.DataFrame, readout: Readout, order: Optional[Sequence[int]],
                           s: SelectionConfig) -> SelectionResult:
    return adaptive_alpha_window(trials, readout, order, s.batch_size, s.top_k)


@register_policy("alpha_band", needs=("alpha",))
def _alpha_band(trials: pd.DataFrame, readout: Readout, order: Optional[Sequence[int]],
                s: SelectionConfig) -> SelectionResult:
    return alpha_band(trials, readout, tuple(s.alpha_band))


@register_policy("rankme_topk", needs=("rankme",))
def _rankme_topk(trials: pd.DataFrame, readout: Readout, order: Optional[Sequence[int]],
                 s: SelectionConfig) -> SelectionResult:
    return rankme_topk(trials, readout)


@register_policy("alpha_rankme", needs=("rankme", "alpha"))
def _alpha_rankme(trials: pd.DataFrame, readout: Readout, order: Optional[Sequence[int]],
                  s: SelectionConfig) -> SelectionResult:
    return alpha_rankme(trials, readout, s.combined_budget, s.combined_allocation)


@register_policy("calibrated_rank", needs_any=("rankme", "alpha"), order_dependent=True)
def _calibrated_rank(trials: pd.DataFrame, readout: Readout, order: Optional[Sequence[int]],
                     s: SelectionConfig) -> SelectionResult:
    return calibrated_rank(trials, readout, order)


@register_policy("oracle", label_free=False)
def _oracle(trials: pd.DataFrame, readout: Readout, order: Optional[Sequence[int]],
            s: SelectionConfig) -> SelectionResult:
    return oracle(trials, readout)


def run_policies(
    trials: pd.DataFrame,
    readout: Readout,
    order: Optional[Sequence[int]] = None,
    settings: Optional[SelectionConfig] = None,
) -> list[SelectionResult]:
    """Every registered policy (``POLICIES``) on one trials table; a policy whose columns the table lacks is
    skipped. ``settings`` (a whole :class:`sweep.config.schema.SelectionConfig`, default its defaults) goes to
    each policy as is: each takes the fields it needs, so no setting is unpacked and packed on the way."""
    settings = settings if settings is not None else SelectionConfig()
    ranked = sorted(POLICIES.items(), key=lambda item: not item[1].label_free)  # references (oracle) last
    return [policy.run(trials, readout, order, settings) for _, policy in ranked
            if policy.applies(trials.columns)]

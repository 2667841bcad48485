"""Evidence for label-free selection: bootstrap rank correlations and policies against random-b.

Pure functions shared by the report (``sweep select``) and ``benchmarks/selection.py``.

Definitions (accuracies are fractions; regrets are in points = 100 x accuracy):
- Spearman interval: percentile bootstrap over configs (rows resampled with replacement, seeded); ``n`` =
  configs with a finite metric and a finite test accuracy.
- Repetition: one visiting order of the sweep (a seeded permutation), or with ``subsample=K`` a sweep of K
  configs drawn without replacement and visited in random order; every policy runs on that sweep.
- Oracle: the usable config (state COMPLETE) with the best VALIDATION readout of the repetition's sweep
  (ties: smaller trial id); regret = 100 x (oracle's test accuracy - chosen config's test accuracy).
  A policy that chooses nothing has regret +inf (never within tolerance).
- random-b: in the same repetition, an independent random order of the sweep's usable configs; read the
  first b, choose by validation, where b = the policy's own readout count in that repetition.
- p vs random-b (one-sided): p = P(random-b regret <= policy regret) = the fraction of repetitions in
  which the random draw does at least as well as the policy (ties count against the policy). Small p:
  the policy's choice is rarely matched by reading as many configs at random. With only visiting orders,
  deterministic policies have one regret and p is the chance that b random readouts do as well.
  Floor: when a policy picks the oracle's config, random-b ties it whenever its b reads include that
  config (or one with a better test accuracy), so p >= about b / N: a sweep of N = 32 read with b = 7 can
  never reach p < 0.05, however good the metric; only more configs (larger N) can.
- Success: regret <= tolerance (1 point) with at most ceil(log2 N) + 2 readouts (N = usable configs with
  finite RankMe and alpha). Target: P(success) >= 0.9 and p vs random-b < 0.05.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pandas as pd
from scipy import stats

from sweep.config.schema import SelectionConfig
from sweep.selection.guided import guided, guided_settings
from sweep.selection.savings import random_curves, readouts_to_reach, stack_curves
from sweep.selection.policies import (
    POLICIES,
    Policy,
    Readout,
    SelectionResult,
    alpha_rankme,
    calibrated_rank,
    method_groups,
    rankme_budget,
    rankme_order,
    read_ranked,
    usable_trials,
)

POOLED = "pooled"
TARGET_P_SUCCESS = 0.9
TARGET_P_VALUE = 0.05
TOLERANCE_POINTS = 1.0


# ----------------------------------------------------------------------------- rank correlations
@dataclass(frozen=True)
class SpearmanInterval:
    rho: float
    low: float
    high: float
    n: int


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman of every row pair of two (B, n) arrays (average ranks); NaN where a row is constant."""
    rx, ry = stats.rankdata(x, axis=1), stats.rankdata(y, axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx**2).sum(axis=1) * (ry**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(axis=1) / np.where(den > 0, den, 1.0), np.nan)


def bootstrap_spearman(
    x: Sequence[float], y: Sequence[float], n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> SpearmanInterval:
    """Spearman rho of the finite pairs with a percentile bootstrap interval over configs (seeded).
    NaN everywhere with fewer than 3 pairs or a constant variable."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = len(x)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return SpearmanInterval(math.nan, math.nan, math.nan, n)
    rho = float(_spearman_rows(x[None, :], y[None, :])[0])
    idx = np.random.default_rng(seed).integers(0, n, size=(int(n_boot), n))
    boot = _spearman_rows(x[idx], y[idx])
    if not np.isfinite(boot).any():
        return SpearmanInterval(rho, math.nan, math.nan, n)
    tail = 50.0 * (1.0 - level)
    low, high = np.nanpercentile(boot, [tail, 100.0 - tail])
    return SpearmanInterval(rho, float(low), float(high), n)


def scope_frames(frame: pd.DataFrame, method_column: str = "method") -> list[tuple[str, pd.DataFrame]]:
    """(scope, rows): one per method, then all methods pooled (only the pooled scope without a method
    column; a single method is its own pooled scope)."""
    if method_column not in frame.columns:
        return [(POOLED, frame)]
    methods = [(str(m), g) for m, g in frame.groupby(method_column, sort=True)]
    return methods + [(POOLED, frame)] if len(methods) > 1 else methods


def spearman_table(
    frame: pd.DataFrame, metrics: Sequence[str], accuracy: str = "test_accuracy", n_boot: int = 1000,
    seed: int = 0, method_column: str = "method",
) -> pd.DataFrame:
    """Per metric and scope: Spearman with ``accuracy``, bootstrap 95% interval, n (usable rows only)."""
    good = usable_trials(frame)
    if "alpha" in good.columns and "abs_alpha_minus_1" in metrics and "abs_alpha_minus_1" not in good.columns:
        good = good.assign(abs_alpha_minus_1=(pd.to_numeric(good["alpha"], errors="coerce") - 1.0).abs())
    rows = []
    for metric in metrics:
        for scope, group in scope_frames(good, method_column):
            x = pd.to_numeric(group[metric], errors="coerce").to_numpy(float)
            y = pd.to_numeric(group[accuracy], errors="coerce").to_numpy(float)
            ci = bootstrap_spearman(x, y, n_boot, seed)
            rows.append({"metric": metric, "scope": scope, "n": ci.n, "spearman": ci.rho,
                         "ci_low": ci.low, "ci_high": ci.high})
    return pd.DataFrame(rows, columns=["metric", "scope", "n", "spearman", "ci_low", "ci_high"])


# ----------------------------------------------------------------------------- policies to evaluate
PolicyRun = Callable[[pd.DataFrame, Readout, Sequence[int]], SelectionResult]


@dataclass(frozen=True)
class PolicySpec:
    """A policy as the evaluation runs it: (trials, readout, visiting order) -> result."""

    name: str
    run: PolicyRun
    order_dependent: bool = False  # False: the result depends on the sweep only, not on the visiting order
    label_free: bool = True  # False for the oracle: never a candidate for the target
    needs: tuple[str, ...] = ()  # columns it needs; skipped when the table lacks one
    needs_any: tuple[str, ...] = ()  # when given, it needs at least one of these columns too


def sweep_budget(n: int) -> int:
    """ceil(log2 N) + 2: the readout budget of the target."""
    return rankme_budget(n) + 2


def _signal_count(trials: pd.DataFrame) -> int:
    """N of the budget: usable configs with finite RankMe and alpha (those present)."""
    return len(usable_trials(trials, [c for c in ("rankme", "alpha") if c in trials.columns]))


def _renamed(result: SelectionResult, name: str) -> SelectionResult:
    return dataclasses.replace(result, policy=name, note=result.note.replace(result.policy, name, 1))


def _rankme_plus2(trials: pd.DataFrame, readout: Readout, order: Sequence[int]) -> SelectionResult:
    good = usable_trials(trials, ["rankme"])
    orders = [rankme_order(g) for g in method_groups(good, "method")]
    return read_ranked(orders, sweep_budget(len(good)), readout, "adaptive", "rankme_topk+2")


def _alpha_rankme_plus2(trials: pd.DataFrame, readout: Readout, order: Sequence[int]) -> SelectionResult:
    budget = sweep_budget(_signal_count(trials))
    return _renamed(alpha_rankme(trials, readout, budget=budget), "alpha_rankme+2")


def _calibrated_plus2(trials: pd.DataFrame, readout: Readout, order: Sequence[int]) -> SelectionResult:
    """calibrated_rank with the target budget ceil(log2 N) + 2 per method, N of the largest method (the
    policy takes one budget for every method; the testbed's methods are equally large)."""
    groups = method_groups(usable_trials(trials), "method")
    budget = max((sweep_budget(len(g)) for g in groups), default=1)
    return calibrated_rank(trials, readout, order, budget=budget, policy="calibrated_rank+2")


def registered_spec(name: str, policy: Policy, settings: SelectionConfig) -> PolicySpec:
    """A registered policy (``POLICIES``) with fixed settings, as the evaluation runs it."""

    def run(trials: pd.DataFrame, readout: Readout, order: Sequence[int]) -> SelectionResult:
        return policy.run(trials, readout, order, settings)

    return PolicySpec(name, run, policy.order_dependent, policy.label_free, policy.needs, policy.needs_any)


def policy_specs(settings: Optional[SelectionConfig] = None) -> list[PolicySpec]:
    """Every registered policy (as ``run_policies`` runs it, same settings) plus the label-free ones given the
    whole target budget ceil(log2 N) + 2: ``rankme_topk+2`` (RankMe order within each method, budget split
    across methods as in alpha_rankme), ``alpha_rankme+2`` and ``calibrated_rank+2``, and the guided reader
    with the label-free metrics switched the other way (``guided+metrics`` or ``guided-metrics``); label-based
    references (the oracle) last. ``settings``: a whole :class:`SelectionConfig` (default its defaults)."""
    settings = settings if settings is not None else SelectionConfig()
    registered = [registered_spec(name, policy, settings) for name, policy in POLICIES.items()]
    switched = guided_settings(settings, metrics=not settings.guided_metrics)
    switched_name = "guided+metrics" if switched.metrics else "guided-metrics"

    def guided_switched(trials: pd.DataFrame, readout: Readout, order: Sequence[int]) -> SelectionResult:
        return guided(trials, readout, switched, order, policy=switched_name)

    target_budget = [
        PolicySpec("rankme_topk+2", _rankme_plus2, needs=("rankme",)),
        PolicySpec("alpha_rankme+2", _alpha_rankme_plus2, needs=("rankme", "alpha")),
        PolicySpec("calibrated_rank+2", _calibrated_plus2, True, needs=("rankme",)),
        PolicySpec(switched_name, guided_switched),
    ]
    return ([s for s in registered if s.label_free] + target_budget
            + [s for s in registered if not s.label_free])


def applicable(specs: Sequence[PolicySpec], trials: pd.DataFrame) -> list[PolicySpec]:
    """The specs whose columns the table has."""
    have = set(trials.columns)
    return [s for s in specs if set(s.needs) <= have and (not s.needs_any or bool(have & set(s.needs_any)))]


# ----------------------------------------------------------------------------- repetitions
@dataclass(frozen=True)
class Repetition:
    sweep: tuple[int, ...]  # trial ids of this repetition's sweep, in visiting order
    random_order: tuple[int, ...]  # an independent permutation of the same ids: random-b reads a prefix


def repetitions(
    trial_ids: Sequence[int], n_reps: int, seed: int = 0, subsample: Optional[int] = None
) -> list[Repetition]:
    """Seeded repetitions: visiting orders of all ids, or of ``subsample`` ids drawn without replacement
    (capped at the number of ids)."""
    if n_reps < 1:
        raise ValueError(f"n_reps must be an integer >= 1, got {n_reps!r}")
    if subsample is not None and subsample < 1:
        raise ValueError(f"subsample must be an integer >= 1, got {subsample!r}")
    ids = np.asarray(sorted(int(t) for t in trial_ids), dtype=np.int64)
    size = len(ids) if subsample is None else min(int(subsample), len(ids))
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(int(n_reps)):
        sweep = rng.permutation(ids)[:size]
        reps.append(Repetition(tuple(int(t) for t in sweep), tuple(int(t) for t in rng.permutation(sweep))))
    return reps


def oracle_choice(usable: Sequence[int], val: Mapping[int, float]) -> Optional[int]:
    """Usable trial with the best finite validation readout; ties to the smaller id."""
    finite = [(-val[t], t) for t in usable if math.isfinite(val.get(t, math.nan))]
    return min(finite)[1] if finite else None


def prefix_choices(order: Sequence[int], val: Mapping[int, float]) -> list[Optional[int]]:
    """The config chosen by validation (ties: smaller id) after reading the first b configs of ``order``,
    b = 1..len(order); None while nothing finite was read."""
    chosen: list[Optional[int]] = []
    best: Optional[tuple[float, int]] = None
    for trial in order:
        v = val.get(trial, math.nan)
        if math.isfinite(v) and (best is None or (-v, trial) < best):
            best = (-v, trial)
        chosen.append(None if best is None else best[1])
    return chosen


def prefix_regrets(
    order: Sequence[int], val: Mapping[int, float], test: Mapping[int, float], oracle_test: float
) -> np.ndarray:
    """Regret (points) after reading the first b configs of ``order``, b = 0..len(order), choosing by
    validation (ties: smaller id); +inf while nothing finite was read."""
    out = np.full(len(order) + 1, math.inf)
    for i, trial in enumerate(prefix_choices(order, val)):
        if trial is not None:
            out[i + 1] = _regret(oracle_test, test.get(trial, math.nan))
    return out


def _regret(oracle_test: float, chosen_test: float) -> float:
    """Points; +inf when the chosen config has no test readout."""
    return 100.0 * (oracle_test - chosen_test) if math.isfinite(chosen_test) else math.inf


def evaluate_policies(
    trials: pd.DataFrame, val: Mapping[int, float], test: Mapping[int, float], specs: Sequence[PolicySpec],
    reps: Sequence[Repetition], tolerance: float = TOLERANCE_POINTS,
) -> pd.DataFrame:
    """One row per (repetition, policy): readouts, chosen trial, regret and the matched random-b regret
    (points; +inf when nothing was chosen), the repetition's N and budget. Results that cannot depend on
    the visiting order are computed once per distinct sweep."""
    rows: list[dict[str, object]] = []
    cache: dict[tuple[object, ...], Any] = {}  # (policy, sweep) -> result; (sweep, "curve") -> P_rand curve
    sweeps: dict[frozenset[int], tuple[pd.DataFrame, set[int], Optional[int], int]] = {}
    specs = applicable(specs, trials)
    trials = _policy_frame(trials)
    readout = lambda t: val.get(int(t), math.nan)  # noqa: E731
    for i, rep in enumerate(reps):
        members = frozenset(rep.sweep)
        if members not in sweeps:
            sweeps[members] = _sweep_facts(trials, members, val)
        sweep, usable, best, n_signal = sweeps[members]
        if best is None:
            continue
        oracle_test = test.get(best, math.nan)
        if (members, "curve") not in cache:
            cache[(members, "curve")] = random_curves(sorted(usable), val, test, tolerance).p_within
        p_curve = cache[(members, "curve")]
        random_regret = prefix_regrets([t for t in rep.random_order if t in usable], val, test, oracle_test)
        for spec in specs:
            key = (spec.name, members)
            if spec.order_dependent or key not in cache:
                cache[key] = spec.run(sweep, readout, list(rep.sweep))
            res = cache[key]
            chosen = res.chosen_trial
            regret = _regret(oracle_test, test.get(chosen, math.nan)) if chosen is not None else math.inf
            b = min(res.readouts_used, len(random_regret) - 1)
            rows.append({"rep": i, "policy": spec.name, "label_free": spec.label_free, "n": n_signal,
                         "budget": sweep_budget(n_signal), "readouts": res.readouts_used, "chosen": chosen,
                         "regret_pts": regret, "random_regret_pts": float(random_regret[b]),
                         "note": res.note, "random_p_curve": p_curve})
    columns = ["rep", "policy", "label_free", "n", "budget", "readouts", "chosen", "regret_pts",
               "random_regret_pts", "note", "random_p_curve"]
    return pd.DataFrame(rows, columns=columns)


def _policy_frame(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials, strings as plain objects: thousands of policy runs copy and sort it. Every column stays:
    the guided reader's features are the hyperparameters and, as a switch, every label-free metric."""
    frame = trials.copy()
    for column in ("state", "method"):
        if column in frame.columns:
            frame[column] = np.asarray(frame[column].astype(str), dtype=object)
    return frame.reset_index(drop=True)


def _sweep_facts(
    trials: pd.DataFrame, members: frozenset[int], val: Mapping[int, float]
) -> tuple[pd.DataFrame, set[int], Optional[int], int]:
    """A repetition's rows, its usable ids, its oracle trial and the N of its budget."""
    sweep = trials[trials["trial"].astype(int).isin(members)]
    usable = {int(t) for t in usable_trials(sweep)["trial"]}
    return sweep, usable, oracle_choice(sorted(usable), val), _signal_count(sweep)


def p_vs_random(policy_regret: Sequence[float], random_regret: Sequence[float]) -> float:
    """One-sided p that the policy beats random-b: the fraction of matched repetitions in which the random
    draw's regret is <= the policy's (NaN without repetitions)."""
    policy, rand = np.asarray(policy_regret, float), np.asarray(random_regret, float)
    if len(policy) == 0:
        return math.nan
    return float(np.mean(rand <= policy))


def _finite_mean(values: pd.Series) -> float:
    finite = values[np.isfinite(values.to_numpy(float))]
    return float(finite.mean()) if len(finite) else math.nan


def _savings(rows: pd.DataFrame, within: pd.Series) -> float:
    """Readout savings by P(within tolerance) (``sweep.selection.savings``), point estimate: the exact random
    readouts needed to be within as often, over the policy's mean readouts."""
    if "random_p_curve" not in rows.columns or rows["readouts"].mean() <= 0:
        return math.nan
    curve = stack_curves(list(rows["random_p_curve"])).mean(axis=0)
    return readouts_to_reach(curve, float(within.mean())) / float(rows["readouts"].mean())


SUMMARY_COLUMNS = [
    "scope", "configs", "policy", "label_free", "reps", "n", "budget", "readouts_mean", "readouts_max",
    "regret_mean_pts", "p_no_choice", "p_within_1pt", "p_success", "random_regret_mean_pts",
    "random_p_within_1pt", "savings", "p_vs_random", "target_met", "note",
]


def _note_summary(notes: pd.Series) -> str:
    """A policy's note over its repetitions: the note itself when every repetition gave the same one,
    else the most frequent one as an example with how many repetitions had a note."""
    given = notes[notes.astype(bool)]
    if given.empty:
        return ""
    counts = given.value_counts().sort_index().sort_values(ascending=False, kind="stable")
    example = str(counts.index[0])
    if len(counts) == 1 and len(given) == len(notes):
        return example
    lead = "e.g. " if len(counts) > 1 else ""
    return f"{lead}{example} (a note in {len(given)} of {len(notes)} repetitions)"


def summarise_policies(raw: pd.DataFrame, tolerance: float = TOLERANCE_POINTS) -> pd.DataFrame:
    """Per policy: mean / max readouts, mean regret (points, over repetitions that chose something),
    P(within tolerance), P(success), the same for random-b, p vs random-b, and whether the target is met."""
    rows = []
    for name, g in raw.groupby("policy", sort=False):
        within = g["regret_pts"] <= tolerance + 1e-9
        rand_within = g["random_regret_pts"] <= tolerance + 1e-9
        success = within & (g["readouts"] <= g["budget"])
        p = p_vs_random(g["regret_pts"], g["random_regret_pts"])
        label_free = bool(g["label_free"].iloc[0])
        notes = _note_summary(g["note"])
        rows.append({
            "policy": name, "label_free": label_free, "reps": len(g), "n": int(g["n"].max()),
            "budget": int(g["budget"].max()), "readouts_mean": float(g["readouts"].mean()),
            "readouts_max": int(g["readouts"].max()), "regret_mean_pts": _finite_mean(g["regret_pts"]),
            "p_no_choice": float(np.isinf(g["regret_pts"].to_numpy(float)).mean()),
            "p_within_1pt": float(within.mean()), "p_success": float(success.mean()),
            "random_regret_mean_pts": _finite_mean(g["random_regret_pts"]),
            "random_p_within_1pt": float(rand_within.mean()), "savings": _savings(g, within), "p_vs_random": p,
            "target_met": label_free and float(success.mean()) >= TARGET_P_SUCCESS and p < TARGET_P_VALUE,
            "note": notes,
        })
    return pd.DataFrame(rows)


def evaluate_scopes(
    trials: pd.DataFrame, readouts: pd.DataFrame, specs: Sequence[PolicySpec], n_reps: int = 1000,
    seed: int = 0, subsample: Optional[int] = None, val_column: str = "val_accuracy",
    test_column: str = "test_accuracy", tolerance: float = TOLERANCE_POINTS,
) -> pd.DataFrame:
    """:func:`summarise_policies` per scope (each method on its own rows, then pooled), one table."""
    val = _column_map(readouts, val_column)
    test = _column_map(readouts, test_column)
    parts = []
    for scope, frame in scope_frames(trials):
        reps = repetitions(frame["trial"], n_reps, _scope_seed(seed, scope), subsample)
        raw = evaluate_policies(frame, val, test, specs, reps, tolerance)
        if raw.empty:
            continue
        parts.append(summarise_policies(raw, tolerance).assign(scope=scope, configs=len(frame)))
    if not parts:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    return pd.concat(parts, ignore_index=True)[SUMMARY_COLUMNS]


def _scope_seed(seed: int, scope: str) -> list[int]:
    """A seed per scope that does not depend on which other scopes exist."""
    return [int(seed), *scope.encode()]


def _column_map(readouts: pd.DataFrame, column: str) -> dict[int, float]:
    """trial -> readout (completed records only)."""
    ok = readouts
    if "status" in readouts.columns:
        ok = readouts[readouts["status"].astype(str) == "completed"]
    values = pd.to_numeric(ok[column], errors="coerce").astype(float)
    return dict(zip(ok["trial"].astype(int), values, strict=True))


# ----------------------------------------------------------------------------- the target
def best_policy(table: pd.DataFrame) -> Optional[pd.Series]:
    """The best label-free row: by the target (met, then how many of its two criteria hold, then
    P(success)), then P(within 1 pt), fewer readouts, smaller p vs random-b."""
    rows = table[table["label_free"].astype(bool)]
    if rows.empty:
        return None
    criteria = ((rows["p_success"] >= TARGET_P_SUCCESS).astype(int)
                + (rows["p_vs_random"] < TARGET_P_VALUE).astype(int))
    ranked = rows.assign(_met=rows["target_met"].astype(int), _criteria=criteria).sort_values(
        ["_met", "_criteria", "p_success", "p_within_1pt", "readouts_mean", "p_vs_random"],
        ascending=[False, False, False, False, True, True], kind="stable")
    return ranked.iloc[0].drop(["_met", "_criteria"])


def verdict_line(row: pd.Series, prefix: str = "best label-free policy") -> str:
    """``<prefix>: name (scope): P(within 1 pt) = .. with .. readouts (budget ..), p vs random-b = ..: target
    MET | NOT MET``."""
    met = "MET" if bool(row["target_met"]) else "NOT MET"
    return (f"{prefix}: {row['policy']} ({row['scope']}): P(within 1 pt) = {row['p_within_1pt']:.2f} with "
            f"{row['readouts_mean']:.1f} readouts (budget ceil(log2 N)+2 = {int(row['budget'])}), "
            f"p vs random-b = {row['p_vs_random']:.3f}: target {met}")

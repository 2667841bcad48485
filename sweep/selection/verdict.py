"""The verdict on a table: every policy on bootstrap sweeps, readout savings against exact random reading.

Shared by ``benchmarks/selection.py --table`` and the report. Definitions in :mod:`sweep.selection.savings`;
here the repetitions are run and summarised:
- per (scope, policy): mean / max readouts, mean regret (points), P(within tol), P(success) (within tol with
  at most ceil(log2 N) + 2 readouts), random reading's P(within tol) at the policy's mean readouts, readout
  savings by P(within tol) and by mean regret with 95% intervals, p vs random-b (exact: P(b random readouts do
  at least as well), ties against the policy; its floor is about b / N for a policy that finds the best
  config), and, for the guided reader, how often the 80% intervals of the configs it did not read covered
  their readouts (``interval_coverage``);
- the target, per table: every scope with N >= 24 has savings >= 3x with the interval's lower bound above 1,
  and P(within tol) averaged over the scopes is >= 0.9 with mean readouts <= ceil(log2 N) + 2.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from sweep.selection.evaluate import (
    PolicySpec,
    _column_map,
    _policy_frame,
    _scope_seed,
    applicable,
    scope_frames,
    sweep_budget,
)
from sweep.selection.policies import SelectionResult, usable_trials
from sweep.selection.savings import (
    TOLERANCE_POINTS,
    RandomCurves,
    choice_probabilities,
    random_curves,
    savings_statistics,
    stack_curves,
)

TARGET_SAVINGS = 3.0
TARGET_P_WITHIN = 0.9
MIN_SCOPE_N = 24
VERDICT_COLUMNS = [
    "scope", "configs", "policy", "label_free", "reps", "n", "budget", "readouts_mean", "readouts_max",
    "regret_mean_pts", "p_within_1pt", "p_success", "random_p_within_at_b", "savings", "savings_low",
    "savings_high", "savings_regret", "savings_regret_low", "savings_regret_high", "p_vs_random",
    "interval_coverage", "scope_target_met", "note",
]


@dataclass(frozen=True)
class BootstrapSweep:
    """One repetition: the drawn configs relabelled 0..N-1, their readouts, a visiting order."""

    trials: pd.DataFrame
    val: dict[int, float]
    test: dict[int, float]
    order: list[int]
    source: list[int]  # the table's trial id of each drawn config


def bootstrap_sweep(trials: pd.DataFrame, val: Mapping[int, float], test: Mapping[int, float],
                    rng: np.random.Generator) -> BootstrapSweep:
    """N rows drawn with replacement, relabelled 0..N-1 in draw order, visited in a random order."""
    pick = rng.integers(0, len(trials), len(trials))
    drawn = trials.iloc[pick].reset_index(drop=True)
    source = [int(t) for t in drawn["trial"]]
    drawn = drawn.assign(trial=np.arange(len(drawn)))
    new_val = {i: float(val.get(t, math.nan)) for i, t in enumerate(source)}
    new_test = {i: float(test.get(t, math.nan)) for i, t in enumerate(source)}
    order = [int(t) for t in rng.permutation(len(drawn))]
    return BootstrapSweep(drawn, new_val, new_test, order, source)


def _coverage(result: SelectionResult, val: Mapping[int, float]) -> tuple[int, int]:
    """(covered, total): unread configs with a finite readout whose prediction interval holds it."""
    frame = result.predictions
    if frame is None or frame.empty:
        return 0, 0
    unread = frame[~frame["read"].astype(bool) & np.isfinite(frame["low"].to_numpy(float))]
    actual = np.array([val.get(int(t), math.nan) for t in unread["trial"]])
    ok = np.isfinite(actual)
    inside = (actual >= unread["low"].to_numpy(float)) & (actual <= unread["high"].to_numpy(float))
    return int((inside & ok).sum()), int(ok.sum())


def _exact_p_vs_random(curves_probs: np.ndarray, ranked_regret: np.ndarray, b: int, regret: float) -> float:
    """P(b random readouts choose a config with regret <= the policy's), exact."""
    if b < 1 or not len(ranked_regret):
        return 1.0
    row = curves_probs[min(b, len(curves_probs) - 1), : len(ranked_regret)]
    return float(row @ (ranked_regret <= regret + 1e-9))


def run_bootstrap(trials: pd.DataFrame, val: Mapping[int, float], test: Mapping[int, float],
                  specs: Sequence[PolicySpec], n_reps: int, seed: Sequence[int],
                  tol: float = TOLERANCE_POINTS) -> tuple[pd.DataFrame, dict[int, RandomCurves]]:
    """Raw rows (one per repetition and policy) and the exact random curves of every repetition."""
    rng = np.random.default_rng(list(seed))
    frame = _policy_frame(trials)
    specs = applicable(specs, frame)
    rows: list[dict[str, object]] = []
    curves: dict[int, RandomCurves] = {}
    for rep in range(int(n_reps)):
        sweep = bootstrap_sweep(frame, val, test, rng)
        usable = [int(t) for t in usable_trials(sweep.trials)["trial"]]
        curve = random_curves(usable, sweep.val, sweep.test, tol)
        ranked = sorted((t for t in usable if math.isfinite(sweep.val[t])), key=lambda t: (-sweep.val[t], t))
        if not ranked:
            continue
        curves[rep] = curve
        oracle_test = sweep.test[ranked[0]]
        ranked_regret = np.array([100.0 * (oracle_test - sweep.test[t]) for t in ranked])
        probs = choice_probabilities(len(usable))
        readout = lambda t: sweep.val.get(int(t), math.nan)  # noqa: E731
        for spec in specs:
            res = spec.run(sweep.trials, readout, sweep.order)
            chosen = res.chosen_trial
            regret = 100.0 * (oracle_test - sweep.test[chosen]) if chosen is not None else math.inf
            covered, total = _coverage(res, sweep.val)
            rows.append({"rep": rep, "policy": spec.name, "label_free": spec.label_free, "n": len(usable),
                         "budget": sweep_budget(len(usable)), "readouts": res.readouts_used,
                         "regret_pts": regret, "within": regret <= tol + 1e-9,
                         "p_vs_random": _exact_p_vs_random(probs, ranked_regret, res.readouts_used, regret),
                         "covered": covered, "predicted": total, "note": res.note})
    return pd.DataFrame(rows), curves


def summarise(raw: pd.DataFrame, curves: Mapping[int, RandomCurves], n_boot: int = 1000,
              seed: int = 0) -> pd.DataFrame:
    """One row per policy (module docstring)."""
    out = []
    for name, g in raw.groupby("policy", sort=False):
        reps = g["rep"].to_numpy()
        p_curves = stack_curves([curves[r].p_within for r in reps])
        r_curves = stack_curves([curves[r].regret for r in reps])
        by_p, by_regret = savings_statistics(g["within"].to_numpy(float), g["regret_pts"].to_numpy(float),
                                             g["readouts"].to_numpy(float), p_curves, r_curves, n_boot, seed)
        mean_reads = float(g["readouts"].mean())
        regret = g["regret_pts"].to_numpy(float)
        success = g["within"].astype(bool) & (g["readouts"] <= g["budget"])
        covered, predicted = int(g["covered"].sum()), int(g["predicted"].sum())
        n = int(g["n"].max())
        label_free = bool(g["label_free"].iloc[0])
        met = (label_free and n >= MIN_SCOPE_N and by_p.value >= TARGET_SAVINGS and by_p.low > 1.0)
        out.append({
            "policy": name, "label_free": label_free, "reps": len(g), "n": n, "budget": int(g["budget"].max()),
            "readouts_mean": mean_reads, "readouts_max": int(g["readouts"].max()),
            "regret_mean_pts": float(regret[np.isfinite(regret)].mean()) if np.isfinite(regret).any() else math.nan,
            "p_within_1pt": float(g["within"].mean()), "p_success": float(success.mean()),
            "random_p_within_at_b": _interpolate(p_curves.mean(axis=0), mean_reads),
            "savings": by_p.value, "savings_low": by_p.low, "savings_high": by_p.high,
            "savings_regret": by_regret.value, "savings_regret_low": by_regret.low,
            "savings_regret_high": by_regret.high, "p_vs_random": float(g["p_vs_random"].mean()),
            "interval_coverage": covered / predicted if predicted else math.nan,
            "scope_target_met": met, "note": _first_note(g["note"]),
        })
    return pd.DataFrame(out)


def _interpolate(curve: np.ndarray, b: float) -> float:
    """``curve`` (indexed by b = 0..N) at a fractional b."""
    lo = int(math.floor(min(max(b, 0.0), len(curve) - 1)))
    hi = min(lo + 1, len(curve) - 1)
    return float(curve[lo] + (b - lo) * (curve[hi] - curve[lo]))


def _first_note(notes: pd.Series) -> str:
    given = [str(n) for n in notes if isinstance(n, str) and n]
    if not given:
        return ""
    head = max(set(given), key=given.count)
    return head if len(given) == len(notes) else f"e.g. {head} (a note in {len(given)} of {len(notes)} repetitions)"


def verdict_table(trials: pd.DataFrame, readouts: pd.DataFrame, specs: Sequence[PolicySpec], n_reps: int = 200,
                  seed: int = 0, val_column: str = "val_accuracy", test_column: str = "test_accuracy",
                  tol: float = TOLERANCE_POINTS, n_boot: int = 1000, progress: Optional[object] = None
                  ) -> pd.DataFrame:
    """:func:`summarise` per scope (each method alone, then all methods as one sweep), one table."""
    val, test = _column_map(readouts, val_column), _column_map(readouts, test_column)
    parts = []
    for scope, frame in scope_frames(trials):
        raw, curves = run_bootstrap(frame, val, test, specs, n_reps, _scope_seed(seed, scope), tol)
        if progress is not None:
            progress.update()  # type: ignore[attr-defined]
        if raw.empty:
            continue
        parts.append(summarise(raw, curves, n_boot, seed).assign(scope=scope, configs=len(frame)))
    if not parts:
        return pd.DataFrame(columns=VERDICT_COLUMNS)
    return pd.concat(parts, ignore_index=True)[VERDICT_COLUMNS]


# ----------------------------------------------------------------------------- the target
@dataclass(frozen=True)
class PolicyVerdict:
    policy: str
    met: bool
    worst_scope: str
    savings: float
    low: float
    high: float
    p_within: float
    readouts: float
    budget: float


def policy_verdicts(table: pd.DataFrame) -> list[PolicyVerdict]:
    """Per label-free policy: the table's target (module docstring), best first."""
    method_scopes = table[table["scope"] != "pooled"] if (table["scope"] != "pooled").any() else table
    out = []
    for name, rows in table[table["label_free"].astype(bool)].groupby("policy", sort=False):
        judged = rows[rows["n"] >= MIN_SCOPE_N]
        worst = (judged if len(judged) else rows).sort_values("savings_low", kind="stable").iloc[0]
        mine = method_scopes[method_scopes["policy"] == name]
        p_within, reads, budget = (float(mine[c].mean()) for c in ("p_within_1pt", "readouts_mean", "budget"))
        met = (len(judged) > 0 and bool(judged["scope_target_met"].all()) and p_within >= TARGET_P_WITHIN
               and reads <= budget)
        out.append(PolicyVerdict(str(name), met, str(worst["scope"]), float(worst["savings"]),
                                 float(worst["savings_low"]), float(worst["savings_high"]), p_within, reads, budget))
    return sorted(out, key=lambda v: (not v.met, -_finite(v.low), -_finite(v.savings), -v.p_within, v.readouts))


def _finite(x: float) -> float:
    return x if math.isfinite(x) else -math.inf


def verdict_line(v: PolicyVerdict, tol: float = TOLERANCE_POINTS) -> str:
    """``best policy: <name> savings <x> [lo, hi] P(within 1 pt) <p> at <b> readouts: target MET|NOT MET``."""
    return (f"best policy: {v.policy} savings {v.savings:.2f} [{v.low:.2f}, {v.high:.2f}] "
            f"P(within {tol:g} pt) {v.p_within:.2f} at {v.readouts:.1f} readouts: "
            f"target {'MET' if v.met else 'NOT MET'}")


def verdict_detail(v: PolicyVerdict) -> str:
    """What the last line's numbers are, in one sentence."""
    return (f"({v.policy}: savings shown for its worst scope, {v.worst_scope}; P(within) and readouts are means "
            f"over the method scopes, budget ceil(log2 N) + 2 = {v.budget:.0f}; target: savings >= "
            f"{TARGET_SAVINGS:g}x with lower bound > 1 on every scope with N >= {MIN_SCOPE_N}, P(within) >= "
            f"{TARGET_P_WITHIN:g} at <= the budget)")

"""Readouts used and regret of the label-free selection policies on synthetic sweeps, or on a real table.

    python benchmarks/selection.py [--reps 1000] [--sizes 16 64 256] [--seed 0] [--csv out.csv] [--quick]
    python benchmarks/selection.py --table benchmarks/data/testbed.parquet [--subsample K] [--reps 1000]
        [--boot 1000] [--csv policies.csv] [--query "repeat == 0"] [--method-column method] [...]

Table mode (``--table``; the column flags are those of ``sweep select --table``; default query
``repeat == 0`` when the table has a ``repeat`` column, so seed repeats do not enter the pools): prints
- per method and pooled, the Spearman of every label-free metric column with the test accuracy, with a
  percentile bootstrap 95% interval (``--boot`` resamples of configs, seeded) and n;
- per policy (run_policies' policies, plus ``rankme_topk+2`` and ``alpha_rankme+2`` given the budget
  ceil(log2 N) + 2), run on each method's rows alone and on all together, over ``--reps`` repetitions (random
  visiting orders; with ``--subsample K``, sweeps of K configs drawn without replacement, so deterministic
  policies get a distribution too): mean readouts, mean regret in points against the oracle (best
  validation readout of the repetition's sweep, reported on test), P(within 1 point), and the same for
  random-b (b configs read in an independent random order, chosen by validation, b = the policy's own
  readouts in that repetition); p vs random-b = P(random-b regret <= policy regret) over matched
  repetitions, one-sided, ties against the policy (``sweep.selection.evaluate`` defines it; it cannot fall
  much below b / N when the policy finds the oracle's config);
- one verdict line per scope and, last, ``best label-free policy: <name> (<scope>): ...: target MET|NOT MET``.
  Target: within 1 point of the oracle with <= ceil(log2 N) + 2 readouts in >= 90% of repetitions AND
  p vs random-b < 0.05. Best: target met, then how many of its two criteria hold, P(success), then
  P(within 1 pt), then fewer readouts. With several methods, one verdict per method and one pooled.
Synthetic mode (no ``--table``), as before:

Generator (seeded; one fresh sweep and one random visiting order per repetition). Reviewed for plausibility
and deliberately NOT tuned to any policy: every constant below was set before the combined policy existed.
- ``--methods 2`` (default): each config belongs to one of two methods with probability 1/2;
  ``--methods 1``: a single-method sweep. 5% of configs fail (state FAIL, NaN metrics);
- alpha = exp(U(ln 0.4, ln 3.0)): the range of decay coefficients reported for SSL features;
- RankMe: flatter spectra (smaller alpha) have higher effective rank: frac = sigmoid(-2 (alpha - 1) + e),
  e ~ N(0, 0.5) (RankMe is not a function of alpha alone: it is measured on the projector, alpha on the
  backbone); rankme = 512 * frac * s_m with a per-method scale s = (1.0, 0.6) (different projectors:
  RankMe is only comparable within a method; every policy here ranks RankMe within a method);
- accuracy = b_m + 0.10 * frac - 0.08 * ln(alpha)^2 + r, b = (0.70, 0.67): it peaks near alpha = 1
  (in 0.7-0.9, where the authors' plotting scripts also mark 0.8-0.85: the RankMe term favours flatter
  spectra; too flat, alpha ~ 0.4, loses ~7 points) and rises with RankMe within a method;
  r ~ N(0, residual), residual = 0.01 (``--residual-noise``), is what the metrics do not see about a config
  (shared by val and test); the readouts add split noise N(0, readout) each, readout = 0.005
  (``--readout-noise``; the sampling std of an accuracy near 0.8 on a 5-10k split is 0.4-0.6 pt).
Policies: everything in ``run_policies`` (defaults of SelectionConfig), plus two rows that are not
policies of the package: ``alpha_rankme+2`` (the combined policy given the whole budget the target allows,
ceil(log2 N) + 2) and ``noise_free_top`` (reads the top ceil(log2 N) by the generator's noise-free accuracy,
which no label-free policy can know: the ceiling that the unseen noise r leaves to any metric ranking).
Regret (points) and the ratio are NaN when a policy chooses nothing (an empty alpha band); such a
repetition counts as a failure (p_no_choice). Policies choose by val; success is judged on test:
chosen test >= 99% of the oracle's test accuracy, with at most ceil(log2 N) + 2 readouts.
Target (N = 64): the best label-free policy succeeds in >= 95% of repetitions. ``target_met`` says so per
row (p_success >= 0.95), the last line for the best label-free policy at N = 64.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
import pandas as pd

from sweep.selection import evaluate
from sweep.selection.policies import (
    CountingReadout,
    SelectionResult,
    alpha_rankme,
    rankme_budget,
    run_policies,
    usable_trials,
)

D = 512
RANKME_SCALE = (1.0, 0.6)
BASE_ACC = (0.70, 0.67)
METHODS = ("method_a", "method_b")
NOT_LABEL_FREE = ("oracle", "noise_free_top")  # reference rows, never the "best policy" of the target
QUICK_ARGS = ["--reps", "25", "--sizes", "16", "64"]


def synthetic_sweep(
    n: int, rng: np.random.Generator, n_methods: int = 2, residual: float = 0.01, readout: float = 0.005
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(trials table, val accuracy, test accuracy) for n configs; see the module docstring."""
    if n_methods not in (1, 2):
        raise ValueError(f"n_methods must be 1 or 2, got {n_methods!r}")
    method = rng.integers(0, n_methods, n)
    alpha = np.exp(rng.uniform(np.log(0.4), np.log(3.0), n))
    frac = 1.0 / (1.0 + np.exp(2.0 * (alpha - 1.0) - rng.normal(0.0, 0.5, n)))
    rankme = D * frac * np.take(RANKME_SCALE, method)
    true = np.take(BASE_ACC, method) + 0.10 * frac - 0.08 * np.log(alpha) ** 2 + rng.normal(0, residual, n)
    val, test = true + rng.normal(0, readout, n), true + rng.normal(0, readout, n)
    failed = rng.random(n) < 0.05
    trials = pd.DataFrame(
        {
            "trial": np.arange(n),
            "state": np.where(failed, "FAIL", "COMPLETE"),
            "method": np.take(METHODS, method),
            "alpha": np.where(failed, np.nan, alpha),
            "rankme": np.where(failed, np.nan, rankme),
        }
    )
    val[failed] = test[failed] = np.nan
    return trials, val, test


def noise_free_accuracy(trials: pd.DataFrame) -> np.ndarray:
    """The generator's accuracy without r and split noise, recovered from alpha, RankMe and method."""
    m = np.searchsorted(METHODS, trials["method"].to_numpy())
    frac = trials["rankme"].to_numpy(float) / (D * np.take(RANKME_SCALE, m))
    return np.take(BASE_ACC, m) + 0.10 * frac - 0.08 * np.log(trials["alpha"].to_numpy(float)) ** 2


def noise_free_top(trials: pd.DataFrame, val: np.ndarray, budget: int) -> SelectionResult:
    """Read the ``budget`` usable configs of highest noise-free accuracy; choose by val."""
    good = usable_trials(trials, ["alpha", "rankme"])
    best_first = good["trial"].to_numpy()[np.argsort(-noise_free_accuracy(good), kind="stable")]
    counter = CountingReadout(lambda t: float(val[t]))
    for trial in best_first[:budget]:
        counter(int(trial))
    return counter.result("noise_free_top")


def all_policies(trials: pd.DataFrame, val: np.ndarray, order: list[int]) -> list[SelectionResult]:
    """The package's policies plus the two reference rows of the module docstring."""
    readout = lambda t: float(val[t])  # noqa: E731
    results: list[SelectionResult] = run_policies(trials, readout, order)
    budget = rankme_budget(len(usable_trials(trials, ["alpha", "rankme"])))
    full = alpha_rankme(trials, readout, budget=max(1, budget) + 2)
    results.insert(-1, dataclasses.replace(full, policy="alpha_rankme+2"))
    results.append(noise_free_top(trials, val, budget))
    return results


def one_repetition(
    n: int, rng: np.random.Generator, n_methods: int = 2, residual: float = 0.01, readout: float = 0.005
) -> list[dict[str, Any]]:
    trials, val, test = synthetic_sweep(n, rng, n_methods, residual, readout)
    order = [int(t) for t in rng.permutation(n)]
    results = all_policies(trials, val, order)
    oracle_test = test[next(r for r in results if r.policy == "oracle").chosen_trial]
    rows = []
    for res in results:
        acc = test[res.chosen_trial] if res.chosen_trial is not None else np.nan  # nothing chosen: a failure
        rows.append(
            {
                "n": n,
                "policy": res.policy,
                "readouts": res.readouts_used,
                "chose": res.chosen_trial is not None,
                "regret_points": 100.0 * (oracle_test - acc),
                "ratio": acc / oracle_test,
            }
        )
    return rows


def summarise(raw: pd.DataFrame) -> pd.DataFrame:
    """Per (N, policy): readouts used, regret, and the share of repetitions meeting each criterion."""
    raw = raw.assign(budget=np.ceil(np.log2(raw["n"])) + 2)
    raw = raw.assign(ok99=raw["ratio"] >= 0.99, within_budget=raw["readouts"] <= raw["budget"])
    raw = raw.assign(success=raw["ok99"] & raw["within_budget"], within_1pt=raw["regret_points"] <= 1.0)
    return (
        raw.groupby(["n", "policy"], sort=False)
        .agg(
            budget=("budget", "first"),
            readouts_mean=("readouts", "mean"),
            readouts_max=("readouts", "max"),
            p_no_choice=("chose", lambda c: 1.0 - c.mean()),
            regret_mean_pts=("regret_points", "mean"),
            regret_p95_pts=("regret_points", lambda r: np.nanpercentile(r, 95)),
            p_within_1pt=("within_1pt", "mean"),
            p_ge99_oracle=("ok99", "mean"),
            p_success=("success", "mean"),
        )
        .reset_index()
        .assign(target_met=lambda t: t["p_success"] >= 0.95)
    )


def target_met(table: pd.DataFrame, n: int = 64) -> tuple[bool, str]:
    """Whether the best label-free policy at N = n succeeds in >= 95% of repetitions, and its name."""
    rows = table[(table["n"] == n) & ~table["policy"].isin(NOT_LABEL_FREE)]
    best = rows.sort_values(["p_success", "readouts_mean"], ascending=[False, True], kind="stable").iloc[0]
    return bool(best["p_success"] >= 0.95), str(best["policy"])


def verdict(table: pd.DataFrame, n: int = 64) -> str:
    """One plain sentence on the target, with the numbers behind it."""
    met, name = target_met(table, n)
    row = table[(table["n"] == n) & (table["policy"] == name)].iloc[0]
    ceiling = table[(table["n"] == n) & (table["policy"] == "noise_free_top")]
    budget = int(row["budget"])
    text = (
        f"target at N={n} (<= ceil(log2 N)+2 = {budget} readouts and >= 99% of oracle in >= 95% of "
        f"repetitions): {'MET' if met else 'NOT MET'}; best label-free policy {name}: "
        f"P(success) = {row['p_success']:.3f} with {row['readouts_mean']:.1f} readouts on average"
    )
    if len(ceiling):
        text += f"; noise-free ranking (not label-free) reaches {ceiling['p_success'].iloc[0]:.3f}"
    return text + "."


# ----------------------------------------------------------------------------- table mode
TABLE_LEGEND = (
    "legend: regret in points vs the oracle (best val readout of the sweep, reported on test); p_within_1pt "
    "and p_success (within 1 pt AND <= budget readouts) over repetitions; random_*: b configs read in a "
    "random order, chosen by val, b = the policy's readouts in that repetition; p_vs_random = P(random-b "
    "regret <= policy regret) over matched repetitions (one-sided; ties count against the policy; about b/N at best). "
    "target: p_success >= 0.9 and p_vs_random < 0.05."
)
POLICY_COLUMNS = ["scope", "policy", "n", "budget", "readouts_mean", "readouts_max", "regret_mean_pts",
                  "p_within_1pt", "p_success", "random_regret_mean_pts", "random_p_within_1pt", "p_vs_random",
                  "target_met"]


def table_metrics(trials: pd.DataFrame, chosen: Optional[Sequence[str]]) -> list[str]:
    """The metric columns to correlate: ``chosen`` (each must exist) or every label-free numeric column,
    plus |alpha - 1| when alpha is present."""
    if chosen:
        missing = [m for m in chosen if m not in trials.columns and m != "abs_alpha_minus_1"]
        if missing:
            raise SystemExit(f"--metrics {missing} not in the table; "
                             f"columns present: {sorted(trials.columns)}")
        return list(chosen)
    metrics = evaluate.label_free_metrics(trials)
    if "alpha" in metrics:
        metrics.insert(metrics.index("alpha") + 1, "abs_alpha_minus_1")
    return metrics


def spearman_wide(table: pd.DataFrame) -> pd.DataFrame:
    """metric x scope cells ``rho [low, high] n=..`` for printing."""
    def cell(row: pd.Series) -> str:
        if not np.isfinite(row["spearman"]):
            return f"- n={row['n']}"
        return f"{row['spearman']:+.2f} [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}] n={row['n']}"

    cells = table.assign(cell=table.apply(cell, axis=1))
    wide = cells.pivot(index="metric", columns="scope", values="cell")
    scopes = list(dict.fromkeys(table["scope"]))
    return wide.loc[list(dict.fromkeys(table["metric"])), scopes]


def scope_verdicts(table: pd.DataFrame) -> tuple[list[str], Optional[pd.Series]]:
    """One verdict line per scope and the best row over all scopes (same ordering as within a scope)."""
    lines, bests = [], []
    for scope, rows in table.groupby("scope", sort=False):
        best = evaluate.best_policy(rows)
        if best is not None:
            bests.append(best)
            lines.append(evaluate.verdict_line(best, prefix=f"scope {scope} (N = {int(best['n'])}): best"))
    overall = evaluate.best_policy(pd.DataFrame(bests)) if bests else None
    return lines, overall


def table_main(args: argparse.Namespace) -> pd.DataFrame:
    """The --table mode: correlations with intervals, policies vs random-b per scope, verdicts."""
    from sweep.selection.table import TableError, describe, load_for_command, table_columns

    try:
        loaded, query = load_for_command(args.table, table_columns(args), args.query)
    except TableError as exc:
        raise SystemExit(f"benchmarks/selection.py: {exc}") from exc
    start = time.perf_counter()
    trials, readouts = loaded
    print(describe(loaded, args.table, query))
    merged = trials.merge(readouts[["trial", "val_accuracy", "test_accuracy"]], on="trial")
    metrics = table_metrics(trials, args.metrics)
    spearman = evaluate.spearman_table(merged, metrics, "test_accuracy", args.boot, args.seed)
    specs = evaluate.policy_specs()
    policies = evaluate.evaluate_scopes(trials, readouts, specs, args.reps, args.seed, args.subsample)
    mode = f"sweeps of {args.subsample} configs" if args.subsample else "visiting orders"
    display = ("display.width", 250, "display.max_columns", 30, "display.float_format", "{:.3f}".format,
               "display.max_colwidth", 40)
    with pd.option_context(*display):
        print(f"\nSpearman with test accuracy, bootstrap 95% interval ({args.boot} resamples of configs, "
              f"seed {args.seed}):\n{spearman_wide(spearman).to_string()}")
        print(f"\npolicies per scope over {args.reps} {mode} (seed {args.seed}):\n"
              f"{policies[POLICY_COLUMNS].to_string(index=False)}")
    print(TABLE_LEGEND)
    for note in sorted({n for n in policies["note"] if n}):
        print(f"note: {note}")
    if args.csv:
        policies.to_csv(args.csv, index=False)
        print(f"per-policy table: {args.csv}")
    print(f"{time.perf_counter() - start:.0f} s; next: sweep select --table {args.table} (HTML report)"
          + ("" if args.subsample else "; or add --subsample K for a distribution over smaller sweeps"))
    lines, best = scope_verdicts(policies)
    print("\n".join(lines))
    if best is not None:
        print(evaluate.verdict_line(best))
    return policies


def main(argv: Optional[Sequence[str]] = None) -> pd.DataFrame:
    from sweep.selection.table import add_table_arguments

    parser = argparse.ArgumentParser(
        description="label-free selection benchmark on synthetic sweeps or on a metrics table")
    parser.add_argument("--reps", type=int, default=1000,
                        help="repetitions per N (synthetic) or visiting orders / subsampled sweeps (--table)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", type=int, default=2, choices=(1, 2), help="methods per synthetic sweep")
    parser.add_argument("--residual-noise", type=float, default=0.01, help="config accuracy the metrics miss")
    parser.add_argument("--readout-noise", type=float, default=0.005, help="per-split probe sampling noise")
    parser.add_argument("--csv", default=None)
    parser.add_argument("--quick", action="store_true", help="a few seconds: " + " ".join(QUICK_ARGS))
    table = parser.add_argument_group("table mode: policies on a metrics table instead of synthetic sweeps")
    table.add_argument("--table", default=None,
                       help="CSV or parquet, one row per trial (see sweep select --table)")
    add_table_arguments(table)
    table.add_argument("--subsample", type=int, default=None,
                       help="each repetition is a sweep of K configs drawn without replacement (per scope)")
    table.add_argument("--boot", type=int, default=1000,
                       help="bootstrap resamples for the Spearman intervals")
    table.add_argument("--metrics", nargs="+", default=None,
                       help="metric columns to correlate (default: every label-free numeric column)")
    args = parser.parse_args(argv)
    if args.table is not None:
        if args.reps < 1 or args.boot < 1 or (args.subsample is not None and args.subsample < 1):
            parser.error("--reps, --boot and --subsample must be integers >= 1")
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        return table_main(args)
    if args.quick:
        args.reps, args.sizes = int(QUICK_ARGS[1]), [int(v) for v in QUICK_ARGS[3:]]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    start = time.perf_counter()
    rows = []
    for n in args.sizes:
        rng = np.random.default_rng([args.seed, n, args.methods])
        for _ in range(args.reps):
            rows.extend(one_repetition(n, rng, args.methods, args.residual_noise, args.readout_noise))
    table = summarise(pd.DataFrame(rows))
    with pd.option_context(
        "display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3f}".format
    ):
        print(table.to_string(index=False))
    print(
        f"\n{verdict(table)}\n{args.methods} method(s), noise residual {args.residual_noise} readout "
        f"{args.readout_noise}, {args.reps} repetitions per N, {time.perf_counter() - start:.0f} s"
    )
    if args.csv:
        table.to_csv(args.csv, index=False)
    return table


if __name__ == "__main__":
    main(sys.argv[1:])

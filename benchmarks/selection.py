"""Readouts used and regret of the label-free selection policies on synthetic sweeps, or on a real table.

    python benchmarks/selection.py [--reps 1000] [--sizes 16 64 256] [--seed 0] [--csv out.csv] [--quick]
    python benchmarks/selection.py --table benchmarks/data/testbed.parquet [--reps 200] [--boot 1000]
        [--csv policies.csv] [--query "repeat == 0"] [--method-column method] [--task-column dataset]
        [--val-images 698 --test-images 1000] [...]

Table mode (``--table``; the column flags are those of ``sweep select --table``; default query
``repeat == 0`` when the table has a ``repeat`` column, so seed repeats do not enter the pools); with
``--task-column`` everything below runs within each task (one sweep per dataset), never across tasks. Prints
- per method and all methods together (scopes), the Spearman of every label-free metric column with the test
  accuracy, with a percentile bootstrap 95% interval (``--boot`` resamples of configs, seeded) and n;
- the readout's own noise: the oracle's binomial standard error (with ``--val-images`` / ``--test-images``),
  how many configs tie at the best validation readout and how often a tie decides the oracle;
- every policy (the registered ones, the ``+2`` variants given ceil(log2 N) + 2 readouts, the guided reader
  with its metric switch flipped; ``ridge_reader`` is the plain sequential baseline) over ``--reps`` bootstrap
  sweeps per scope (``sweep.selection.verdict``): readouts, regret, P(within 1 pt), random reading's exact
  P(within 1 pt) at as many readouts, readout savings with 95% intervals (``sweep.selection.savings``), p vs
  random-b (exact; secondary, floor about b / N) and the guided reader's interval coverage at its stop;
- leave-one-out coverage of the guided reader's 80% intervals; whether the metrics helped the guided reader;
- last, ``best policy: <name> savings <x> [lo, hi] P(within 1 pt) <p> at <b> readouts: target MET|NOT MET``
  (savings of its worst scope; P and readouts averaged over the method scopes). Target: savings >= 3 with the
  lower bound > 1 on every scope with N >= 24, and P(within 1 pt) >= 0.9 at <= ceil(log2 N) + 2 mean readouts.
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
import math
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
import pandas as pd

from sweep.selection import evaluate
from sweep.selection.surrogate import label_free_metrics
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
VERDICT_SHOWN = ["scope", "policy", "n", "readouts_mean", "regret_mean_pts", "p_within_1pt", "random_p_within_at_b",
                 "savings", "savings_low", "savings_high", "savings_regret", "p_vs_random", "interval_coverage"]
TABLE_LEGEND = (
    "legend: each repetition is a bootstrap sweep (N configs drawn with replacement from the scope, random "
    "visiting order); regret in points vs its oracle (best val readout, reported on test); p_within_1pt over "
    "repetitions; random_p_within_at_b: exact P(within 1 pt) of reading as many configs at random; savings = "
    "random readouts needed to be within 1 pt as often / the policy's mean readouts (savings_regret: the same for "
    "mean regret), 95% percentile bootstrap over repetitions in [low, high]; p_vs_random = exact P(random-b does "
    "at least as well), secondary: its floor is about b / N even for a perfect policy; interval_coverage: share "
    "of the unread configs whose readout fell inside the guided reader's 80% interval at its stop. Target: "
    "savings >= 3 with low > 1 on every scope with N >= 24, and P(within 1 pt) >= 0.9 (mean over method scopes) "
    "at <= ceil(log2 N) + 2 mean readouts."
)


def table_metrics(trials: pd.DataFrame, chosen: Optional[Sequence[str]]) -> list[str]:
    """The metric columns to correlate: ``chosen`` (each must exist) or every label-free numeric column,
    plus |alpha - 1| when alpha is present."""
    if chosen:
        missing = [m for m in chosen if m not in trials.columns and m != "abs_alpha_minus_1"]
        if missing:
            raise SystemExit(f"--metrics {missing} not in the table; "
                             f"columns present: {sorted(trials.columns)}")
        return list(chosen)
    metrics = label_free_metrics(trials)
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


def noise_lines(trials: pd.DataFrame, readouts: pd.DataFrame, val_images: Optional[int],
                test_images: Optional[int], seed: int) -> list[str]:
    """Per scope: the oracle's readouts, their binomial standard errors, and ties at the top of validation."""
    from sweep.selection.savings import binomial_se_points, top_ties

    val, test = evaluate._column_map(readouts, "val_accuracy"), evaluate._column_map(readouts, "test_accuracy")
    lines = []
    for scope, frame in evaluate.scope_frames(trials):
        ids = [int(t) for t in usable_trials(frame)["trial"]]
        best = evaluate.oracle_choice(ids, val)
        if best is None:
            continue
        se_val = binomial_se_points(val[best], val_images or 0)
        se_test = binomial_se_points(test.get(best, math.nan), test_images or 0)
        ties = top_ties(ids, val, test, se_val, seed=seed)
        noise = (f"binomial SE {se_val:.1f} pt on {val_images} val images, {se_test:.1f} pt on {test_images} test "
                 f"images; {ties.near} configs lie within one val SE of the best" if val_images and test_images
                 else "binomial SE unknown (give --val-images / --test-images)")
        lines.append(f"  {scope} (N = {len(ids)}): oracle trial {best}: val {100 * val[best]:.1f}%, test "
                     f"{100 * test.get(best, math.nan):.1f}%; {noise}; {ties.tied} config(s) share the best val "
                     f"readout (test spread {ties.test_spread_pts:.1f} pt); a tie decides the oracle in "
                     f"{100 * ties.p_tie_decides:.0f}% of bootstrap sweeps")
    return lines


def coverage_lines(trials: pd.DataFrame, readouts: pd.DataFrame) -> list[str]:
    """Leave-one-out coverage of the guided reader's 80% intervals, per scope, with and without metrics."""
    from sweep.selection.guided import GuidedSettings, loo_coverage

    val = evaluate._column_map(readouts, "val_accuracy")
    lines = []
    scopes = evaluate.scope_frames(trials)
    if len(scopes) > 1:  # each method alone; the all-methods sweep would refit N times on 3N points
        scopes = [(scope, frame) for scope, frame in scopes if scope != evaluate.POOLED]
    for scope, frame in scopes:
        cells = []
        for metrics in (True, False):
            covered, total = loo_coverage(frame, val, GuidedSettings(metrics=metrics))
            label = "hyperparameters + metrics" if metrics else "hyperparameters only"
            cells.append(f"{label} {covered}/{total} = {covered / max(total, 1):.2f}")
        lines.append(f"  {scope}: " + "; ".join(cells))
    return lines


def metrics_effect_lines(table: pd.DataFrame) -> list[str]:
    """Per scope: did the label-free metrics improve the guided reader over its hyperparameters-only form?"""
    lines = []
    for scope, rows in table.groupby("scope", sort=False):
        by = rows.set_index("policy")
        if not {"guided", "guided-metrics"} <= set(by.index) and not {"guided", "guided+metrics"} <= set(by.index):
            continue
        with_m, without = ((by.loc["guided"], by.loc["guided-metrics"]) if "guided-metrics" in by.index
                           else (by.loc["guided+metrics"], by.loc["guided"]))
        better = (with_m["p_within_1pt"] > without["p_within_1pt"] + 0.05
                  or with_m["savings_low"] > without["savings_high"])
        worse = (with_m["p_within_1pt"] < without["p_within_1pt"] - 0.05
                 or with_m["savings_high"] < without["savings_low"])
        word = "improved" if better and not worse else "worsened" if worse and not better else "did not change"
        lines.append(f"  {scope}: metrics {word} the guided reader: P(within 1 pt) {with_m['p_within_1pt']:.2f} "
                     f"vs {without['p_within_1pt']:.2f}, savings {with_m['savings']:.2f} vs {without['savings']:.2f}, "
                     f"readouts {with_m['readouts_mean']:.1f} vs {without['readouts_mean']:.1f}")
    return lines


def _task_frames(loaded: Any) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """(task, trials, readouts) per task (``sweep.selection.tasks``); one unnamed task without a task column."""
    from sweep.selection.tasks import task_frames

    trials, readouts = loaded
    return task_frames(trials, readouts) if "task" in trials.columns else [("", trials, readouts)]


def table_main(args: argparse.Namespace) -> pd.DataFrame:
    """The --table mode: correlations with intervals, readout noise and ties, every policy on bootstrap sweeps
    with readout savings, interval coverage, and the verdict (last line). With a task column, all of it runs
    within each task (never across tasks)."""
    from sweep.progress_bar import progress
    from sweep.selection.table import TableError, describe, load_for_command, table_columns
    from sweep.selection.verdict import policy_verdicts, verdict_detail, verdict_line, verdict_table

    try:
        loaded, query = load_for_command(args.table, table_columns(args), args.query)
    except TableError as exc:
        raise SystemExit(f"benchmarks/selection.py: {exc}") from exc
    start = time.perf_counter()
    print(describe(loaded, args.table, query))
    parts = []
    tasks = _task_frames(loaded)
    bar = progress(total=sum(len(evaluate.scope_frames(t)) for _, t, _ in tasks), desc="scopes", unit="scope")
    for task, trials, readouts in tasks:
        head = f"\n=== task {task} ===" if task else ""
        if head:
            print(head)
        merged = trials.merge(readouts[["trial", "val_accuracy", "test_accuracy"]], on="trial")
        spearman = evaluate.spearman_table(merged, table_metrics(trials, args.metrics), "test_accuracy", args.boot,
                                           args.seed)
        with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_colwidth", 40):
            print(f"\nSpearman with test accuracy, bootstrap 95% interval ({args.boot} resamples of configs, "
                  f"seed {args.seed}):\n{spearman_wide(spearman).to_string()}")
        print("\nreadout noise and ties at the top of validation:")
        print("\n".join(noise_lines(trials, readouts, args.val_images, args.test_images, args.seed)))
        table = verdict_table(trials, readouts, evaluate.policy_specs(), args.reps, args.seed, n_boot=args.boot,
                              progress=bar)
        table = table.assign(scope=[f"{task}/{s}" if task else s for s in table["scope"]])
        parts.append(table)
        with pd.option_context("display.width", 250, "display.max_columns", 30, "display.float_format",
                               "{:.2f}".format):
            print(f"\npolicies per scope over {args.reps} bootstrap sweeps (seed {args.seed}):\n"
                  f"{table[VERDICT_SHOWN].to_string(index=False)}")
        print("\nleave-one-out coverage of the guided reader's 80% intervals (nominal 0.80; each method's "
              "configs, every readout but one):")
        print("\n".join(coverage_lines(trials, readouts)))
        print("\ndo the label-free metrics help the guided reader?")
        print("\n".join(metrics_effect_lines(table)))
    bar.close()
    policies = pd.concat(parts, ignore_index=True)
    print(TABLE_LEGEND)
    for note in sorted({n for n in policies["note"] if n}):
        print(f"note: {note}")
    if args.csv:
        policies.to_csv(args.csv, index=False)
        print(f"per-policy table: {args.csv}")
    print(f"{time.perf_counter() - start:.0f} s; next: sweep select --table {args.table} (HTML report)")
    verdicts = policy_verdicts(policies)
    for v in verdicts[1:]:
        print("runner-up " + verdict_line(v).removeprefix("best policy: "))
    if verdicts:
        print(verdict_detail(verdicts[0]))
        print(verdict_line(verdicts[0]))
    return policies


def main(argv: Optional[Sequence[str]] = None) -> pd.DataFrame:
    from sweep.selection.table import add_table_arguments

    parser = argparse.ArgumentParser(
        description="label-free selection benchmark on synthetic sweeps or on a metrics table")
    parser.add_argument("--reps", type=int, default=None,
                        help="repetitions per N (synthetic, default 1000) or bootstrap sweeps per scope (--table, "
                             "default 200)")
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
    table.add_argument("--boot", type=int, default=1000,
                       help="bootstrap resamples for the Spearman and savings intervals")
    table.add_argument("--val-images", type=int, default=None,
                       help="images in the validation split (for the readout's binomial standard error)")
    table.add_argument("--test-images", type=int, default=None, help="images in the test split")
    table.add_argument("--metrics", nargs="+", default=None,
                       help="metric columns to correlate (default: every label-free numeric column)")
    args = parser.parse_args(argv)
    if args.table is not None:
        args.reps = 200 if args.reps is None else args.reps
        if args.reps < 1 or args.boot < 1:
            parser.error("--reps and --boot must be integers >= 1")
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        return table_main(args)
    args.reps = 1000 if args.reps is None else args.reps
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

"""What label-free pruning would have saved on a finished testbed, and what it would have cost in selection.

    python benchmarks/pruning.py [--table benchmarks/data/testbed.parquet]
        [--curves benchmarks/data/testbed_curves.parquet] [--objective rankme_normalized | --objective alpha
        --target 1.0 | --objective <metric> --direction minimize] [--pruners median successive_halving none]
        [--orders 100] [--seed 0] [--policy alpha_rankme] [--csv out.csv] [--quick]

Replays each Optuna pruner on the STORED per-epoch curves (``sweep.selection.replay``; nothing is trained): per method
(each method is its own study, RankMe being comparable only within a method) and over >= 100 seeded random visiting
orders, an in-memory study asks each trial, reports the objective at every stored epoch, stops when
``should_prune()`` says so. Printed per pruner x method (``all`` = methods summed: epochs added, selection on the
union of the survivors) x selection rule: share of trial-epochs saved, trials pruned, readouts, mean regret and
P(within 1 point) with pruning (selection on the survivors) and without (selection on all trials). Regret (points) =
100 * (test accuracy of the trial with the best val accuracy among ALL trials - test accuracy of the chosen trial).

Target, judged per pruner on the ``all`` row with ``--policy`` (default alpha_rankme, fixed before any data was
seen): pruning saves >= 40% of trial-epochs at EQUAL QUALITY, defined as a mean regret over the orders at most
0.25 points above the regret of the same policy on all trials (no pruning). Nothing here is tuned to pass it: the
pruner settings are Optuna's defaults unless given on the command line.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from sweep.study.objectives import ObjectiveError, parse_objectives
from sweep.selection.replay import (
    ALL_METHODS,
    SELECTION_RULES,
    ReplayError,
    ReplaySetup,
    SelectionColumns,
    method_groups,
    replay_all,
    summarise,
    verdict,
)
from sweep.study.samplers import SamplerConfigError, make_pruner

DATA = Path(__file__).parent / "data"
PRUNERS = ("median", "successive_halving", "none")
QUICK_ORDERS = 10
SHOWN = ["pruner", "method", "rule", "trials", "saved", "pruned_mean", "readouts_mean", "readouts_unpruned",
         "regret_mean_pts", "regret_unpruned_pts", "p_within_1pt", "p_within_1pt_unpruned"]


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="replay Optuna pruners on stored label-free curves")
    p.add_argument("--table", type=Path, default=DATA / "testbed.parquet", help="one row per trial (final readouts)")
    p.add_argument("--curves", type=Path, default=DATA / "testbed_curves.parquet", help="one row per (trial, epoch)")
    p.add_argument("--objective", default="rankme_normalized", help="metric column the pruner sees")
    p.add_argument("--target", type=float, default=None, help="minimise |objective - target| (alpha: 1.0)")
    p.add_argument("--direction", choices=("maximize", "minimize"), default=None, help="default: maximize")
    p.add_argument("--pruners", nargs="+", default=list(PRUNERS), choices=PRUNERS)
    p.add_argument("--n-startup-trials", type=int, default=5, help="median: completed trials before pruning")
    p.add_argument("--n-warmup-steps", type=int, default=0, help="median: epochs before pruning")
    p.add_argument("--min-resource", default="auto", help="successive_halving: epochs of the first rung")
    p.add_argument("--reduction-factor", type=int, default=4, help="successive_halving")
    p.add_argument("--orders", type=int, default=100, help="random visiting orders per pruner (>= 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pooled", action="store_true",
                   help="one study over every method (a sweep with method in its space) instead of one per method")
    p.add_argument("--repeat", type=int, default=0, help="table rows with this repeat (-1: every row)")
    p.add_argument("--rules", nargs="+", default=list(SELECTION_RULES), choices=SELECTION_RULES)
    p.add_argument("--policy", default="alpha_rankme", choices=SELECTION_RULES, help="rule the target is judged on")
    p.add_argument("--rankme-column", default="rankme_normalized", help="RankMe column of the selection policies")
    p.add_argument("--csv", type=Path, default=None, help="write the summary table here")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_ORDERS} orders: a smoke run, not the measurement")
    args = p.parse_args(argv)
    if args.quick:
        args.orders = QUICK_ORDERS
    if args.policy not in args.rules:
        p.error(f"--policy {args.policy} must be one of --rules {args.rules}")
    return args


def pruner_options(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Constructor options of a pruner from the flags (the same names as hydra.sweeper.pruner.options)."""
    if name == "median":
        return {"n_startup_trials": args.n_startup_trials, "n_warmup_steps": args.n_warmup_steps}
    if name == "successive_halving":
        if args.min_resource != "auto" and not args.min_resource.isdigit():
            raise ReplayError(f"--min-resource {args.min_resource!r}: allowed values are 'auto' or an integer >= 1")
        resource = args.min_resource if args.min_resource == "auto" else int(args.min_resource)
        return {"min_resource": resource, "reduction_factor": args.reduction_factor}
    return {}


def load(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The table (``repeat`` rows only, when the column exists) and the curves; a missing file says what writes it."""
    for flag, path in (("--table", args.table), ("--curves", args.curves)):
        if not path.is_file():
            raise ReplayError(f"{flag} {path}: no such file (the testbed export writes benchmarks/data/*.parquet)")
    table, curves = pd.read_parquet(args.table), pd.read_parquet(args.curves)
    if args.repeat >= 0 and "repeat" in table.columns:
        table = table[table["repeat"] == args.repeat]
    return table.reset_index(drop=True), curves


def make_setup(args: argparse.Namespace) -> ReplaySetup:
    spec = {"metric": args.objective, "direction": args.direction, "target": args.target}
    objective = parse_objectives([spec])[0]
    pruners = {}
    for name in args.pruners:
        options = pruner_options(name, args)
        try:
            make_pruner(name, options)  # bad options fail here, before any replay
        except ValueError as err:  # Optuna's own range checks (e.g. reduction_factor < 2)
            raise ReplayError(f"pruner {name} with options {options}: {err}") from None
        pruners[name] = lambda n=name, o=options: make_pruner(n, o)
    return ReplaySetup(objective=objective, pruners=pruners, n_orders=args.orders, seed=args.seed,
                       rules=tuple(args.rules), cols=SelectionColumns(rankme=args.rankme_column),
                       pooled=args.pooled)


def _progress(total: int) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # plain output without tqdm
        return None
    return tqdm(total=total, desc="replays", unit="replay", file=sys.stderr, disable=None)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        setup = make_setup(args)
        table, curves = load(args)
        groups = method_groups(table, curves, setup.cols)
        bar = _progress(len(setup.pruners) * setup.n_orders * (1 if setup.pooled else len(groups)))
        start = time.perf_counter()
        raw = replay_all(table, curves, setup, progress=None if bar is None else bar.update)
        if bar is not None:
            bar.close()
    except (ReplayError, ObjectiveError, SamplerConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = summarise(raw)
    report(args, setup, table, groups, summary, time.perf_counter() - start)
    return 0


def report(args: argparse.Namespace, setup: ReplaySetup, table: pd.DataFrame, groups: dict, summary: pd.DataFrame,
           seconds: float) -> None:
    """The table, where it was written, how to use a pruner in a sweep, and the verdict lines (last)."""
    n_used = sum(len(ids) for _, ids in groups.values())
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.float_format", "{:.3f}".format):
        print(summary[SHOWN].to_string(index=False))
    note = " [--quick: a smoke run, not the measurement]" if args.quick else ""
    if not args.quick and setup.n_orders < 100:
        note = " [fewer than 100 orders: a rough estimate]"
    studies = "one study over all methods" if setup.pooled else "one study per method"
    print(f"\nobjective {setup.objective.label} ({setup.objective.direction}), {studies}; {n_used} of {len(table)} "
          f"table trials have curves; {setup.n_orders} orders per pruner (seed {args.seed}){note}; {seconds:.0f} s. "
          f"saved = 1 - trial-epochs run / trial-epochs without pruning; regret in points vs the best-val trial "
          f"of all trials; '{ALL_METHODS}' = methods summed.")
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        summary.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    else:
        print("nothing written (add --csv PATH to keep the table)")
    for name in setup.pruners:
        if name != "none":
            opts = " ".join(f"hydra.sweeper.pruner.options.{k}={v}" for k, v in pruner_options(name, args).items())
            print(f"next: to prune a sweep this way: hydra.sweeper.pruner.name={name} {opts}".rstrip())
    print(f"equal quality = mean {args.policy} regret over the orders at most 0.25 pts above its regret without "
          f"pruning, on the '{ALL_METHODS}' row")
    judged = [name for name in setup.pruners if name != "none"] or list(setup.pruners)
    for name in judged:
        print(verdict(summary, name, rule=args.policy))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

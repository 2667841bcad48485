"""Build the label-free selection report of one study.

    python analysis/make_report.py --storage sqlite:///sweep.db --study demo \
        --sweep-dir runs/demo --out report/

Trials come from the Optuna storage (``sweep.study.results.trials_dataframe``) or, with ``--trials``, from
an exported CSV/parquet table; readouts from ``<sweep-dir>/readouts/trial_<n>.json`` (run them first with
``sweep.selection.run_readouts`` / ``sweep select``). Prints what each policy chose (the report's headline, in
words and points), then the path of the HTML report. Usable trials whose readout is missing or failed are
listed in the report, with the reason.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import pandas as pd

from sweep.config.schema import SelectionConfig
from sweep.selection.pipeline import readout_problems
from sweep.selection.readout_jobs import load_readouts
from sweep.selection.report import build_report, policy_summary


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    defaults = SelectionConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--storage", help="Optuna storage URL (use with --study)")
    source.add_argument(
        "--trials", type=Path, help="exported trials table (.csv or .parquet) instead of a storage"
    )
    parser.add_argument("--study", help="study name in --storage")
    parser.add_argument(
        "--sweep-dir", type=Path, required=True, help="folder holding readouts/trial_<n>.json"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="output folder for report.html, tables/, figures/"
    )
    parser.add_argument("--n-orders", type=int, default=defaults.n_orders)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--tolerance", type=float, default=defaults.tolerance)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--top-k", type=int, default=defaults.top_k)
    parser.add_argument("--alpha-band", type=float, nargs=2, default=defaults.alpha_band)
    args = parser.parse_args(argv)
    if args.storage and not args.study:
        parser.error("--study is required with --storage")
    return args


def load_trials(args: argparse.Namespace) -> pd.DataFrame:
    if args.trials is not None:
        if args.trials.suffix == ".parquet":
            return pd.read_parquet(args.trials)
        return pd.read_csv(args.trials)
    from sweep.study.results import trials_dataframe  # heavy (optuna); only when a storage is given

    return trials_dataframe(args.storage, args.study)


def main(argv: Optional[Sequence[str]] = None) -> Path:
    args = parse_args(argv)
    cfg = SelectionConfig(
        batch_size=args.batch_size,
        top_k=args.top_k,
        alpha_band=list(args.alpha_band),
        n_orders=args.n_orders,
        tolerance=args.tolerance,
        seed=args.seed,
    )
    trials = load_trials(args)
    path = build_report(
        trials,
        load_readouts(args.sweep_dir),
        args.out,
        cfg,
        title=f"Label-free selection: {args.study or args.trials}",
        readout_problems=readout_problems(trials, args.sweep_dir),
    )
    print(policy_summary(pd.read_csv(args.out / "tables" / "policies.csv")))  # what the report holds
    print(path)
    return path


if __name__ == "__main__":
    main(sys.argv[1:])

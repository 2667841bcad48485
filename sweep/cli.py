"""The ``sweep`` command: one entry for the whole flow.

    sweep demo                      offline demo sweep -> selection -> report
    sweep train [overrides...]      one SSL training run (Hydra; add -m and hydra/sweeper=sweep_optuna for a sweep)
    sweep results --storage URL --study NAME [--out trials.parquet]
    sweep progress --storage URL --study NAME
    sweep select --storage URL --study NAME --sweep-dir DIR [--launcher local] [--out DIR]
    sweep risk --storage URL --study NAME --sweep-dir DIR [--trials 0 3] [--reference-epochs N]

Each subcommand is a thin shell over a library function, so everything here is also usable from Python.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence


def _add_study_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", required=True, help="Optuna storage URL (sqlite:///..., journal:///..., postgresql://...)")
    parser.add_argument("--study", required=True, help="study name")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sweep", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the offline demo: sweep, selection policies, comparison report")
    demo.add_argument("--out", type=Path, default=Path("sweep_runs/demo"), help="output folder")
    demo.add_argument("--trials", type=int, default=None, help="number of trials (default: the demo preset's)")
    demo.add_argument("--jobs", type=int, default=2, help="trials run in parallel")
    demo.add_argument("--size", choices=("default", "tiny"), default="default",
                      help="'tiny' is the seconds-long variant the tests use")
    demo.add_argument("--launcher", choices=("sweep_local", "sweep_inprocess"), default="sweep_local")

    sub.add_parser("train", help="one training run; arguments are Hydra overrides", add_help=False)

    results = sub.add_parser("results", help="export all trials (params, metrics, paths) as parquet + CSV")
    _add_study_args(results)
    results.add_argument("--out", type=Path, default=None,
                         help="a .parquet path (a .csv is written beside it) or a folder; default: print the table")

    progress = sub.add_parser("progress", help="print running / done / failed / pruned counts and the best trial")
    _add_study_args(progress)

    select = sub.add_parser("select", help="read out trials, run the selection policies, write the report")
    _add_study_args(select)
    select.add_argument("--sweep-dir", type=Path, required=True, help="the sweep's folder (readouts are stored here)")
    select.add_argument("--launcher", choices=("inprocess", "local", "slurm"), default="local")
    select.add_argument("--out", type=Path, default=None, help="report folder (default: <sweep-dir>/report)")
    select.add_argument("--jobs", type=int, default=None,
                        help="readout jobs at once (default: the core count for local, one per trial otherwise)")

    risk = sub.add_parser("risk", help="Dubois et al. risk decomposition of trials (one supervised reference)")
    _add_study_args(risk)
    risk.add_argument("--sweep-dir", type=Path, required=True, help="the sweep's folder (writes <sweep-dir>/risk)")
    risk.add_argument("--trials", type=int, nargs="+", default=None,
                      help="trial numbers (default: every completed trial)")
    risk.add_argument("--reference-epochs", type=int, default=None,
                      help="epochs of the supervised reference (default: the trial's epochs)")
    risk.add_argument("--launcher", choices=("inprocess", "local", "slurm"), default="local")
    risk.add_argument("--jobs", type=int, default=None,
                      help="jobs in flight at once (default: one job per reference and per trial)")
    return parser


def _run_train(argv: Sequence[str]) -> int:
    from sweep.train.job import main as train_main

    sys.argv = ["sweep-train", *argv]
    train_main()
    return 0


def _run_results(args: argparse.Namespace) -> int:
    from sweep.study.results import export_results, trials_dataframe

    if args.out is None:
        frame = trials_dataframe(args.storage, args.study)
        print(frame.to_string(index=False))
    else:
        for path in export_results(args.storage, args.study, args.out).values():
            print(path)
    return 0


def _run_progress(args: argparse.Namespace) -> int:
    from sweep.study.results import progress_line

    print(progress_line(args.storage, args.study))
    return 0


def _run_select(args: argparse.Namespace) -> int:
    from sweep.demo import select_and_report

    jobs = args.jobs or (os.cpu_count() if args.launcher == "local" else None)  # local: no more than the cores
    report = select_and_report(args.storage, args.study, args.sweep_dir, args.launcher, args.out, jobs)
    print(f"report: {report}")
    return 0


def _run_risk(args: argparse.Namespace) -> int:
    import pandas as pd

    from sweep.demo import readout_executor
    from sweep.selection.risk import load_risks, risk_table, run_risk, write_risk_table
    from sweep.study.results import trials_dataframe

    if args.reference_epochs is not None and args.reference_epochs < 1:
        raise SystemExit(f"sweep risk: --reference-epochs={args.reference_epochs} is not allowed; "
                         "use an integer >= 1")
    trials = trials_dataframe(args.storage, args.study)
    executor = readout_executor(args.launcher, Path(args.sweep_dir) / ".risk_jobs")
    frame = run_risk(trials, args.sweep_dir, executor, args.trials, args.reference_epochs,
                     max_parallel=args.jobs)
    if frame.empty:
        among = "" if args.trials is None else f" among --trials {' '.join(map(str, args.trials))}"
        print(f"sweep risk: study {args.study!r} has no completed trials{among}; nothing to decompose")
        return 1
    display = ("display.width", 160, "display.max_columns", 20, "display.float_format", "{:.4f}".format)
    with pd.option_context(*display):
        print(risk_table(frame).iloc[:, :7].to_string(index=False))
    for _, row in frame[frame["status"] != "completed"].iterrows():
        print(f"trial {row['trial']} failed: {row['error']}")
    for path in write_risk_table(load_risks(args.sweep_dir), args.sweep_dir).values():  # every stored trial
        print(path)
    return 0 if (frame["status"] == "completed").all() else 1


def _run_demo(args: argparse.Namespace) -> int:
    from sweep.demo import run_demo

    report = run_demo(args.out, n_trials=args.trials, n_jobs=args.jobs, size=args.size, launcher=args.launcher)
    print(f"report: {report}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        return _run_train(argv[1:])
    args = _build_parser().parse_args(argv)
    handlers = {"results": _run_results, "progress": _run_progress, "select": _run_select, "demo": _run_demo,
                "risk": _run_risk}
    return handlers[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())

"""The ``sweep`` command: one entry for the whole flow.

    sweep demo                      offline demo sweep -> selection -> report
    sweep train [overrides...]      one SSL training run (Hydra; add -m and hydra/sweeper=sweep_optuna for a sweep)
    sweep readout RUN_DIR [--features projector]   linear probe + kNN on one run's saved features
    sweep results --storage URL --study NAME [--out trials.parquet]
    sweep progress --storage URL --study NAME
    sweep studies --storage URL     the studies of a storage, with trial counts by state
    sweep select --storage URL --study NAME --sweep-dir DIR [--launcher local] [--out DIR]
    sweep select --table FILE [--method-column method] [--query "repeat == 0"] [--out DIR]   (CSV or parquet)
    sweep risk --storage URL --study NAME --sweep-dir DIR [--trials 0 3] [--reference-epochs N]
    sweep best --storage URL --study NAME [--sweep-dir DIR] | sweep best REPORT_DIR   (config to retrain)

Each subcommand is a thin shell over a library function, so everything here is also usable from Python.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from sweep.errors import SweepError
from sweep.safety import one_line_message

if TYPE_CHECKING:
    import pandas as pd


def _add_study_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--storage", required=required,
                        help="Optuna storage URL (sqlite:///..., journal:///..., postgresql://...)")
    parser.add_argument("--study", required=required, help="study name")


def _launcher_kind(name: str) -> str:
    """argparse type: a kind registered in ``sweep.launch.LAUNCHERS`` (looked up only when the flag is given)."""
    from sweep.launch import LAUNCHERS

    try:
        return LAUNCHERS.check(name)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _launcher_plugin(name: str) -> str:
    """argparse type: the Hydra launcher option of a registered kind (``sweep_local``)."""
    from sweep.launch import LAUNCHERS
    from sweep.registry import unknown_name_message

    plugins = [kind.plugin for _, kind in LAUNCHERS.items()]
    if name not in plugins:
        raise argparse.ArgumentTypeError(unknown_name_message("launcher plugin", name, plugins))
    return name


def _build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The parser; with ``command`` given (argv's first word), the other commands get their name and help only,
    so that ``sweep progress`` does not import the demo and the selection (pandas, ~0.5 s) for nothing."""
    parser = argparse.ArgumentParser(prog="sweep", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_demo_parser(sub, full=command in (None, "demo"))
    sub.add_parser("train", help="one training run; arguments are Hydra overrides (-m for a sweep)",
                   add_help=False)
    _add_reader_parsers(sub)
    _add_select_parser(sub, full=command in (None, "select"))
    _add_risk_parser(sub)
    _add_best_parser(sub)
    return parser


def _add_demo_parser(sub: argparse._SubParsersAction, full: bool = True) -> None:
    help_line = "run the offline demo: sweep, selection policies, comparison report"
    if not full:
        sub.add_parser("demo", help=help_line)
        return
    from sweep.demo import DEMO_PRESETS  # here, not at import: `sweep train` stays light

    demo = sub.add_parser(
        "demo", help=help_line,
        description="The README's first command, offline: a label-free sweep of small SSL runs on 5000 MNIST "
                    "digits (local subprocesses, SQLite study in --out), a linear-probe readout of every run, the "
                    "selection policies and an HTML report comparing them. Rerunning the same command resumes; "
                    "Ctrl-C stops it cleanly.")
    demo.add_argument("--out", type=Path, default=Path("sweep_runs/demo"), help="output folder")
    demo.add_argument("--trials", type=int, default=None, help="number of trials (default: the demo preset's)")
    demo.add_argument("--jobs", type=int, default=2, help="trials run in parallel")
    demo.add_argument("--size", choices=tuple(DEMO_PRESETS), default="default",
                      help="; ".join(f"{name!r}: {preset['help']}" for name, preset in DEMO_PRESETS.items()))
    demo.add_argument("--launcher", type=_launcher_plugin, default="sweep_local",
                      help="the Hydra launcher the trials and readouts run on (default: sweep_local)")


def _add_reader_parsers(sub: argparse._SubParsersAction) -> None:
    """The commands that read a study or a run: results, readout, progress, studies."""
    results = sub.add_parser(
        "results", help="export all trials (params, metrics, paths) as parquet + CSV",
        description="One row per trial of a study: state, params, every metric of its record, objectives, "
                    "record and run dir; printed, or written as parquet + CSV with --out.")
    _add_study_args(results)
    results.add_argument("--out", type=Path, default=None,
                         help="a .parquet path (a .csv is written beside it) or a folder; default: print the table")

    readout = sub.add_parser(
        "readout", help="linear probe + kNN on one run's saved features (sweep train's output)",
        description="Read out one run as `sweep select` reads out a sweep's trials: a linear probe (L2 chosen on "
                    "val, accuracy on test) and a kNN probe; stored as RUN_DIR/readout_<features>.json.")
    readout.add_argument("run_dir", type=Path, help="the run directory (holds result.json and features/)")
    readout.add_argument("--features", choices=("backbone", "projector"), default=None,
                         help="which features to read out (default: the run's readout.features, else backbone)")

    progress = sub.add_parser(
        "progress", help="print running / done / failed / pruned counts and the best trial",
        description="One line on a study, while it runs or after: trial counts by state and the best trial "
                    "(the Pareto front with several objectives).")
    _add_study_args(progress)

    studies = sub.add_parser(
        "studies", help="list the studies of a storage with trial counts by state",
        description="Every study in --storage: trials counted towards n_trials by state (complete, running, "
                    "waiting, fail, pruned), requeued trials (run again under a new number), the target "
                    "n_trials and the sweep dir. Read-only: a mistyped path creates nothing.")
    studies.add_argument("--storage", required=True,
                         help="Optuna storage URL (sqlite:///..., journal:///..., postgresql://...)")


def _add_select_parser(sub: argparse._SubParsersAction, full: bool = True) -> None:
    help_line = "read out trials, run the selection policies, write the report"
    if not full:
        sub.add_parser("select", help=help_line)
        return
    from sweep.selection.table import add_table_arguments

    select = sub.add_parser(
        "select", help=help_line,
        description="Two modes: a study (--storage, --study, --sweep-dir: readouts are run here) or a metrics "
                    "table of runs trained anywhere (--table FILE: it already holds the readouts). Exits 1 when "
                    "no policy could choose a config.")
    _add_study_args(select, required=False)
    select.add_argument("--sweep-dir", type=Path, default=None,
                        help="the sweep's folder (readouts are stored here; default: the one the study recorded)")
    select.add_argument("--launcher", type=_launcher_kind, default=None,
                        help="where readout jobs run (default: local)")
    select.add_argument("--out", type=Path, default=None,
                        help="report folder (default: <sweep-dir>/report, "
                             "or <table stem>_report beside --table)")
    select.add_argument("--jobs", type=int, default=None,
                        help="readout jobs at once (default: the core count for local, one per trial otherwise)")
    table = select.add_argument_group("metrics table mode (instead of --storage/--study/--sweep-dir)")
    table.add_argument("--table", type=Path, default=None,
                       help="CSV or parquet, one row per trial: label-free metrics plus validation and test "
                            "readouts as fractions in [0, 1]")
    add_table_arguments(table)
    select.set_defaults(parser=select)


def _add_risk_parser(sub: argparse._SubParsersAction) -> None:
    risk = sub.add_parser(
        "risk", help="Dubois et al. risk decomposition of trials (one supervised reference)",
        description="Split each trial's probe test error into approximation, usability, probe and encoder "
                    "generalisation (Dubois et al., 2023): trains a supervised reference once per data + "
                    "backbone config, then decomposes each trial from its saved features. A rerun reuses the "
                    "finished references and records. Needs `sweep train` trials (their data and backbone "
                    "configs); other trials are named with the reason.")
    _add_study_args(risk)
    risk.add_argument("--sweep-dir", type=Path, required=True, help="the sweep's folder (writes <sweep-dir>/risk)")
    risk.add_argument("--trials", type=int, nargs="+", default=None,
                      help="trial numbers (default: every completed trial)")
    risk.add_argument("--reference-epochs", type=int, default=None,
                      help="epochs of the supervised reference (default: the trial's epochs)")
    risk.add_argument("--launcher", type=_launcher_kind, default="local",
                      help="where the reference and risk jobs run (default: local)")
    risk.add_argument("--jobs", type=int, default=None,
                      help="jobs in flight at once (default: one job per reference and per trial)")


def _add_best_parser(sub: argparse._SubParsersAction) -> None:
    best = sub.add_parser(
        "best", help="print the chosen trial as Hydra overrides and write a config `sweep train` reruns",
        description="The selection's recommended trial (or --policy's) with exact values, and "
                    "<report>/best/best.yaml for `sweep train --config-dir DIR --config-name best`. Give a "
                    "selection output folder (the --out of `sweep select`), or a study (its report is "
                    "<sweep-dir>/report).")
    best.add_argument("report", type=Path, nargs="?", default=None,
                      help="a selection output folder (holds tables/answer.json)")
    _add_study_args(best, required=False)
    best.add_argument("--sweep-dir", type=Path, default=None,
                      help="the sweep's folder (default: the one the study recorded)")
    best.add_argument("--policy", default=None, help="another policy's choice (default: the recommended one)")
    best.add_argument("--out", type=Path, default=None, help="where best.yaml goes (default: <report>/best)")
    best.set_defaults(parser=best)


def _run_best(args: argparse.Namespace) -> int:
    from sweep.selection.best import BestError, make_retrain, retrain_lines

    if args.report is None and (args.storage is None or args.study is None):
        args.parser.error("give a selection output folder, or --storage and --study")
    report = args.report
    if report is None:
        report = (args.sweep_dir or _recorded_sweep_dir(args.storage, args.study, args.parser)) / "report"
    try:
        retrain = make_retrain(report, args.out, args.policy)
    except BestError as err:
        print(f"sweep best: {err}", file=sys.stderr)
        if args.storage and args.study and not (report / "tables" / "answer.json").is_file():
            print(f"next: {_study_command('select', args.storage, args.study, report.parent)}", file=sys.stderr)
        return 1
    print("\n".join(retrain_lines(retrain)))
    return 0


def _run_train(argv: Sequence[str]) -> int:
    from sweep.train.job import cli_main

    sys.argv = ["sweep-train", *argv]
    cli_main()
    return 0


def _run_results(args: argparse.Namespace) -> int:
    """The trials table, printed or written; the storage is opened once (a journal file is replayed once)."""
    from sweep.study.attrs import storage_of, sweep_dir_of
    from sweep.study.results import export_results, load_study, trials_dataframe

    study = load_study(args.storage, args.study)  # a missing storage or study: the error names the URL
    select = _study_command("select", args.storage, args.study, sweep_dir_of(study) or "SWEEP_DIR")
    if args.out is None:
        frame = trials_dataframe(storage_of(study), args.study)
        print(_printed_table(frame) if len(frame) else f"study {args.study!r} has no trials yet")
        print(f"next: save it with --out trials.parquet, or {select}")
    else:
        for kind, path in export_results(storage_of(study), args.study, args.out).items():
            print(f"{kind}: {path}")
        print(f"next: {select}")
    return 0


PRINTED_ROWS = 200  # a longer table is cut in the middle on screen; --out writes every row


def _printed_table(frame: "pd.DataFrame") -> str:
    """The trials as an aligned table; past ``PRINTED_ROWS`` the first and last halves, with a line that says
    how many trials are left out and how to get them all (formatting 10,000 rows took ~1 s for nobody to read)."""
    if len(frame) <= PRINTED_ROWS:
        return frame.to_string(index=False)
    import pandas as pd

    half = PRINTED_ROWS // 2
    lines = pd.concat([frame.head(half), frame.tail(half)]).to_string(index=False).splitlines()  # one alignment
    gap = f"... {len(frame) - 2 * half} more trials (every row: --out trials.parquet) ..."
    return "\n".join([*lines[: half + 1], gap, *lines[half + 1:]])


def _run_readout(args: argparse.Namespace) -> int:
    """Read out one run the way `sweep select` reads out a sweep's trials (the same settings rule,
    ``readout_settings``: the run's own recorded readout config over the defaults); stored beside its record."""
    import math

    from sweep.selection.readout_jobs import readout_job, readout_settings_at

    record_path = args.run_dir / "result.json"
    if not record_path.is_file():
        print(f"sweep readout: no {record_path}: give the run directory that `sweep train` printed",
              file=sys.stderr)
        return 2
    cfg = readout_settings_at(record_path, {"features": args.features} if args.features else None)
    out_path = args.run_dir / f"readout_{cfg['features']}.json"
    result = readout_job(0, str(record_path), str(out_path), cfg)
    if result["status"] != "completed":
        print(f"sweep readout: failed: {result['error']}", file=sys.stderr)
        return 1
    knn = result["knn_accuracy"]
    knn_text = "" if knn is None or math.isnan(knn) else f"; kNN (k={cfg['knn_k']}) test {knn:.1%}"
    print(f"linear probe on {cfg['features']} features: val {result['val_accuracy']:.1%}, "
          f"test {result['test_accuracy']:.1%} (L2 {result['best_l2']:.0e} chosen on val){knn_text}\n"
          f"readout: {out_path}\n"
          "next: sweep this configuration's hyperparameters without labels: README, 'Everyday use' "
          "(sweep train -m ...)")
    return 0


def _run_progress(args: argparse.Namespace) -> int:
    """Counts and the best trial, read from the storage opened once (no pandas, no whole trials on RDB)."""
    from sweep.study.attrs import sweep_dir_of
    from sweep.study.results import load_study, progress_of

    study = load_study(args.storage, args.study)
    print(progress_of(study))
    sweep_dir = sweep_dir_of(study) or "SWEEP_DIR"
    print(f"next: {_study_command('select', args.storage, args.study, sweep_dir)}")
    return 0


def _run_studies(args: argparse.Namespace) -> int:
    """The studies of a storage with counts, and the command that follows one of them."""
    import shlex

    import pandas as pd

    from sweep.study.results import study_counts
    from sweep.study.storage import mask_url

    frame = study_counts(args.storage)
    if frame.empty:
        print(f"no studies in {mask_url(args.storage)}")
        return 1
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 60):
        print(frame.astype(object).where(frame.notna(), "-").to_string(index=False))
    first = str(frame["study"].iloc[0])
    print(f"next: sweep progress {shlex.join(['--storage', mask_url(args.storage), '--study', first])}")
    return 0


def _select_command(storage: str, study: str) -> str:
    """The `sweep select` line for this study, with the sweep dir its driver recorded (when it did)."""
    from sweep.study.attrs import sweep_dir_of
    from sweep.study.results import load_study

    sweep_dir = sweep_dir_of(load_study(storage, study)) or "SWEEP_DIR"
    return _study_command("select", storage, study, sweep_dir)


STUDY_FLAGS = ("storage", "study", "sweep_dir", "launcher", "jobs")


def _check_select_mode(args: argparse.Namespace) -> None:
    """--table and the study flags are two exclusive modes; argparse errors (exit 2) name the clash."""
    from sweep.selection.table import explicit_table_flags

    parser = args.parser
    study_given = ["--" + f.replace("_", "-") for f in STUDY_FLAGS if getattr(args, f) is not None]
    if args.table is not None and study_given:
        parser.error(f"--table cannot be combined with {', '.join(study_given)}: give either a metrics table "
                     "or a study (--storage, --study, --sweep-dir)")
    if args.table is None:
        needed = ("storage", "study")  # --sweep-dir defaults to the one the sweep's driver recorded
        missing = ["--" + f.replace("_", "-") for f in needed if getattr(args, f) is None]
        if missing:
            parser.error(f"the following arguments are required: {', '.join(missing)} (or give --table FILE "
                         "to select from a metrics table)")
        if args.sweep_dir is None:
            args.sweep_dir = _recorded_sweep_dir(args.storage, args.study, parser)
        table_only = explicit_table_flags(args)
        if table_only:
            parser.error(f"{', '.join(table_only)} only apply with --table FILE")


def _recorded_sweep_dir(storage: str, study: str, parser: argparse.ArgumentParser) -> Path:
    """The sweep dir the study's driver recorded (sweeps started before it recorded one need --sweep-dir)."""
    from sweep.study.attrs import sweep_dir_of
    from sweep.study.results import load_study

    recorded = sweep_dir_of(load_study(storage, study))
    if not recorded:
        parser.error(f"study {study!r} does not record its sweep dir: give --sweep-dir DIR (the sweep's "
                     "hydra.sweep.dir)")
    return Path(recorded)


def _run_select(args: argparse.Namespace) -> int:
    _check_select_mode(args)
    if args.table is not None:
        return _run_select_table(args)
    from sweep.selection.pipeline import select_and_report

    launcher = args.launcher or "local"
    jobs = args.jobs or (os.cpu_count() if launcher == "local" else None)  # local: no more than the cores
    report = select_and_report(args.storage, args.study, args.sweep_dir, launcher, args.out, jobs)  # prints notes
    from sweep.selection.report import nan_metric_lines, predictions_summary

    print(predictions_summary(report.parent / "tables"))
    for line in nan_metric_lines(report.parent / "tables"):
        print(f"[select] NaN metric: {line}")
    print(f"report: {report}\ntables: {report.parent / 'tables'}")
    nothing = _nothing_selected(report.parent / "tables")
    if nothing:
        print(f"sweep select: nothing could be selected: {nothing}", file=sys.stderr)
        return 1
    if _risk_applies(args.storage, args.study):
        print("next: open the report; for the risk decomposition of these trials run\n"
              f"  {_study_command('risk', args.storage, args.study, args.sweep_dir)}")
    else:
        print("next: open the report (`sweep risk` needs `sweep train` trials: their data and backbone configs)")
    return 0


def _risk_applies(storage: str, study: str) -> bool:
    """Whether `sweep risk` can decompose this study: its first usable trial is a `sweep train` trial (a
    bring-your-own trainer's config names no data / backbone for the supervised reference)."""
    from sweep.selection.policies import usable_trials
    from sweep.selection.risk_jobs import trial_config
    from sweep.study.results import trials_dataframe
    from sweep.train.reference import missing_trainer_config

    rows = usable_trials(trials_dataframe(storage, study))
    try:
        return not rows.empty and missing_trainer_config(trial_config(rows.iloc[0])) is None
    except (SweepError, OSError, ValueError):  # an unreadable record: the suggestion is left out, nothing fails
        return False


def _nothing_selected(tables: Path) -> Optional[str]:
    """Why no policy chose a config (read from the report's policies.csv), or None when one did: ``sweep
    select`` then exits 1 so a script notices the empty report."""
    import pandas as pd

    path = tables / "policies.csv"
    if not path.is_file():
        return f"the report wrote no {path}"
    policies = pd.read_csv(path)
    if "chosen_trial" in policies.columns and policies["chosen_trial"].notna().any():
        return None
    return "no completed trial with a usable readout (see the report's failures)"


def _study_command(verb: str, storage: str, study: str, sweep_dir: Path | str) -> str:
    """``sweep <verb> --storage ... --study ... --sweep-dir ...``, quoted for a shell."""
    import shlex

    return f"sweep {verb} " + shlex.join(["--storage", storage, "--study", study, "--sweep-dir", str(sweep_dir)])


def _run_select_table(args: argparse.Namespace) -> int:
    """Policies, report and correlations on a metrics table (no study, no readout jobs)."""
    import shlex

    import pandas as pd

    from sweep.selection.report import nan_metric_lines, policy_summary, predictions_summary
    from sweep.selection.table import (
        TableError,
        default_report_dir,
        describe,
        load_for_command,
        table_columns,
    )

    try:
        loaded, query = load_for_command(args.table, table_columns(args), args.query)
    except TableError as exc:
        print(f"sweep select: {exc}", file=sys.stderr)
        return 2
    print(describe(loaded, args.table, query), flush=True)
    out = args.out or default_report_dir(args.table)
    title = f"Label-free selection: {args.table.name}"
    if "task" in loaded.trials.columns:  # one sweep per task: never selected or judged across tasks
        from sweep.selection.tasks import build_task_reports, task_folder, task_frames

        report = build_task_reports(loaded.trials, loaded.readouts, out, title=title)
        for task, _, _ in task_frames(loaded.trials, loaded.readouts):
            tables = out / task_folder(task) / "tables"
            print(f"task {task}:\n" + policy_summary(pd.read_csv(tables / "policies.csv")))
            print(predictions_summary(tables))
        print(f"report: {report} (one section per task)")
    else:
        from sweep.selection.pipeline import report_selection

        # the policy table computed once: written by the report, printed after the answer
        report, _ = report_selection(loaded.trials, loaded.readouts, out, f"sweep best {out}", title=title)
        print(predictions_summary(out / "tables"))
        for line in nan_metric_lines(out / "tables"):
            print(f"NaN metric: {line}")
        print(f"report: {report}\ntables: {out / 'tables'}")
        nothing = _nothing_selected(out / "tables")
        if nothing:
            print(f"sweep select: nothing could be selected: {nothing}", file=sys.stderr)
            return 1
    print("next: open the report, then judge the policies against random-b (target verdict):\n"
          f"  python benchmarks/selection.py {shlex.join(_table_flags_for_benchmark(args))}")
    return 0


def _table_flags_for_benchmark(args: argparse.Namespace) -> list[str]:
    """This command's table flags, for the benchmark command printed as the next step."""
    from sweep.selection.table import TABLE_FLAGS

    flags = ["--table", str(args.table)]
    for name in TABLE_FLAGS:
        value = getattr(args, name, None)
        if value is not None:
            flags += ["--" + name.replace("_", "-"), value]
    return flags


def _run_risk(args: argparse.Namespace) -> int:
    import pandas as pd

    from sweep.launch import make_executor
    from sweep.selection.risk_jobs import load_risks, risk_table, run_risk, write_risk_table
    from sweep.study.results import trials_dataframe

    if args.reference_epochs is not None and args.reference_epochs < 1:
        raise SystemExit(f"sweep risk: --reference-epochs={args.reference_epochs} is not allowed; "
                         "use an integer >= 1")
    trials = trials_dataframe(args.storage, args.study)
    executor = make_executor({"kind": args.launcher}, Path(args.sweep_dir) / ".risk_jobs")
    frame = run_risk(trials, args.sweep_dir, executor, args.trials, args.reference_epochs,
                     max_parallel=args.jobs)
    if frame.empty:
        among = "" if args.trials is None else f" among --trials {' '.join(map(str, args.trials))}"
        print(f"sweep risk: study {args.study!r} has no completed trials{among}; nothing to decompose")
        return 1
    done = frame[frame["status"] == "completed"]
    if not done.empty:
        display = ("display.width", 160, "display.max_columns", 20, "display.float_format", "{:.4f}".format)
        with pd.option_context(*display):
            print(risk_table(done).iloc[:, :7].to_string(index=False))
    for error, trials in _failures_by_reason(frame).items():
        print(f"sweep risk: trial(s) {', '.join(map(str, trials))} not decomposed: {error}")
    if done.empty:
        return 1  # nothing to add to the report; the line above says why
    for kind, path in write_risk_table(load_risks(args.sweep_dir), args.sweep_dir).items():  # every stored trial
        print(f"{kind}: {path}")
    print(f"records: {Path(args.sweep_dir) / 'risk'}/trial_<n>.json\n"
          "next: the report shows the decomposition once these records exist:\n"
          f"  {_study_command('select', args.storage, args.study, args.sweep_dir)}")
    return 0 if (frame["status"] == "completed").all() else 1


def _failures_by_reason(frame: "pd.DataFrame") -> dict[str, list[int]]:
    """Failed risk trials grouped by their error: a bring-your-own study is one line, not one per trial."""
    grouped: dict[str, list[int]] = {}
    for _, row in frame[frame["status"] != "completed"].iterrows():
        grouped.setdefault(str(row["error"]), []).append(int(row["trial"]))
    return grouped


def _run_demo(args: argparse.Namespace) -> int:
    from sweep.demo import EXIT_INTERRUPTED, STUDY_NAME, run_demo, storage_url

    try:
        report = run_demo(args.out, n_trials=args.trials, n_jobs=args.jobs, size=args.size,
                          launcher=args.launcher)
    except KeyboardInterrupt:  # during the readouts or the report (the sweep's own Ctrl-C is handled there)
        print("sweep demo: interrupted (SIGINT); finished trials and readouts are kept: rerun the same command "
              "to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    out = Path(args.out).resolve()
    print(f"report: {report}\ntables: {report.parent / 'tables'}\n"
          f"next: open the report in a browser; the risk decomposition of these trials:\n"
          f"  {_study_command('risk', storage_url(out), STUDY_NAME, out / 'sweep')}\n"
          "  your own sweep: README, 'Everyday use' (sweep train -m ...)")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        return _run_train(argv[1:])
    args = _build_parser(argv[0] if argv else None).parse_args(argv)
    handlers = {"results": _run_results, "progress": _run_progress, "select": _run_select, "demo": _run_demo,
                "risk": _run_risk, "readout": _run_readout, "studies": _run_studies,
                "best": _run_best}
    try:
        return handlers[args.command](args)
    except SweepError as err:  # it names what to fix (a mistyped --study, a journal line and its repair command,
        # a field and its allowed values): one line and exit 2; anything else is a bug and keeps its traceback
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"sweep {args.command}: {one_line_message(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

"""The selection on top: stored readouts -> the policies -> the policy table, computed once and handed down to the
report, printed and logged. Readouts themselves (jobs, settings, problems, oracles) are :mod:`readouts`'; the
names below are re-exported from there for the callers that import them from here."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import pandas as pd

from sweep.config.schema import SelectionConfig
from sweep.selection.policies import SelectionResult, run_policies
from sweep.selection.readout_jobs import (  # noqa: F401  (re-exported: the readout names' old home)
    JOBS_ENV,
    PROBLEM_COLUMNS,
    ExecutorReadout,
    TableReadout,
    _readout_jobs_env,
    pending_trials,
    print_readout_problems,
    readout_problems,
    readout_settings,
    record_path_of,
    run_readouts,
)

if TYPE_CHECKING:  # scipy and matplotlib: imported when a report is made, not with `import sweep.selection`
    from sweep.selection.answer import Objective
    from sweep.selection.report_numbers import PolicyTable


def select(
    trials: pd.DataFrame,
    readouts: pd.DataFrame,
    cfg: Optional[SelectionConfig] = None,
    order: Optional[Sequence[int]] = None,
) -> list[SelectionResult]:
    """Every policy on a finished (or running) study, choosing by ``cfg.selection_column``."""
    cfg = cfg or SelectionConfig()
    return run_policies(trials, TableReadout(readouts, cfg.selection_column), order, cfg)


def study_objective(storage: str, study_name: str, trials: pd.DataFrame) -> Objective:
    """The study's label-free objective(s) (:class:`sweep.selection.answer.Objective`): the labels the sweeper
    recorded, read from the metric column of that name when the table has one, else ``objective_<i>``."""
    from sweep.selection.answer import Objective  # lazy: scipy
    from sweep.study.results import load_study  # lazy: optuna and the storage layer only for a study

    study = load_study(storage, study_name)
    n = len(study.directions)
    labels = list(study.user_attrs.get("objectives") or [f"objective_{i}" for i in range(n)])[:n]
    columns = tuple(label if label in trials.columns else f"objective_{i}" for i, label in enumerate(labels))
    maximize = tuple(d.name == "MAXIMIZE" for d in study.directions)
    return Objective(tuple(labels), columns, maximize)


def best_command(storage: str, study_name: str, sweep_dir: str | Path) -> str:
    """The ``sweep best`` line that writes the recommended config for ``sweep train``."""
    return "sweep best " + shlex.join(["--storage", storage, "--study", study_name, "--sweep-dir",
                                       str(sweep_dir)])


def report_selection(trials: pd.DataFrame, readouts: pd.DataFrame, out: Path, command: str,
                     cfg: Optional[SelectionConfig] = None, title: str = "Label-free selection report",
                     risk: Optional[pd.DataFrame] = None, problems: Optional[pd.DataFrame] = None,
                     objective: Optional[Objective] = None) -> tuple[Path, PolicyTable]:
    """The policy table computed once, handed to the report (which writes it) and printed after the answer;
    both ``sweep select`` modes (a study, a metrics table) end here. ``command`` retrains the answer."""
    from sweep.selection.report import build_report, compute_policy_table  # lazy: matplotlib

    cfg = cfg or SelectionConfig()
    policies = compute_policy_table(trials, readouts, cfg)
    report = build_report(trials, readouts, out, cfg, title=title, risk=risk, readout_problems=problems,
                          objective=objective, policies=policies)
    print_answer(report.parent / "tables", command)
    print_policy_summary(policies.table)
    return report, policies


def select_and_report(storage: str, study_name: str, sweep_dir: str | Path, launcher: str = "local",
                      out: Optional[Path] = None, max_parallel: Optional[int] = None) -> Path:
    """A stored study -> readouts of every completed trial (the oracle needs them all; each policy reports how
    many it used; each trial read out with its own recorded readout settings, as ``sweep readout`` does) run
    through ``launcher`` -> the comparison report (``sweep select`` and the demo), then the answer on stdout
    first (which config, how far to trust it), each policy's choice after it."""
    from sweep.launch import make_executor  # lazy: submitit and the launchers only when readouts run
    from sweep.selection.risk_jobs import load_risks  # lazy: the supervised reference code pulls in torch
    from sweep.study.results import trials_dataframe

    sweep_dir = Path(sweep_dir)
    trials = trials_dataframe(storage, study_name)
    executor = make_executor({"kind": launcher}, sweep_dir / ".readout_jobs")
    readouts = run_readouts(trials, sweep_dir, executor, max_parallel=max_parallel)
    risk = load_risks(sweep_dir)  # only what `sweep risk` stored: selection never computes it
    command = best_command(storage, study_name, sweep_dir)
    if out is not None:  # a report elsewhere than <sweep-dir>/report: `sweep best` reads that folder
        command = f"sweep best {shlex.quote(str(Path(out)))}"
    report, policies = report_selection(
        trials, readouts, out or sweep_dir / "report", command, SelectionConfig(),
        title=f"Label-free selection: study {study_name!r}", risk=risk if len(risk) else None,
        problems=readouts.attrs.get("readout_problems"),
        objective=study_objective(storage, study_name, trials))
    _log_to_tracker(policies.table, storage, study_name, report.parent)
    return report


def _log_to_tracker(policies: pd.DataFrame, storage: str, study_name: str, report_dir: Path) -> None:
    """The policy table beside the trials in the tracker the sweep logged to (study user attr ``tracking``);
    nothing when the sweep tracked nothing. ``log_selection`` never raises: a tracker is never the reason a
    selection fails."""
    from sweep.integrations.trackers import TRACKING_ATTR, log_selection  # lazy: only a tracked sweep
    from sweep.study.results import load_study

    settings = load_study(storage, study_name).user_attrs.get(TRACKING_ATTR)
    if settings:
        where = log_selection(policies, settings, study_name=study_name, report_dir=report_dir)
        if where:
            print("selection logged: " + ", ".join(f"{k} {v}" for k, v in where.items()), flush=True)


def print_answer(tables: Path, command: str = "") -> None:
    """The report's answer block on stdout (from ``tables/answer.json``), with the command that retrains it."""
    from sweep.selection.answer import answer_lines, read_answer  # lazy: scipy

    print("\n".join(answer_lines(read_answer(Path(tables) / "answer.json"), command)), flush=True)


def print_policy_summary(policies: pd.DataFrame) -> None:
    """The report's headline on stdout: what each policy chose, at what readout cost and regret in points, and
    why a policy read or chose nothing (``sweep.selection.report_numbers.policy_summary``)."""
    from sweep.selection.report_numbers import policy_summary  # lazy: scipy and the evaluation code

    print(policy_summary(policies), flush=True)

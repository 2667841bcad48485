"""Glue: run readout jobs through a submitit executor, then feed stored readouts to the policies."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import pandas as pd

from sweep.config.schema import ReadoutConfig, SelectionConfig
from sweep.selection.policies import SelectionResult, run_policies, usable_trials
from sweep.selection.readouts import (
    DEFAULT_KNN,
    DEFAULT_PROBE,
    load_readouts,
    readout_job,
    readout_many,
    readout_path,
    readout_problem,
)

if TYPE_CHECKING:
    from sweep.selection.answer import Objective

JOBS_ENV = "SWEEP_READOUT_JOBS"  # read by sweep.readout._threads (not imported here: it pulls in torch)
PROBLEM_COLUMNS = ["trial", "kind", "file", "reason"]  # kind: missing | unreadable | mismatched | failed


def _cfg_dict(cfg: Any) -> dict[str, Any]:
    """Plain dict from a dataclass, OmegaConf node or mapping, so it pickles for any executor."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return dataclasses.asdict(cfg)
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return dict(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return dict(cfg)


def record_path_of(row: pd.Series) -> Path:
    """The trial's result.json: the ``record_path`` column, else ``<run_dir>/result.json``."""
    record = row.get("record_path")
    if isinstance(record, str) and record:
        return Path(record)
    run_dir = row.get("run_dir")
    if isinstance(run_dir, str) and run_dir:
        return Path(run_dir) / "result.json"
    raise ValueError(f"trial {row.get('trial')}: neither record_path nor run_dir is set")


def pending_trials(
    trials: pd.DataFrame, sweep_dir: str | Path, trial_ids: Optional[Sequence[int]] = None
) -> list[int]:
    """Completed trials (optionally a subset) without a completed readout record yet."""
    good = usable_trials(trials).set_index("trial", drop=False)
    ids = [int(t) for t in good["trial"]]
    if trial_ids is not None:
        wanted = {int(t) for t in trial_ids}
        ids = [t for t in ids if t in wanted]
    return [t for t in ids if readout_problem(readout_path(sweep_dir, t), t, _record_or_none(good.loc[t]))]


def _record_or_none(row: pd.Series) -> Optional[Path]:
    try:
        return record_path_of(row)
    except ValueError:
        return None


def readout_problems(trials: pd.DataFrame, sweep_dir: str | Path) -> pd.DataFrame:
    """Every usable (COMPLETE) trial without a good readout, with the reason: one row per trial, columns
    ``trial``, ``kind`` (missing | unreadable | mismatched | failed), ``file`` (the readout file) and ``reason``.
    This is what a report must show next to "N usable of M trials": which trials the selection could not see."""
    rows = []
    good = usable_trials(trials)
    for _, row in good.iterrows():
        trial = int(row["trial"])
        path = readout_path(sweep_dir, trial)
        problem = readout_problem(path, trial, _record_or_none(row))
        if problem is not None:
            kind, _, reason = problem.partition(": ")
            rows.append({"trial": trial, "kind": kind, "file": str(path), "reason": reason})
    return pd.DataFrame(rows, columns=PROBLEM_COLUMNS)


def print_readout_problems(problems: pd.DataFrame, n_usable: int) -> None:
    """One line per trial whose readout is missing or failed, so a short selection never looks complete."""
    if problems.empty:
        print(f"[select] readouts: all {n_usable} usable trials read out", flush=True)
        return
    print(f"[select] readouts: {n_usable - len(problems)} of {n_usable} usable trials read out; "
          f"{len(problems)} left out of the selection:", flush=True)
    for row in problems.itertuples(index=False):
        print(f"[select]   trial {row.trial}: {row.kind}: {row.reason} ({row.file})", flush=True)


@contextlib.contextmanager
def _readout_jobs_env(width: int) -> Iterator[None]:
    """``$SWEEP_READOUT_JOBS`` = ``width`` while the jobs are started, so that k jobs on one machine share its
    cores instead of each taking all of them (OpenMP threads of side-by-side jobs otherwise spin against
    each other: a 1.2 s probe took 19.9 s)."""
    previous = os.environ.get(JOBS_ENV)
    os.environ[JOBS_ENV] = str(width)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(JOBS_ENV, None)
        else:
            os.environ[JOBS_ENV] = previous


def run_readouts(
    trials: pd.DataFrame,
    sweep_dir: str | Path,
    executor: Any,
    readout_cfg: Any = None,
    trial_ids: Optional[Sequence[int]] = None,
    probe: str = DEFAULT_PROBE,
    knn: Optional[str] = DEFAULT_KNN,
    max_parallel: Optional[int] = None,
) -> pd.DataFrame:
    """Read out every pending trial and return all stored readouts. ``max_parallel=None``: one job per trial,
    all at once (a job array on SLURM); ``max_parallel=k``: k jobs that share the trials (right for a laptop's
    cores). Re-running is cheap: completed records are skipped."""
    cfg = _cfg_dict(readout_cfg if readout_cfg is not None else ReadoutConfig())
    pending = pending_trials(trials, sweep_dir, trial_ids)
    rows = usable_trials(trials).set_index("trial", drop=False)
    args = [(t, str(record_path_of(rows.loc[t])), str(readout_path(sweep_dir, t)), cfg, probe, knn)
            for t in pending]
    if args and trial_ids is None:
        print(f"[select] reading out {len(args)} trial(s) into {Path(sweep_dir) / 'readouts'}", flush=True)
    if max_parallel and args:  # a few long-lived jobs, each reading out its share: start-up paid once per job
        width = min(int(max_parallel), len(args))
        with _readout_jobs_env(width):  # each job then takes cores / width threads (sweep.readout._threads)
            jobs = [executor.submit(readout_many, args[i::width]) for i in range(width)]
    else:  # one job per trial, as one job array on SLURM
        jobs = executor.map_array(readout_job, *zip(*args)) if args else []
    _wait_with_progress(jobs, [Path(a[2]) for a in args], show=trial_ids is None)
    for job in jobs:
        job.result()
    frame = load_readouts(sweep_dir)
    if trial_ids is None:  # a full pass: say which trials the selection will not see, and why
        problems = readout_problems(trials, sweep_dir)
        print_readout_problems(problems, len(rows))
        frame.attrs["readout_problems"] = problems
    return frame


def _wait_with_progress(jobs: Sequence[Any], outputs: Sequence[Path], show: bool,
                        poll_s: float = 0.5) -> None:
    """Wait for the jobs, counting readout files as they land (a job may read out several trials). With no bar
    shown there is nothing to count: the caller's ``job.result()`` waits without a polling delay."""
    from sweep.progress_bar import progress

    bar = progress(total=len(outputs), desc="readouts", unit="trial", enabled=show)
    if bar.disable:
        return
    try:
        while not all(_done(job) for job in jobs):
            bar.update(sum(p.exists() for p in outputs) - bar.n)
            time.sleep(poll_s)
        bar.update(sum(p.exists() for p in outputs) - bar.n)
    finally:
        bar.close()


def _done(job: Any) -> bool:
    done = getattr(job, "done", None)
    return True if done is None else bool(done())


class TableReadout:
    """Readout oracle over stored readouts: ``trial -> column value`` (NaN when absent or failed)."""

    def __init__(self, readouts: pd.DataFrame, column: str = "val_accuracy") -> None:
        if column not in readouts.columns:
            raise ValueError(f"readouts has no column {column!r}; present: {sorted(readouts.columns)}")
        ok = readouts
        if "status" in readouts.columns:
            ok = readouts[readouts["status"].astype(str) == "completed"]
        self._values = dict(zip(ok["trial"].astype(int), ok[column].astype(float), strict=True))

    def __call__(self, trial: int) -> float:
        return self._values.get(int(trial), math.nan)

    @property
    def values(self) -> dict[int, float]:
        """A copy of the trial -> value map (completed readouts only)."""
        return dict(self._values)


class ExecutorReadout:
    """Lazy readout oracle: the first call for a trial runs its readout job, so a policy pays only for
    the readouts it asks for (the policy's CountingReadout caches repeats)."""

    def __init__(
        self,
        trials: pd.DataFrame,
        sweep_dir: str | Path,
        executor: Any,
        readout_cfg: Any = None,
        column: str = "val_accuracy",
        probe: str = DEFAULT_PROBE,
        knn: Optional[str] = DEFAULT_KNN,
    ) -> None:
        self._args = (trials, sweep_dir, executor, readout_cfg)
        self._column, self._probe, self._knn = column, probe, knn

    def __call__(self, trial: int) -> float:
        trials, sweep_dir, executor, cfg = self._args
        frame = run_readouts(trials, sweep_dir, executor, cfg, [int(trial)], self._probe, self._knn)
        return TableReadout(frame, self._column)(trial)


def select(
    trials: pd.DataFrame,
    readouts: pd.DataFrame,
    cfg: Optional[SelectionConfig] = None,
    order: Optional[Sequence[int]] = None,
) -> list[SelectionResult]:
    """Every policy on a finished (or running) study, choosing by ``cfg.selection_column``."""
    cfg = cfg or SelectionConfig()
    readout = TableReadout(readouts, cfg.selection_column)
    return run_policies(trials, readout, order, settings=cfg)


def study_objective(storage: str, study_name: str, trials: pd.DataFrame) -> Objective:
    """The study's label-free objective(s) (:class:`sweep.selection.answer.Objective`): the labels the sweeper
    recorded, read from the metric column of that name when the table has one, else ``objective_<i>``."""
    from sweep.selection.answer import Objective
    from sweep.study.results import load_study

    study = load_study(storage, study_name)
    n = len(study.directions)
    labels = list(study.user_attrs.get("objectives") or [f"objective_{i}" for i in range(n)])[:n]
    columns = tuple(label if label in trials.columns else f"objective_{i}" for i, label in enumerate(labels))
    maximize = tuple(d.name == "MAXIMIZE" for d in study.directions)
    return Objective(tuple(labels), columns, maximize)


def best_command(storage: str, study_name: str, sweep_dir: str | Path) -> str:
    """The ``sweep best`` line that writes the recommended config for ``sweep train``."""
    import shlex

    return "sweep best " + shlex.join(["--storage", storage, "--study", study_name, "--sweep-dir",
                                       str(sweep_dir)])


def select_and_report(storage: str, study_name: str, sweep_dir: str | Path, launcher: str = "local",
                      out: Optional[Path] = None, max_parallel: Optional[int] = None) -> Path:
    """A stored study -> readouts of every completed trial (the oracle needs them all; each policy reports how
    many it used) run through ``launcher`` -> the comparison report (``sweep select`` and the demo), then the
    answer on stdout first (which config, how far to trust it), each policy's choice after it."""
    import shlex

    from sweep.launch import make_executor
    from sweep.selection.report import build_report
    from sweep.selection.risk import load_risks
    from sweep.study.results import trials_dataframe

    sweep_dir = Path(sweep_dir)
    trials = trials_dataframe(storage, study_name)
    executor = make_executor({"kind": launcher}, sweep_dir / ".readout_jobs")
    readouts = run_readouts(trials, sweep_dir, executor, ReadoutConfig(), max_parallel=max_parallel)
    cfg = SelectionConfig()
    risk = load_risks(sweep_dir)  # only what `sweep risk` stored: selection never computes it
    report = build_report(trials, readouts, out or sweep_dir / "report", cfg,
                          title=f"Label-free selection: study {study_name!r}", risk=risk if len(risk) else None,
                          readout_problems=readouts.attrs.get("readout_problems"),
                          objective=study_objective(storage, study_name, trials))
    command = best_command(storage, study_name, sweep_dir)
    if out is not None:  # a report elsewhere than <sweep-dir>/report: `sweep best` reads that folder
        command = f"sweep best {shlex.quote(str(report.parent))}"
    print_answer(report.parent / "tables", command)
    policies = pd.read_csv(report.parent / "tables" / "policies.csv")
    print_policy_summary(policies)
    _log_to_tracker(policies, storage, study_name, report.parent)
    return report


def _log_to_tracker(policies: pd.DataFrame, storage: str, study_name: str, report_dir: Path) -> None:
    """The policy table beside the trials in the tracker the sweep logged to (study user attr ``tracking``);
    nothing when the sweep tracked nothing. ``log_selection`` never raises: a tracker is never the reason a
    selection fails."""
    from sweep.integrations.trackers import TRACKING_ATTR, log_selection
    from sweep.study.results import load_study

    settings = load_study(storage, study_name).user_attrs.get(TRACKING_ATTR)
    if settings:
        where = log_selection(policies, settings, study_name=study_name, report_dir=report_dir)
        if where:
            print("selection logged: " + ", ".join(f"{k} {v}" for k, v in where.items()), flush=True)


def print_answer(tables: Path, command: str = "") -> None:
    """The report's answer block on stdout (from ``tables/answer.json``), with the command that retrains it."""
    from sweep.selection.answer import answer_lines, read_answer

    print("\n".join(answer_lines(read_answer(Path(tables) / "answer.json"), command)), flush=True)


def print_policy_summary(policies: pd.DataFrame) -> None:
    """The report's headline on stdout: what each policy chose, at what readout cost and regret in points, and
    why a policy read or chose nothing (``sweep.selection.report.policy_summary``)."""
    from sweep.selection.report import policy_summary

    print(policy_summary(policies), flush=True)

"""Readouts, all of them: the job (a linear probe and kNN on one trial's saved features, stored as our own record),
the settings it runs with, and the orchestration (pending trials, jobs on an executor, problems, table oracles).

Optuna refuses to update finished trials, so results live in ``<sweep_dir>/readouts/trial_<n>.json``.
A job never raises for a bad trial (submitit's DebugExecutor would drop into pdb): it writes and returns
a record with ``status: failed`` and the error, and a later run retries it. Completed records are reused only
when they check out (``readout_problem``): JSON of a readout record, of this trial, made from this trial's
result file. Anything else (random bytes, ``[]``, a file copied from another trial) is named and read out again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from sweep.errors import SweepError
from sweep.config.schema import ReadoutConfig
from sweep.jsonio import write_json_atomic
from sweep.selection.policies import usable_trials

READOUTS_DIRNAME = "readouts"
JOBS_ENV = "SWEEP_READOUT_JOBS"  # read by sweep.readout._threads (not imported here: it pulls in torch)
PROBLEM_COLUMNS = ["trial", "kind", "file", "reason"]  # kind: missing | unreadable | mismatched | failed
DEFAULT_PROBE = "sweep.readout:linear_probe"
DEFAULT_KNN = "sweep.readout:knn_probe"
SPLITS = ("train", "val", "test")
FEATURE_KINDS = ("backbone", "projector")


class ReadoutError(SweepError, ValueError):
    """A trial's record or features cannot be read out; the message names the file or field."""


@dataclass
class ReadoutRecord:
    trial: int
    status: str  # completed | failed
    val_accuracy: float = float("nan")
    test_accuracy: float = float("nan")
    knn_accuracy: float = float("nan")
    train_accuracy: float = float("nan")
    best_l2: float = float("nan")
    features: str = "backbone"
    error: Optional[str] = None
    elapsed_s: float = 0.0
    record_path: Optional[str] = None  # the result.json read out: a readout never stands for another trial


def readout_path(sweep_dir: str | Path, trial: int) -> Path:
    return Path(sweep_dir) / READOUTS_DIRNAME / f"trial_{int(trial)}.json"


def resolve_callable(spec: str) -> Callable[..., Any]:
    """'package.module:function' -> the function; a string travels to any executor backend."""
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ReadoutError(f"callable spec must look like 'package.module:function', got {spec!r}")
    return getattr(importlib.import_module(module), name)


def feature_files(record: dict[str, Any], kind: str, base: Path) -> dict[str, tuple[Path, Path]]:
    """(features, labels) paths per split from ``record['features']``; relative paths are under ``base``."""
    if kind not in FEATURE_KINDS:
        raise ReadoutError(f"readout.features must be one of {FEATURE_KINDS}, got {kind!r}")
    features = record.get("features") or {}
    files = {}
    for split in SPLITS:
        entry = features.get(split) or {}
        if kind not in entry or "labels" not in entry:
            raise ReadoutError(f"record['features']['{split}'] lacks '{kind}' or 'labels'")
        files[split] = (base / entry[kind], base / entry["labels"])
    return files


def _load_split(paths: tuple[Path, Path]) -> tuple[np.ndarray, np.ndarray]:
    for path in paths:
        if not path.is_file():
            raise ReadoutError(f"feature file not found: {path}")
    return np.load(paths[0]), np.load(paths[1])


def load_readout(path: str | Path) -> Optional[dict[str, Any]]:
    """The stored record, or None when absent or unreadable (a half-written file, random bytes, a JSON value
    that is not an object all count as absent; ``readout_problem`` says which)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):  # FileNotFoundError, JSONDecodeError, UnicodeDecodeError
        return None
    return data if isinstance(data, dict) else None


def readout_problem(path: str | Path, trial: int, record_path: Optional[str | Path] = None) -> Optional[str]:
    """Why the readout file of ``trial`` cannot be used as is (None when it is a completed readout of this
    trial): missing, unreadable, not a readout record, another trial's, made from another result file, failed."""
    path = Path(path)
    if not path.exists():
        return "missing: no readout yet"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return f"unreadable: {path} is not JSON ({type(err).__name__}: {str(err)[:120]})"
    if not isinstance(data, dict) or not {"trial", "status"} <= set(data):
        return f"unreadable: {path} holds {type(data).__name__}, not a readout record with 'trial' and 'status'"
    if _as_int(data.get("trial")) != int(trial):
        return f"mismatched: {path} is the readout of trial {data.get('trial')!r}, not of trial {trial}"
    made_from = data.get("record_path")
    if record_path is not None and made_from and not _same_file(made_from, record_path):
        return f"mismatched: {path} was made from {made_from}, trial {trial}'s record is {record_path}"
    if data.get("status") != "completed":
        return f"failed: {data.get('error') or data.get('status')}"
    return None


def _as_int(value: Any) -> Optional[int]:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _same_file(a: str | Path, b: str | Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def _read_record(record_path: Path) -> dict[str, Any]:
    """The trial's result.json; errors name the file (a truncated record is a common failure after a crash)."""
    try:
        record = json.loads(record_path.read_text())
    except FileNotFoundError:
        raise ReadoutError(f"result record not found: {record_path}") from None
    except (OSError, ValueError) as err:
        raise ReadoutError(f"{record_path}: not a readable JSON record ({type(err).__name__}: {err})") from None
    if not isinstance(record, dict):
        raise ReadoutError(f"{record_path}: holds {type(record).__name__}, expected a result record (an object)")
    return record


def _probe_record(
    trial: int, record_path: Path, cfg: dict[str, Any], probe: str, knn: Optional[str]
) -> ReadoutRecord:
    record = _read_record(record_path)
    kind = str(cfg.get("features", "backbone"))
    base = Path(record.get("run_dir") or record_path.parent)
    data = {split: _load_split(paths) for split, paths in feature_files(record, kind, base).items()}
    (tx, ty), (vx, vy), (sx, sy) = data["train"], data["val"], data["test"]
    kwargs = {k: cfg[k] for k in ("l2_grid", "max_iter", "device") if k in cfg}
    result = resolve_callable(probe)(tx, ty, vx, vy, sx, sy, **kwargs)
    out = ReadoutRecord(
        trial=trial,
        status="completed",
        features=kind,
        val_accuracy=float(result.val_accuracy),
        test_accuracy=float(result.test_accuracy),
        train_accuracy=float(getattr(result, "train_accuracy", math.nan)),
        best_l2=float(getattr(result, "best_l2", math.nan)),
    )
    if knn is not None and int(cfg.get("knn_k", 0)) > 0:
        try:  # secondary readout: its failure is recorded but does not void the linear probe
            out.knn_accuracy = float(resolve_callable(knn)(tx, ty, sx, sy, k=int(cfg["knn_k"])))
        except Exception as exc:  # noqa: BLE001
            out.error = f"knn: {type(exc).__name__}: {exc}"
    return out


def readout_job(
    trial: int,
    record_path: str,
    out_path: str,
    readout_cfg: dict[str, Any],
    probe: str = DEFAULT_PROBE,
    knn: Optional[str] = DEFAULT_KNN,
) -> dict[str, Any]:
    """One trial's readout; reuses a completed record at ``out_path`` when it checks out for this trial and
    record (``readout_problem``), else reads out again. Runs inside any submitit executor."""
    if readout_problem(out_path, int(trial), record_path) is None:
        previous = load_readout(out_path)
        assert previous is not None
        return previous
    start = time.perf_counter()
    try:
        out = _probe_record(int(trial), Path(record_path), readout_cfg, probe, knn)
    except Exception as exc:  # noqa: BLE001 - recorded, retried on the next run
        out = ReadoutRecord(
            trial=int(trial),
            status="failed",
            features=str(readout_cfg.get("features")),
            error=f"{type(exc).__name__}: {exc}",
        )
    out.elapsed_s = time.perf_counter() - start
    out.record_path = str(record_path)
    payload = asdict(out)
    write_json_atomic(Path(out_path), payload)
    return payload


def readout_many(jobs: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Several trials' readouts in one job (``readout_job`` arguments per trial), one after another."""
    return [readout_job(*arguments) for arguments in jobs]


READOUT_COLUMNS = list(ReadoutRecord.__dataclass_fields__)


def load_readouts(sweep_dir: str | Path) -> pd.DataFrame:
    """All stored readout records of a sweep, one row per trial, sorted by trial. Files that are not a readout
    record of the trial in their name are left out (``readout_problems`` names them)."""
    folder = Path(sweep_dir) / READOUTS_DIRNAME
    rows = []
    for path in sorted(folder.glob("trial_*.json")):
        trial = _as_int(path.stem.removeprefix("trial_"))
        problem = readout_problem(path, trial) if trial is not None else "unreadable: bad file name"
        if problem is None or problem.startswith("failed"):
            rows.append(load_readout(path))
    frame = pd.DataFrame(rows, columns=READOUT_COLUMNS)
    return frame.sort_values("trial", kind="stable").reset_index(drop=True)


# ----------------------------------------------------------------------------- settings: one rule
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


def readout_settings(record: Mapping[str, Any], overrides: Any = None) -> dict[str, Any]:
    """The settings one run is read out with, the same rule for ``sweep readout`` and ``sweep select`` (so both
    read out the same features the same way): the :class:`ReadoutConfig` defaults, then the run's own recorded
    ``config.readout``, then ``overrides`` (a flag such as ``--features``, or a caller's whole config, which
    then pins every setting)."""
    config = record.get("config")
    recorded = config.get("readout") if isinstance(config, Mapping) else None
    merged = _cfg_dict(ReadoutConfig())
    if isinstance(recorded, Mapping):
        merged.update(recorded)
    if overrides is not None:
        merged.update(_cfg_dict(overrides))
    return merged


def readout_settings_at(record_path: str | Path, overrides: Any = None) -> dict[str, Any]:
    """:func:`readout_settings` of the result.json at ``record_path``; an unreadable record adds nothing
    (its readout job then fails and names the file)."""
    try:
        record = _read_record(Path(record_path))
    except ReadoutError:
        record = {}
    return readout_settings(record, overrides)


# ----------------------------------------------------------------------------- which trials need a readout
def record_path_of(row: pd.Series) -> Path:
    """The trial's result.json: the ``record_path`` column, else ``<run_dir>/result.json``."""
    record = row.get("record_path")
    if isinstance(record, str) and record:
        return Path(record)
    run_dir = row.get("run_dir")
    if isinstance(run_dir, str) and run_dir:
        return Path(run_dir) / "result.json"
    raise ValueError(f"trial {row.get('trial')}: neither record_path nor run_dir is set")


def _record_or_none(row: pd.Series) -> Optional[Path]:
    try:
        return record_path_of(row)
    except ValueError:
        return None


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


# ----------------------------------------------------------------------------- readout jobs on an executor
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
    """Read out every pending trial and return all stored readouts. Each trial is read out with
    :func:`readout_settings` of its own record (``readout_cfg``: overrides over it, as ``sweep readout``'s flags).
    ``max_parallel=None``: one job per trial, all at once (a job array on SLURM); ``max_parallel=k``: k jobs
    that share the trials (right for a laptop's cores). Re-running is cheap: completed records are skipped."""
    overrides = _cfg_dict(readout_cfg) if readout_cfg is not None else None
    pending = pending_trials(trials, sweep_dir, trial_ids)
    rows = usable_trials(trials).set_index("trial", drop=False)
    records = {t: record_path_of(rows.loc[t]) for t in pending}
    args = [(t, str(records[t]), str(readout_path(sweep_dir, t)), readout_settings_at(records[t], overrides),
             probe, knn) for t in pending]
    if args and trial_ids is None:
        print(f"[select] reading out {len(args)} trial(s) into {Path(sweep_dir) / READOUTS_DIRNAME}", flush=True)
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
    from sweep.progress_bar import progress  # lazy, as before: tqdm only when readouts run

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


# ----------------------------------------------------------------------------- readout oracles for policies
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

"""The trials table (study -> selection -> report) and its export to parquet + CSV.

One row per trial: ``trial``, ``state``, ``method``, ``params_<name>``, one column per metric of the record,
``objective_0..k``, ``record_path``, ``run_dir``, ``failure_reason`` (plus ``job_id``, ``duration_s``).
"""
from __future__ import annotations

import importlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from sweep.study import attrs as schema
from sweep.study.progress import progress_line as _progress_line
from sweep.study.storage import as_storage, find_study
from sweep.study.trial_rows import TrialRow, read_trials

if TYPE_CHECKING:
    import pandas as pd  # imported where used: `sweep progress` needs no pandas (~0.4 s)

METRIC_PREFIX = "metric_"  # user attrs holding the record's metrics
BASE_COLUMNS = ["trial", "state", "method"]
TAIL_COLUMNS = [schema.RECORD_PATH, schema.RUN_DIR, schema.JOB_ID, schema.FAILURE_REASON, "duration_s"]


def load_study(storage: str | BaseStorage | None, study_name: str) -> optuna.Study:
    """An existing study, read-only: a missing storage file or study raises ``StudyNotFoundError`` naming it
    and listing the studies that exist, and nothing is created on the way."""
    opened = as_storage(storage, create=False)
    find_study(opened, study_name, storage if isinstance(storage, str) else "")
    return optuna.load_study(study_name=study_name, storage=opened)


def trial_row(trial: FrozenTrial | TrialRow, n_objectives: int) -> dict[str, Any]:
    attrs = trial.user_attrs
    row: dict[str, Any] = {"trial": trial.number, "state": trial.state.name, "method": attrs.get(schema.METHOD)}
    row.update({f"params_{k}": v for k, v in trial.params.items()})
    row.update({k[len(METRIC_PREFIX):]: v for k, v in attrs.items() if k.startswith(METRIC_PREFIX)})
    values = trial.values or [None] * n_objectives
    row.update({f"objective_{i}": v for i, v in enumerate(values)})
    for key in TAIL_COLUMNS[:-1]:
        row[key] = attrs.get(key)
    row["duration_s"] = trial.duration.total_seconds() if trial.duration is not None else None
    return row


def trials_dataframe(storage: str | BaseStorage | None, study_name: str) -> pd.DataFrame:
    """All trials of a study as the table in docs/ARCHITECTURE.md (columns stable even with no trial)."""
    import pandas as pd

    study = load_study(storage, study_name)
    n_obj = len(study.directions)
    rows = [trial_row(t, n_obj) for t in read_trials(schema.storage_of(study), schema.study_id_of(study))]
    frame = pd.DataFrame(rows)
    fixed = BASE_COLUMNS + [f"objective_{i}" for i in range(n_obj)] + TAIL_COLUMNS
    for col in fixed:
        if col not in frame.columns:
            frame[col] = pd.Series(dtype="object")
    params = sorted(c for c in frame.columns if c.startswith("params_"))
    metrics = sorted(c for c in frame.columns if c not in fixed and c not in params)
    order = BASE_COLUMNS + params + metrics + [f"objective_{i}" for i in range(n_obj)] + TAIL_COLUMNS
    return frame[order].sort_values("trial", kind="stable").reset_index(drop=True)


EXPORT_MODULES = ("pandas", "pyarrow.parquet")  # what export_results needs beyond this module


def warm_export_imports() -> threading.Thread:
    """Import the export's modules on a daemon thread while the sweep runs (~0.4 s here), so the table written
    after the last trial is not held up by them. The driver mostly waits on its jobs then; a module that will
    not import is left for ``export_results`` to report."""
    def _import_all() -> None:
        for name in EXPORT_MODULES:
            try:
                importlib.import_module(name)
            except ImportError:
                return

    thread = threading.Thread(target=_import_all, name="sweep-export-imports", daemon=True)
    thread.start()
    return thread


def export_results(storage: str | BaseStorage | None, study_name: str, out: Path) -> dict[str, Path]:
    """Write ``<out>/trials.parquet`` and ``<out>/trials.csv`` (or, when ``out`` ends in ``.parquet``, that
    file and a ``.csv`` beside it); returns their paths."""
    out = Path(out)
    parquet = out if out.suffix == ".parquet" else out / "trials.parquet"
    parquet.parent.mkdir(parents=True, exist_ok=True)
    frame = trials_dataframe(storage, study_name)
    paths = {"parquet": parquet, "csv": parquet.with_suffix(".csv")}
    frame.to_parquet(paths["parquet"], index=False)
    frame.to_csv(paths["csv"], index=False)
    return paths


def progress_line(storage: str | BaseStorage | None, study_name: str) -> str:
    """The driver's progress line for a stored study (``sweep results --progress``), labels and target count
    taken from the study's user attrs."""
    return progress_of(load_study(storage, study_name))


def progress_of(study: optuna.Study) -> str:
    """``progress_line`` of an opened study; on an RDB storage only the states, values and failure reasons
    are read (what the line shows), not whole trials."""
    n_obj = len(study.directions)
    attrs = study.user_attrs
    labels = attrs.get(schema.OBJECTIVES) or [f"objective_{i}" for i in range(n_obj)]
    trials = read_trials(schema.storage_of(study), schema.study_id_of(study), attr_keys=[schema.FAILURE_REASON],
                         params=False)
    return _progress_line(trials, study.directions, labels, attrs.get(schema.N_TRIALS))


STATE_COLUMNS = ("complete", "running", "waiting", "fail", "pruned")


def study_counts(storage: str | BaseStorage | None) -> pd.DataFrame:
    """One row per study of a storage: trial counts by state (``requeued``: failed for a reason outside the
    trial and run again under a new number, so not in ``fail``), the target n_trials and the sweep dir.
    Read-only: a missing storage file raises ``StudyNotFoundError`` and nothing is created."""
    import pandas as pd

    from sweep.study.resume import is_counted

    opened = as_storage(storage, create=False)
    rows = []
    for summary in opened.get_all_studies():
        trials = opened.get_all_trials(schema.study_id_of(summary), deepcopy=False)
        counted = [t for t in trials if is_counted(t)]
        row: dict[str, Any] = {"study": summary.study_name, "trials": len(counted)}
        row.update({state: sum(t.state.name.lower() == state for t in counted) for state in STATE_COLUMNS})
        row["requeued"] = len(trials) - len(counted)
        row["n_trials"] = summary.user_attrs.get(schema.N_TRIALS)
        row["sweep_dir"] = schema.sweep_dir_of(summary)
        rows.append(row)
    columns = ["study", "trials", *STATE_COLUMNS, "requeued", "n_trials", "sweep_dir"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["n_trials"] = frame["n_trials"].astype("Int64")  # absent for studies no driver ran: <NA>, not 8.0
    return frame.sort_values("study", kind="stable").reset_index(drop=True)

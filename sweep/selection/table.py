"""Metrics tables from elsewhere: load, validate and rename a CSV/parquet of finished runs for selection.

A table of models trained outside our sweeps (one row per trial: label-free metrics and readouts already
measured) is all the selection policies and the report need. :func:`load_metrics_table` maps the user's
column names onto the names the package uses (``trial``, ``method``, ``state``, ``rankme``, ``alpha``,
``val_accuracy``, ``test_accuracy``) and returns the two frames that
:func:`sweep.selection.report.build_report` and :func:`sweep.selection.policies.run_policies` take:
``trials`` (everything but the two readouts) and ``readouts`` (``trial``, ``status``, the two readouts).

Checks, each failing with a message that names the column and what is allowed: every named column exists
(listing the columns present), trial ids are unique integers, accuracies are fractions in [0, 1] (NaN is
allowed: a failed run), the query is valid and keeps at least one row.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np
import pandas as pd

from sweep.selection.policies import SelectionError

SUFFIXES = (".csv", ".parquet", ".pq")
COMPLETE_STATES = ("COMPLETE", "COMPLETED")  # upper-cased; any other state is unusable (never read, chosen)
NO_COLUMN = "none"  # --rankme-column none / --alpha-column none: the table has no such signal


class TableError(SelectionError):
    """A metrics table that cannot be used; the message names the column and the allowed values."""


@dataclass(frozen=True)
class TableColumns:
    """The table's column for each role. ``method`` / ``state`` None: use ``method`` / ``state`` when the
    table has them (absent method: one pooled group; absent state: every row counts as complete);
    ``rankme`` / ``alpha`` None: the table has no such signal (the policies that need it are skipped)."""

    trial: str = "trial"
    method: Optional[str] = None
    rankme: Optional[str] = "rankme"
    alpha: Optional[str] = "alpha"
    val: str = "val_accuracy"
    test: str = "test_accuracy"
    state: Optional[str] = None
    task: Optional[str] = None  # one sweep per value (e.g. the dataset): selection never compares across tasks


CANONICAL = {"trial": "trial", "method": "method", "rankme": "rankme", "alpha": "alpha",
             "val": "val_accuracy", "test": "test_accuracy", "state": "state", "task": "task"}


class MetricsTable(NamedTuple):
    """``trials`` and ``readouts`` in the package's column names; unpacks as a (trials, readouts) pair."""

    trials: pd.DataFrame
    readouts: pd.DataFrame


# ----------------------------------------------------------------------------- reading
def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV or parquet file as a frame (by suffix)."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise TableError(f"table {str(path)!r}: suffix {path.suffix!r} is not supported; "
                         f"use one of {list(SUFFIXES)}")
    if not path.is_file():
        raise TableError(f"table {str(path)!r} does not exist")
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path)
    return pd.read_parquet(path)


def apply_query(frame: pd.DataFrame, query: Optional[str]) -> pd.DataFrame:
    """Rows that pass a pandas query (None or blank: all rows); at least one row must remain."""
    if query is None or not query.strip():
        return frame
    try:
        kept = frame.query(query)
    except Exception as exc:  # pandas raises many kinds (UndefinedVariableError, SyntaxError, TypeError)
        raise TableError(f"query {query!r} failed ({type(exc).__name__}: {exc}); "
                         f"columns present: {sorted(map(str, frame.columns))}") from exc
    if kept.empty:
        raise TableError(f"query {query!r} keeps none of the {len(frame)} rows")
    return kept


# ----------------------------------------------------------------------------- checks
def resolve_columns(frame: pd.DataFrame, columns: TableColumns) -> dict[str, str]:
    """role -> table column for every role in use; a named column that is missing is an error."""
    roles: dict[str, Optional[str]] = {
        "trial": columns.trial, "rankme": columns.rankme, "alpha": columns.alpha,
        "val": columns.val, "test": columns.test,
        "method": columns.method or ("method" if "method" in frame.columns else None),
        "state": columns.state or ("state" if "state" in frame.columns else None),
        "task": columns.task,
    }
    used = {role: name for role, name in roles.items() if name is not None}
    for role, name in used.items():
        if name not in frame.columns:
            raise TableError(f"{role} column {name!r} is not in the table; columns present: "
                             f"{sorted(map(str, frame.columns))} (set it with --{role}-column)")
    return used


def check_trial_ids(frame: pd.DataFrame, column: str) -> pd.Series:
    """The trial column as int64: integers only, each id once."""
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = frame[column][values.isna() | (values != values.round())]
    if len(bad):
        raise TableError(f"column {column!r} must hold integer trial ids; got {bad.iloc[0]!r} "
                         f"(row {bad.index[0]})")
    ids = values.astype("int64")
    repeated = sorted(set(ids[ids.duplicated()]))
    if repeated:
        raise TableError(f"column {column!r} repeats trial id(s) {repeated[:5]}: each trial must appear once "
                         "(filter seed repeats with --query, e.g. \"repeat == 0\")")
    return ids


def check_fractions(frame: pd.DataFrame, column: str, trial_column: str) -> pd.Series:
    """An accuracy column as floats in [0, 1]; NaN is allowed (a run without a readout)."""
    values = pd.to_numeric(frame[column], errors="coerce")
    text = frame[column][values.isna() & frame[column].notna()]
    if len(text):
        raise TableError(f"column {column!r} holds {text.iloc[0]!r} (row {trial_column}="
                         f"{frame.loc[text.index[0], trial_column]}): accuracies must be numbers in [0, 1]")
    outside = values[(values > 1.0) | (values < 0.0)]
    if len(outside):
        row = outside.index[0]
        raise TableError(f"column {column!r} holds {outside.iloc[0]:g} (row {trial_column}="
                         f"{frame.loc[row, trial_column]}): accuracies must be fractions in [0, 1]; "
                         "divide percentages by 100")
    return values.astype(float)


def normalise_state(state: pd.Series) -> pd.Series:
    """COMPLETE for complete / completed (any case), the upper-cased value otherwise."""
    upper = state.astype(str).str.strip().str.upper()
    return upper.where(~upper.isin(COMPLETE_STATES), "COMPLETE")


# ----------------------------------------------------------------------------- renaming
def rename_roles(frame: pd.DataFrame, used: dict[str, str]) -> pd.DataFrame:
    """Table columns renamed to the package's names. A column that already carries a package name but is
    not the one chosen for that role (``--rankme-column rankme_backbone`` while ``rankme`` exists, or
    ``--alpha-column none`` while ``alpha`` exists) is kept as ``table_<name>``: no name is ever duplicated,
    no column is lost, and no policy reads a signal the user turned off."""
    mapping = {name: CANONICAL[role] for role, name in used.items()}
    shadowed = {c: f"table_{c}" for c in frame.columns if c in CANONICAL.values() and c not in mapping}
    return frame.rename(columns={**shadowed, **mapping})


def load_metrics_table(
    path: str | Path, columns: TableColumns = TableColumns(), query: Optional[str] = None
) -> MetricsTable:
    """Read, filter (``query`` first), check and rename a metrics table; see the module docstring."""
    return metrics_frames(read_table(path), columns, query)


def default_query(frame: pd.DataFrame, query: Optional[str]) -> Optional[str]:
    """The query the commands apply: the given one (blank: none), else ``repeat == 0`` when the table has a
    ``repeat`` column, so extra seeds of one config do not enter the pool as configs of their own."""
    if query is not None:
        return query.strip() or None
    return "repeat == 0" if "repeat" in frame.columns else None


def load_for_command(
    path: str | Path, columns: TableColumns, query: Optional[str]
) -> tuple[MetricsTable, Optional[str]]:
    """:func:`load_metrics_table` with the commands' :func:`default_query`; returns the query applied."""
    frame = read_table(path)
    applied = default_query(frame, query)
    return metrics_frames(frame, columns, applied), applied


def metrics_frames(
    frame: pd.DataFrame, columns: TableColumns = TableColumns(), query: Optional[str] = None
) -> MetricsTable:
    """:func:`load_metrics_table` on a frame already in memory."""
    frame = apply_query(frame, query)
    used = resolve_columns(frame, columns)
    frame = frame.assign(**{used["trial"]: check_trial_ids(frame, used["trial"])})
    for role in ("val", "test"):
        frame = frame.assign(**{used[role]: check_fractions(frame, used[role], used["trial"])})
    frame = rename_roles(frame, used)
    if "state" in used:
        frame = frame.assign(state=normalise_state(frame["state"]))
    if "method" in used:
        frame = frame.assign(method=frame["method"].astype(str))
    if "task" in used:
        frame = frame.assign(task=frame["task"].astype(str))
    frame = frame.sort_values("trial", kind="stable").reset_index(drop=True)
    readouts = frame[["trial", "val_accuracy", "test_accuracy"]].assign(status="completed")
    trials = frame.drop(columns=["val_accuracy", "test_accuracy"])
    return MetricsTable(trials, readouts[["trial", "status", "val_accuracy", "test_accuracy"]])


# ----------------------------------------------------------------------------- command-line flags
def add_table_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The column flags shared by ``sweep select --table`` and ``benchmarks/selection.py --table``.
    Defaults are None so a caller can tell an explicit flag from the default (see :func:`table_columns`)."""
    defaults = TableColumns()
    parser.add_argument("--trial-column", default=None,
                        help=f"unique integer trial id (default: {defaults.trial})")
    parser.add_argument("--method-column", default=None,
                        help="method name; RankMe is compared within a method "
                             "(default: 'method' when present, else one pooled group)")
    parser.add_argument("--rankme-column", default=None,
                        help=f"RankMe ('{NO_COLUMN}': no RankMe; default: {defaults.rankme})")
    parser.add_argument("--alpha-column", default=None,
                        help=f"alpha-ReQ alpha ('{NO_COLUMN}': no alpha; default: {defaults.alpha})")
    parser.add_argument("--val-column", default=None,
                        help="validation readout, a fraction in [0, 1]; policies choose on it "
                             f"(default: {defaults.val})")
    parser.add_argument("--test-column", default=None,
                        help=f"test readout, a fraction in [0, 1]; only reported (default: {defaults.test})")
    parser.add_argument("--state-column", default=None,
                        help="run state; rows not COMPLETE are never read (default: 'state' when present, "
                             "else every row is complete)")
    parser.add_argument("--task-column", default=None,
                        help="task of each row (e.g. the dataset) when the table holds several sweeps: selection "
                             "and the oracle run within each task, never across tasks (default: one task)")
    parser.add_argument("--query", default=None,
                        help='pandas query applied first (default: "repeat == 0" when the table has a repeat '
                             "column, so seed repeats do not enter the pool; '' for none)")


TABLE_FLAGS = ("trial_column", "method_column", "rankme_column", "alpha_column", "val_column", "test_column",
               "state_column", "task_column", "query")


def explicit_table_flags(args: argparse.Namespace) -> list[str]:
    """The table flags given on the command line (for 'only with --table' errors)."""
    return ["--" + f.replace("_", "-") for f in TABLE_FLAGS if getattr(args, f, None) is not None]


def table_columns(args: argparse.Namespace) -> TableColumns:
    """TableColumns from the parsed flags; unset flags keep the defaults."""
    base = TableColumns()

    def signal(value: Optional[str], default: Optional[str]) -> Optional[str]:
        if value is None:
            return default
        return None if value.strip().lower() == NO_COLUMN else value

    return TableColumns(
        trial=args.trial_column or base.trial,
        method=args.method_column or None,
        rankme=signal(args.rankme_column, base.rankme),
        alpha=signal(args.alpha_column, base.alpha),
        val=args.val_column or base.val,
        test=args.test_column or base.test,
        state=args.state_column or None,
        task=getattr(args, "task_column", None) or None,
    )


def default_report_dir(table: str | Path) -> Path:
    """``<table stem>_report`` beside the table: the report sits next to the data it describes."""
    table = Path(table)
    return table.with_name(f"{table.stem}_report")


def usable_count(trials: pd.DataFrame) -> int:
    """Rows whose state is COMPLETE (all rows without a state column)."""
    if "state" not in trials.columns:
        return len(trials)
    return int((trials["state"] == "COMPLETE").sum())


def describe(table: MetricsTable, source: str | Path, query: Optional[str]) -> str:
    """One line on what was loaded, for the command's output."""
    trials = table.trials
    methods = sorted(trials["method"].unique()) if "method" in trials.columns else ["(one pooled group)"]
    val = table.readouts["val_accuracy"]
    finite = int(np.isfinite(val.to_numpy(dtype=float)).sum())
    where = f" where {query}" if query else ""
    if "task" in trials.columns:
        where += f"; {trials['task'].nunique()} tasks ({', '.join(sorted(trials['task'].unique()))})"
    return (f"table {source}{where}: {len(trials)} trials, {usable_count(trials)} complete, {finite} with a "
            f"validation readout; methods: {', '.join(map(str, methods))}")

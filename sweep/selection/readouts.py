"""Readout jobs: a linear probe (and kNN) on one trial's saved features, stored as our own record.

Optuna refuses to update finished trials, so results live in ``<sweep_dir>/readouts/trial_<n>.json``.
A job never raises for a bad trial (submitit's DebugExecutor would drop into pdb): it writes and returns
a record with ``status: failed`` and the error, and a later run retries it. Completed records are reused only
when they check out (``readout_problem``): JSON of a readout record, of this trial, made from this trial's
result file. Anything else (random bytes, ``[]``, a file copied from another trial) is named and read out again.
"""

from __future__ import annotations

import importlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from sweep.jsonio import write_json_atomic

READOUTS_DIRNAME = "readouts"
DEFAULT_PROBE = "sweep.readout:linear_probe"
DEFAULT_KNN = "sweep.readout:knn_probe"
SPLITS = ("train", "val", "test")
FEATURE_KINDS = ("backbone", "projector")


class ReadoutError(ValueError):
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

"""Glue: run readout jobs through a submitit executor, then feed stored readouts to the policies."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from sweep.config.schema import ReadoutConfig, SelectionConfig
from sweep.selection.policies import SelectionResult, run_policies, usable_trials
from sweep.selection.readouts import (
    DEFAULT_KNN,
    DEFAULT_PROBE,
    load_readout,
    load_readouts,
    readout_job,
    readout_many,
    readout_path,
)


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
    good = usable_trials(trials)
    ids = [int(t) for t in good["trial"]]
    if trial_ids is not None:
        wanted = {int(t) for t in trial_ids}
        ids = [t for t in ids if t in wanted]
    done = []
    for trial in ids:
        stored = load_readout(readout_path(sweep_dir, trial))
        done.append(stored is not None and stored.get("status") == "completed")
    return [t for t, d in zip(ids, done, strict=True) if not d]


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
    if max_parallel:  # a few long-lived jobs, each reading out its share: process start-up paid once per job
        width = min(int(max_parallel), len(args))
        jobs = [executor.submit(readout_many, args[i::width]) for i in range(width)]
    else:  # one job per trial, as one job array on SLURM
        jobs = executor.map_array(readout_job, *zip(*args)) if args else []
    for job in jobs:
        job.result()
    return load_readouts(sweep_dir)


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
    return run_policies(
        trials, readout, order, cfg.batch_size, cfg.top_k, tuple(cfg.alpha_band),
        cfg.combined_budget, cfg.combined_allocation,
    )

"""benchmarks/overhead.py: latencies read back from the storage, summaries, CLI checks, and one real run."""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import sys
from pathlib import Path

import optuna
import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "overhead.py"
_spec = importlib.util.spec_from_file_location("sweep_bench_overhead", _PATH)
overhead = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = overhead  # dataclasses and cloudpickle look the module up by name
_spec.loader.exec_module(overhead)


def _finished(start: dt.datetime, seconds: float) -> optuna.trial.FrozenTrial:
    return optuna.trial.FrozenTrial(
        number=0, trial_id=0, state=optuna.trial.TrialState.COMPLETE, value=0.0, values=None,
        datetime_start=start, datetime_complete=start + dt.timedelta(seconds=seconds), params={},
        distributions={}, user_attrs={}, system_attrs={}, intermediate_values={})


def test_trial_latencies_are_complete_minus_start_of_finished_trials() -> None:
    study = optuna.create_study()
    t0 = dt.datetime(2026, 1, 1, 12, 0, 0)
    for seconds in (0.5, 1.25, 3.0):
        study.add_trial(_finished(t0, seconds))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.WAITING))  # never started
    assert overhead.trial_latencies(study) == (0.5, 1.25, 3.0)


def test_result_summaries() -> None:
    r = overhead.OverheadResult("submitit", "local", trials=4, parallel=2, wall_s=6.0,
                                latencies_s=(3.0, 1.0, 10.0, 2.0))
    assert r.mean_latency_s == 4.0
    assert r.wall_per_trial_s == 1.5
    assert (r.quantile(0.5), r.quantile(0.9), r.quantile(0.0), r.quantile(1.0)) == (2.0, 10.0, 1.0, 10.0)


def test_table_states_fraction_of_typical_trial() -> None:
    r = overhead.OverheadResult("sweeper", "slurm", trials=2, parallel=1, wall_s=4.0, latencies_s=(1.0, 3.0))
    row = overhead.format_table([r], typical_s=20.0).splitlines()[-1].split()
    assert row[:4] == ["sweeper", "slurm", "2", "1"]
    assert row[-1] == "10.0%"  # mean latency 2 s of a 20 s trial


def test_cli_rejects_unknown_backend_and_bad_counts() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="allowed: local, slurm"):
        overhead._csv("local,pbs", overhead.BACKENDS, "--backends")
    with pytest.raises(SystemExit):
        overhead.parse_args(["--trials", "0"])
    assert overhead.parse_args(["--backends", "slurm", "--drivers", "submitit"]).backends == ["slurm"]


def test_submitit_driver_measures_every_trial(tmp_path: Path) -> None:
    """A real run of the floor driver on local subprocesses: every trial recorded with a positive latency."""
    result = overhead.run_submitit_driver("local", trials=3, parallel=3,
                                          storage=f"sqlite:///{tmp_path / 's.db'}", workdir=tmp_path)
    assert (result.trials, len(result.latencies_s)) == (3, 3)
    assert all(0.0 < lat < result.wall_s + 1e-6 for lat in result.latencies_s)

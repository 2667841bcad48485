"""``sweep progress`` and ``sweep results`` on a big study: both must answer in under TARGET_S seconds on
10,000 trials (issue 21), on SQLite and on a journal file.

    python benchmarks/study_size.py [--trials 10000] [--storages sqlite,journal] [--repeats 3] [--keep DIR]

The study is written once per storage into a temporary folder: trials as our driver leaves them (params of a
four-parameter space, one objective, the record's metrics and the driver's attrs as user attrs; 85 % complete,
10 % failed with a reason, 5 % pruned). SQLite is filled with bulk inserts into Optuna's tables (one commit;
Optuna's per-trial API needs ~14 ms a trial), the journal through Optuna's own ``add_trials``. Each command runs
as a subprocess (``python -m sweep.cli ...``: interpreter, imports and all), best of ``--repeats``; the output
says the time and whether the target is MET or NOT MET.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, distribution_to_json
from optuna.trial import FrozenTrial, TrialState

from sweep.progress_bar import progress

TARGET_S = 2.0
STUDY = "big"
DISTRIBUTIONS = {"lr": FloatDistribution(1e-5, 1e-1, log=True), "weight_decay": FloatDistribution(0.0, 0.1),
                 "temperature": FloatDistribution(0.05, 1.0),
                 "method": CategoricalDistribution(["simclr", "barlow_twins", "vicreg"])}
METRICS = ("rankme", "rankme_topk", "alpha_req", "alpha_req_fit_r2", "effective_rank", "ssl_loss", "knn_accuracy",
           "linear_accuracy", "uniformity", "alignment", "epochs_run", "train_seconds")


def _state(number: int) -> TrialState:
    return TrialState.FAIL if number % 10 == 3 else TrialState.PRUNED if number % 20 == 7 else TrialState.COMPLETE


def realistic_trial(number: int, sweep_dir: str = "/scratch/sweeps/big") -> FrozenTrial:
    """One trial as the driver stores it: params, value, metric_* and bookkeeping user attrs, times."""
    state = _state(number)
    method = DISTRIBUTIONS["method"].choices[number % 3]
    params = {"lr": 1e-4 * (1 + number % 50), "weight_decay": (number % 11) / 110, "temperature": 0.1 + (number % 9) / 10,
              "method": method}
    run_dir = f"{sweep_dir}/{number}"
    attrs: dict[str, Any] = {"driver": "node12:4242:2026-01-01T00:00:00+00:00", "method": method,
                             "job_id": str(900000 + number), "run_dir": run_dir, "launcher": "slurm",
                             "job_folder": f"{sweep_dir}/.submitit/%j", "submitted": True,
                             "submitting": {"run_dir": run_dir, "job_name": f"sweep-big-{number}", "launcher": "slurm"}}
    if state == TrialState.FAIL:
        attrs["failure_reason"] = "crashed: worker killed by SIGKILL (exit 137); last stderr line: Killed"
    else:
        attrs["record_path"] = f"{run_dir}/result.json"
        attrs.update({f"metric_{m}": float((number * 7 + i) % 101) / 10 for i, m in enumerate(METRICS)})
    start = dt.datetime(2026, 1, 1) + dt.timedelta(minutes=number)
    return _frozen(number, state, params, attrs, start)

def _frozen(number: int, state: TrialState, params: dict[str, Any], attrs: dict[str, Any],
            start: dt.datetime) -> FrozenTrial:
    value = float((number * 37) % 1000) / 10 if state == TrialState.COMPLETE else None
    return FrozenTrial(number=number, state=state, value=value, values=None, datetime_start=start,
                       datetime_complete=start + dt.timedelta(seconds=30 + number % 60), params=params,
                       distributions=DISTRIBUTIONS, user_attrs=attrs, system_attrs={}, intermediate_values={},
                       trial_id=number)


def _study_attrs(n_trials: int) -> dict[str, Any]:
    return {"objectives": ["rankme"], "n_trials": n_trials, "sweep_dir": "/scratch/sweeps/big",
            "sampler": "TPESampler", "driver_id": "node12:4242:2026-01-01T00:00:00+00:00", "driver_heartbeat": 0.0}


def fill_journal(path: Path, n_trials: int) -> str:
    """Through Optuna's API (a journal append is cheap); returns the storage URL."""
    from sweep.study.storage import make_storage

    url = f"journal://{path}"
    study = optuna.create_study(study_name=STUDY, storage=make_storage(url), direction="maximize")
    for key, value in _study_attrs(n_trials).items():
        study.set_user_attr(key, value)
    chunk = 500
    with progress(total=n_trials, desc="journal study", unit="trial") as bar:
        for first in range(0, n_trials, chunk):
            study.add_trials([realistic_trial(i) for i in range(first, min(first + chunk, n_trials))])
            bar.update(min(chunk, n_trials - first))
    return url


def fill_sqlite(path: Path, n_trials: int) -> str:
    """Schema and study through Optuna, the trials as bulk inserts into its tables in one transaction."""
    import sqlalchemy as sa
    from optuna.storages._rdb import models

    url = f"sqlite:///{path}"
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(study_name=STUDY, storage=storage, direction="maximize")
    for key, value in _study_attrs(n_trials).items():
        study.set_user_attr(key, value)
    finite = models.TrialValueModel.TrialValueType.FINITE
    rows: dict[str, list[dict[str, Any]]] = {"trials": [], "trial_params": [], "trial_values": [],
                                             "trial_user_attributes": []}
    for number in range(n_trials):
        t = realistic_trial(number)
        tid = number + 1
        rows["trials"].append({"trial_id": tid, "number": number, "study_id": study._study_id, "state": t.state,
                               "datetime_start": t.datetime_start, "datetime_complete": t.datetime_complete})
        for name, value in t.params.items():
            dist = t.distributions[name]
            rows["trial_params"].append({"trial_id": tid, "param_name": name,
                                         "param_value": dist.to_internal_repr(value),
                                         "distribution_json": distribution_to_json(dist)})
        if t.value is not None:
            rows["trial_values"].append({"trial_id": tid, "objective": 0, "value": t.value, "value_type": finite})
        rows["trial_user_attributes"].extend({"trial_id": tid, "key": k, "value_json": json.dumps(v)}
                                             for k, v in t.user_attrs.items())
    tables = {"trials": models.TrialModel, "trial_params": models.TrialParamModel,
              "trial_values": models.TrialValueModel, "trial_user_attributes": models.TrialUserAttributeModel}
    with storage.engine.begin() as conn:
        for name, model in tables.items():
            conn.execute(sa.insert(model.__table__), rows[name])
    storage.engine.dispose()
    return url


def time_command(args: list[str], repeats: int) -> tuple[float, str]:
    """Best wall time of ``python -m sweep.cli <args>`` over ``repeats`` runs, and its output's first line."""
    best, first_line = float("inf"), ""
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "sweep.cli", *args], capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"sweep {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        best = min(best, elapsed)
        first_line = proc.stdout.strip().splitlines()[0][:100] if proc.stdout.strip() else ""
    return best, first_line


def main(argv: list[str] | None = None) -> list[tuple[str, str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--storages", default="sqlite,journal")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="write the studies here and keep them")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    root = args.keep or Path(tempfile.mkdtemp(prefix="sweep-study-size-", dir="/var/tmp"))
    root.mkdir(parents=True, exist_ok=True)
    fillers = {"sqlite": lambda: fill_sqlite(root / "study.db", args.trials),
               "journal": lambda: fill_journal(root / "study.log", args.trials)}
    measured = []
    for kind in [k.strip() for k in args.storages.split(",") if k.strip()]:
        t0 = time.perf_counter()
        url = fillers[kind]()
        print(f"{kind}: {args.trials} trials written in {time.perf_counter() - t0:.1f} s ({url})", flush=True)
        for command in ("progress", "results"):
            seconds, line = time_command([command, "--storage", url, "--study", STUDY], args.repeats)
            verdict = "MET" if seconds < TARGET_S else "NOT MET"
            print(f"  sweep {command:<8} {seconds:6.2f} s  (target < {TARGET_S:g} s: {verdict})  | {line}", flush=True)
            measured.append((kind, command, seconds))
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return measured


if __name__ == "__main__":
    main()

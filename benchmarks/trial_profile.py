"""Where one no-op trial's time goes between Optuna's ``ask`` and ``tell`` (docs/ARCHITECTURE.md, "Per-trial
overhead"): the driver's steps timed in-process by wrapping them, the worker's by running it on a kept payload.

    python benchmarks/trial_profile.py [--trials 16] [--parallel 4] [--backend local|slurm] [--worker-runs 5] [--keep]

Driver side: the no-op sweep of benchmarks/overhead.py runs in this process with each step wrapped in a timer
(compose, payload pickling + signing, process start / sbatch, storage writes and reads, progress lines, poll
sleeps); totals are divided by the trials. Worker side (local launcher): ``python -m sweep.launch.worker`` on one
of the sweep's payloads (the driver's HMAC key is fixed through SWEEP_WORKER_KEY, so it verifies), timing the
interpreter with its imports (``-X importtime``), unpickling and the trial itself. Job side (SLURM launcher): each
trial's job files give its timeline (``slurm_job_times``): pickle written -> ``srun`` start (log file created) ->
submitit's "Starting" log line -> result pickle -> ``tell``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TIMES: dict[str, list[float]] = defaultdict(list)


def _wrap(owner: Any, name: str, label: str) -> None:
    """Replace ``owner.name`` by a version that adds its wall time to ``TIMES[label]`` (outermost call only)."""
    original = getattr(owner, name, None)
    if original is None:  # not in this version of the code
        return
    depth = {"n": 0}

    def timed(*args: Any, **kwargs: Any) -> Any:
        depth["n"] += 1
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            depth["n"] -= 1
            if depth["n"] == 0:
                TIMES[label].append(time.perf_counter() - t0)

    setattr(owner, name, timed)


def _instrument(backend: str) -> None:
    """Wrap the steps of one trial's path; a step's label says what it is in the table."""
    import optuna
    from optuna.storages import RDBStorage

    from sweep.launch import base, compose, trial
    from sweep.study import loop, sweeper

    _wrap(trial, "compose_trial_config", "compose trial config (Hydra)")
    _wrap(base, "compose_trial_config", "compose trial config (Hydra)")
    _wrap(compose.ComposeCache, "_compose_fresh", "compose trial config (Hydra)")
    _wrap(compose.ComposeCache, "_patched", "compose: patch the cached shape's config")
    _wrap(base, "redact_config", "redact passwords in the config")
    _wrap(base, "_redacted_singleton_state", "Hydra singleton state (copy + redact)")
    _wrap(base.TrialLauncher, "payload", "payload: compose + redact + singleton state")
    _wrap(base.TrialLauncher, "intents", "submit intents (run dir)")
    _wrap(loop, "progress_line", "progress line (counts + best)")
    if backend == "local":
        from sweep.launch import local

        _wrap(local, "pickle_signed", "pickle + sign payload")
        _wrap(local.LocalLauncher, "_spawn", "start worker process (incl. pickle + write)")
    else:
        from sweep.launch import slurm

        _wrap(slurm.SlurmLauncher, "_start", "sbatch (incl. pickling)")
    _wrap(optuna.Study, "ask", "storage: ask")
    _wrap(optuna.Study, "tell", "storage: tell")
    _wrap(optuna.Study, "get_trials", "storage: get_trials (all trials)")
    from sweep.study import attrs

    _wrap(attrs, "_write_in_one_transaction", "storage: user attrs, several in one transaction")
    for method in ("set_trial_user_attr", "get_trial", "get_all_trials", "set_study_user_attr"):
        _wrap(RDBStorage, method, f"storage: {method}")
    _wrap(loop.time, "sleep", "driver sleeps (poll interval, claim settle)")
    _wrap(loop._Loop, "run", "whole trial loop (first ask -> last tell)")
    _wrap(sweeper.AskTellSweeper, "prepare", "start-up: checks + validation composes")
    _wrap(sweeper.AskTellSweeper, "open_study", "start-up: open study + claim (settle sleep)")
    _wrap(sweeper, "_export_quietly", "end: export trials.parquet + csv")


def run_driver(backend: str, trials: int, parallel: int, workdir: Path) -> float:
    """The no-op sweep in this process; returns its wall time."""
    import runpy

    sys.argv = [str(HERE / "noop_app.py"), "--multirun", f"hydra/launcher=sweep_{backend}",
                f"hydra.sweeper.n_trials={trials}", f"hydra.sweeper.n_jobs={parallel}",
                f"hydra.sweeper.storage='sqlite:///{workdir / 'study.db'}'", "hydra.sweeper.study_name=profile",
                f"hydra.sweep.dir='{workdir / 'multirun'}'"]
    if backend == "slurm":
        sys.argv += ["hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10"]
    os.chdir(workdir)
    t0 = time.perf_counter()
    try:
        runpy.run_path(str(HERE / "noop_app.py"), run_name="__main__")  # as `python noop_app.py` runs it
    except SystemExit as err:
        if err.code not in (0, None):
            raise
    return time.perf_counter() - t0


def time_worker(payload: Path, runs: int) -> dict[str, float]:
    """Median seconds of: the whole worker process, its imports (``-X importtime``) and interpreter start-up."""
    env = {**os.environ}
    walls, imports, bare = [], [], []
    for _ in range(runs):
        (payload.parent / "result.pkl").unlink(missing_ok=True)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "sweep.launch.worker", str(payload)],
                              env=env, capture_output=True, text=True, check=False)
        walls.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise RuntimeError(f"worker failed: {proc.stderr[-2000:]}")
        imports.append(sum(int(m) for m in re.findall(r"import time:\s+(\d+) \|", proc.stderr)) / 1e6)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append(time.perf_counter() - t0)
    return {"worker process, whole (start -> result.pkl written)": statistics.median(walls),
            "  of which: imports (-X importtime, self times summed)": statistics.median(imports),
            "  of which: bare interpreter start-up (python -c pass)": statistics.median(bare)}


SLURM_PHASES = ("job: ask -> pickle written (compose, sbatch)", "job: pickle -> srun start (SLURM scheduling)",
                "job: srun -> submitit 'Starting' (interpreter, imports)", "job: 'Starting' -> result (unpickle, trial)",
                "job: result pickle -> tell (driver)")


def slurm_job_times(workdir: Path) -> dict[str, float]:
    """Mean seconds of each SLURM_PHASES step over the sweep's trials, read from each trial's job folder."""
    import optuna
    from submitit.core.utils import JobPaths

    from sweep.study import attrs as schema

    study = optuna.load_study(study_name="profile", storage=f"sqlite:///{workdir / 'study.db'}")
    phases: list[tuple[float, ...]] = []
    for trial in study.trials:
        pattern, job_id = trial.user_attrs.get(schema.JOB_FOLDER), trial.user_attrs.get(schema.JOB_ID)
        if not pattern or not job_id:
            continue
        folder = JobPaths(str(pattern), job_id=str(job_id)).folder  # submitit's own %j / %A_%a substitution
        stamps = _job_stamps(folder) if trial.datetime_complete and folder.is_dir() else None
        if stamps:
            marks = (trial.datetime_start.timestamp(), *stamps, trial.datetime_complete.timestamp())
            phases.append(tuple(b - a for a, b in itertools.pairwise(marks)))
    return {label: statistics.fmean(p[i] for p in phases) for i, label in enumerate(SLURM_PHASES)} if phases else {}


def _job_stamps(folder: Path) -> tuple[float, float, float, float] | None:
    """(pickle written, srun start, submitit's "Starting", result written). The srun start is the error log's
    mtime: srun creates it, and a no-op trial writes nothing there."""
    pickles, logs, results = (sorted(folder.glob(f"*{end}")) for end in ("_submitted.pkl", "_0_log.out", "_result.pkl"))
    err_logs = sorted(folder.glob("*_0_log.err"))
    if not (pickles and logs and results and err_logs):
        return None
    found = re.search(r"\((\S+ \S+)\) - Starting", logs[0].read_text())
    if found is None:
        return None
    starting = dt.datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return pickles[0].stat().st_mtime, err_logs[0].stat().st_mtime, starting, results[0].stat().st_mtime


def report(wall: float, trials: int, worker: dict[str, float]) -> str:
    rows = [f"{'step':<58} {'calls/trial':>11} {'ms/trial':>9} {'total s':>8}", "-" * 90]
    for label, samples in sorted(TIMES.items(), key=lambda kv: -sum(kv[1])):
        rows.append(f"{label:<58} {len(samples) / trials:>11.1f} {1000 * sum(samples) / trials:>9.1f} "
                    f"{sum(samples):>8.2f}")
    rows.append(f"{'driver wall / trial (whole sweep, start-up included)':<58} {'':>11} {1000 * wall / trials:>9.1f} "
                f"{wall:>8.2f}")
    for label, seconds in worker.items():
        rows.append(f"{label:<58} {'1':>11} {1000 * seconds:>9.1f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--backend", choices=("local", "slurm"), default="local")
    parser.add_argument("--worker-runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the sweep's folder (payloads, study)")
    args = parser.parse_args(argv)
    os.environ.setdefault("SWEEP_WORKER_KEY", secrets.token_hex(32))  # the worker re-run below verifies with it
    os.environ.setdefault("SWEEP_PROGRESS", "0")
    workdir = Path(tempfile.mkdtemp(prefix="sweep-profile-", dir="/var/tmp"))
    _instrument(args.backend)
    wall = run_driver(args.backend, args.trials, args.parallel, workdir)
    payloads = sorted((workdir / "multirun" / ".submitted").glob("trial_*/payload.pkl"))
    if args.backend == "local":
        worker = time_worker(payloads[0], args.worker_runs) if payloads else {}
    else:
        worker = slurm_job_times(workdir)
    text = report(wall, args.trials, worker)
    print(f"{args.trials} no-op trials, {args.parallel} in flight, {args.backend} launcher"
          f"{f'; kept {workdir}' if args.keep else ''}")
    print(text)
    if not args.keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return text


if __name__ == "__main__":
    main()

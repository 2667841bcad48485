"""Issue 18, item 7, on a REAL SLURM (skipped with the reason when none answers): the README's SLURM example runs
with the values its comment says to change on a CPU-only cluster; a sweep whose submissions SLURM refuses for
resources (a GRES the nodes lack, a partition that does not exist) stops after the first refusal with sbatch's
reason and exit 1, nothing counted, its trials queued for a rerun; and the start line tells how many trials are
in flight from hydra.launcher.array_parallelism and hydra.sweeper.n_jobs."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweep.study.resume import is_counted
from sweep.study.storage import make_storage

ROOT = Path(__file__).resolve().parents[2]
NOOP_APP = ROOT / "benchmarks" / "noop_app.py"  # n_jobs: 4 in its config


def _noop_sweep(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(NOOP_APP), "--multirun", "hydra/launcher=sweep_slurm", "hydra.sweeper.n_trials=8",
           f"hydra.sweeper.storage=sqlite:///{tmp_path / 's.db'}", "hydra.sweeper.study_name=res",
           f"hydra.sweep.dir={tmp_path / 'multirun'}", "hydra.launcher.cpus_per_task=1",
           "hydra.launcher.timeout_min=10", *extra]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}  # as a user runs it
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**env, "OMP_NUM_THREADS": "1"})


def _trials(db: Path, name: str = "res") -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=make_storage(f"sqlite:///{db}")).trials


@pytest.mark.slow
@pytest.mark.parametrize(("case", "reason"), [("gres", "Invalid generic resource (gres) specification"),
                                              ("partition", "invalid partition")])
def test_refused_resources_stop_the_sweep_at_the_first_submission(slurm_cluster, tmp_path: Path, case: str,
                                                                  reason: str) -> None:
    extra = ([f"hydra.launcher.partition={slurm_cluster.partition}", "hydra.launcher.gpus_per_node=1"]
             if case == "gres" else ["hydra.launcher.partition=no_such_partition"])
    done = _noop_sweep(tmp_path, *extra, "hydra.launcher.array_parallelism=16")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "8 trials, 4 at a time; hydra.sweeper.n_jobs=4 limits hydra.launcher.array_parallelism=16" \
        in done.stdout, done.stdout
    stopped = [line for line in done.stderr.splitlines() if line.startswith("[sweep] stopped:")]
    assert len(stopped) == 1 and "4 trial(s) could not run: submit failed" in stopped[0], done.stderr[-3000:]
    assert reason.lower() in stopped[0].lower() and "Traceback" not in done.stderr
    trials = _trials(tmp_path / "s.db")
    assert len(trials) == 8  # the first array only: 4 refused (not counted) and 4 queued again
    assert not any(is_counted(t) and t.state == TrialState.FAIL for t in trials)
    assert sum(t.state == TrialState.WAITING for t in trials) == 4


@pytest.mark.slow
def test_array_parallelism_sets_the_trials_in_flight_unless_n_jobs_is_given(slurm_cluster, tmp_path: Path) -> None:
    readme = _readme_slurm_command(slurm_cluster.partition)
    done = subprocess.run(readme, shell=True, capture_output=True, text=True, timeout=900, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "SWEEP_PROGRESS": "0",
                               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"})
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{readme}\n{output[-4000:]}"
    assert re.search(r"2 trials, 16 at a time \(hydra\.launcher\.array_parallelism=16", done.stdout), done.stdout
    trials = _trials(tmp_path / "sweeps" / "slurm.db", "slurm")  # the README's relative storage
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert all(t.user_attrs.get("launcher") == "slurm" and t.user_attrs.get("job_id") for t in trials)


def _readme_slurm_command(partition: str) -> str:
    """The README's SLURM command with exactly the changes its comment names for a CPU-only cluster (its
    partition, no gpus_per_node) and the test budgets (the tiny demo trial, 2 trials)."""
    from test_readme_commands import README, readme_commands

    (command,) = [c for c in readme_commands(README.read_text()) if "hydra/launcher=sweep_slurm" in c]
    for old, new in ((" hydra.launcher.gpus_per_node=1", ""), ("hydra.launcher.partition=gpu",
                                                              f"hydra.launcher.partition={partition}"),
                     ("experiment=demo ", "experiment=demo_tiny "), ("hydra.sweeper.n_trials=32",
                                                                      "hydra.sweeper.n_trials=2")):
        assert old in command, f"{old!r} is no longer in the README's SLURM command: {command}"
        command = command.replace(old, new)
    return command

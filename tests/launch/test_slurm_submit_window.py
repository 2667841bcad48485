"""Issue 19, item 1, on the real SLURM: a driver killed (kill -9) or stopped (SIGTERM) right after ``sbatch``
returned and before the job ids were stored. The jobs carry a job name recorded on their trials before the
submission, so the rerun adopts them (kill -9) and the stop cancels them (SIGTERM): 0 lost, 0 duplicated."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
NOOP_APP = ROOT / "benchmarks" / "noop_app.py"
STUDY = "window"
# The driver with one fault injected: its launcher's _start returns the jobs, then the driver is hit at once.
DRIVER = f"""
import os, runpy, signal, sys
from sweep.launch import slurm
original = slurm.SlurmLauncher._start
def start(self, payloads, idxs):
    handles = original(self, payloads, idxs)
    if not os.environ.get("WINDOW_HIT_DONE"):
        os.environ["WINDOW_HIT_DONE"] = "1"
        os.kill(os.getpid(), getattr(signal, os.environ["WINDOW_SIGNAL"]))
    return handles
slurm.SlurmLauncher._start = start
sys.argv = [{str(NOOP_APP)!r}, *sys.argv[1:]]
runpy.run_path({str(NOOP_APP)!r}, run_name="__main__")
"""


def _cmd(slurm_cluster, tmp_path: Path, storage: str, *extra: str, hit: bool = True) -> list[str]:
    head = [sys.executable, "-c", DRIVER] if hit else [sys.executable, str(NOOP_APP)]
    return [*head, "--multirun", "hydra/launcher=sweep_slurm", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
            f"hydra.sweeper.storage='{storage}'", f"hydra.sweeper.study_name={STUDY}",
            f"hydra.sweep.dir='{tmp_path / 'multirun'}'", f"hydra.launcher.partition={slurm_cluster.partition}",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10", *extra]


def _env(signal_name: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "WINDOW_SIGNAL": signal_name}


def _trials(storage: str) -> list[optuna.trial.FrozenTrial]:
    from sweep.study.storage import make_storage

    return optuna.load_study(study_name=STUDY, storage=make_storage(storage)).trials


def _jobs_named(names: set[str]) -> list[str]:
    from sweep.launch.slurm import find_jobs_by_name

    return sorted({job for name in names for job in find_jobs_by_name(name)})


def test_kill_9_after_sbatch_rerun_adopts_the_jobs(slurm_cluster, tmp_path: Path) -> None:
    storage = f"journal://{tmp_path / 'journal.log'}"
    killed = subprocess.run(_cmd(slurm_cluster, tmp_path, storage, "sleep_s=8"), cwd=tmp_path, env=_env("SIGKILL"),
                            capture_output=True, text=True, timeout=180)
    assert killed.returncode == -9, killed.stderr[-3000:]
    trials = _trials(storage)
    assert [t.state for t in trials] == [TrialState.RUNNING] * 2
    assert not any(t.user_attrs.get("job_id") for t in trials)  # the kill fell in the window
    names = {t.user_attrs["submitting"]["job_name"] for t in trials}
    submitted = _jobs_named(names)
    assert len(submitted) == 2, submitted  # the jobs exist and nobody tracks them yet

    rerun = subprocess.run(_cmd(slurm_cluster, tmp_path, storage, "sleep_s=8", hit=False), cwd=tmp_path,
                           env=_env("SIGKILL"), capture_output=True, text=True, timeout=300)
    output = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, output[-4000:]
    assert output.count("adopted job") == 2 and "never submitted" not in output, output[-4000:]
    trials = _trials(storage)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2  # none requeued, none lost
    assert sorted(t.user_attrs["job_id"] for t in trials) == submitted
    records = [json.loads(Path(t.user_attrs["record_path"]).read_text()) for t in trials]
    assert len({str(r["slurm_job_id"]) for r in records}) == 2  # each trial ran once, in its own job
    assert "submitted trials" not in output  # the rerun started no job of its own: 2 trials, 2 jobs


@pytest.mark.parametrize(("signal_name", "codes"), [("SIGTERM", (143,)), ("SIGINT", (130, -2, 1))])
def test_stop_signal_after_sbatch_cancels_the_jobs(slurm_cluster, tmp_path: Path, signal_name: str,
                                                   codes: tuple[int, ...]) -> None:
    storage = f"journal://{tmp_path / 'journal.log'}"
    stopped = subprocess.run(_cmd(slurm_cluster, tmp_path, storage, "sleep_s=120"), cwd=tmp_path,
                             env=_env(signal_name), capture_output=True, text=True, timeout=180)
    output = stopped.stdout + stopped.stderr
    assert stopped.returncode in codes, output[-4000:]
    assert f"driver stopping ({signal_name}): cancelling 2 running trial(s)" in output, output[-4000:]
    trials = _trials(storage)
    names = {t.user_attrs["submitting"]["job_name"] for t in trials if "submitting" in t.user_attrs}
    deadline = time.time() + 60
    while (live := subprocess.run(["squeue", "-h", "-r", "-o", "%i %j"], capture_output=True, text=True).stdout)\
            and any(name in live for name in names) and time.time() < deadline:
        time.sleep(0.5)
    assert not any(name in live for name in names), live  # no job left running untracked

    rerun = subprocess.run(_cmd(slurm_cluster, tmp_path, storage, "sleep_s=0", hit=False), cwd=tmp_path,
                           env=_env(signal_name), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-4000:]
    from sweep.study.resume import is_counted

    counted = [t for t in _trials(storage) if is_counted(t)]
    assert len(counted) == 2 and all(t.state == TrialState.COMPLETE for t in counted)


def test_rerun_after_an_unsafe_submitit_folder_tells_the_finished_results(slurm_cluster, tmp_path: Path) -> None:
    """The driver is lost in the submit window, its jobs finish, then ``.submitit`` is found group/world-
    writable: adoption is refused (its pickles are not read), yet the finished results in the run dirs are
    told, not thrown away, and nothing runs a second time."""
    storage = f"journal://{tmp_path / 'journal.log'}"
    killed = subprocess.run(_cmd(slurm_cluster, tmp_path, storage, "sleep_s=2"), cwd=tmp_path, env=_env("SIGKILL"),
                            capture_output=True, text=True, timeout=180)
    assert killed.returncode == -9, killed.stderr[-3000:]
    names = {t.user_attrs["submitting"]["job_name"] for t in _trials(storage)}
    run_dirs = [Path(t.user_attrs["run_dir"]) for t in _trials(storage)]
    deadline = time.time() + 120
    while not all((d / "result.json").exists() for d in run_dirs) and time.time() < deadline:
        time.sleep(0.5)
    assert all((d / "result.json").exists() for d in run_dirs), "the jobs never finished"
    (tmp_path / "multirun" / ".submitit").chmod(0o777)
    rerun = subprocess.run(_cmd(slurm_cluster, tmp_path, storage, "sleep_s=2", hit=False), cwd=tmp_path,
                           env=_env("SIGKILL"), capture_output=True, text=True, timeout=300)
    output = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, output[-4000:]
    assert "cannot look up job" in output or "cannot re-attach" in output, output[-4000:]
    assert output.count("its lost job finished") == 2, output[-4000:]
    trials = _trials(storage)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    # No job of the rerun: every job under the lost driver's names is a task of its one array. (Counting them is
    # not a test: sacct can list one task of a finished array before the other.)
    assert "submitted trials" not in output
    assert len({job.split("_")[0] for job in _jobs_named(names)}) <= 1, _jobs_named(names)

"""Issue 18, item 4: Ctrl-C and exit codes, on real processes. A sweep or the demo sent SIGINT prints one line
(no traceback), cancels its running trials, leaves none RUNNING, says how to resume and exits 130; the outer
`sweep demo` forwards the signal and waits for its driver; a rerun resumes each requeued trial in the folder of
its own number; a sweep where no trial completed, and a `select` that chose nothing, exit non-zero."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from optuna.trial import TrialState

from sweep.study.resume import is_counted

sys.path.insert(0, str(Path(__file__).parents[1] / "apps"))
from runner import APPS, app_command, app_env, base_overrides, load, run_app  # noqa: E402
from _waiting import wait_for  # noqa: E402

SPACE = "+search_space=demo"


def _in_flight(storage: str, name: str = "t") -> list[int]:
    """Worker pids of the trials RUNNING with a job (0 while the study does not exist yet)."""
    try:
        trials = load(storage, name).get_trials()
    except Exception:  # noqa: BLE001 - not created yet
        return []
    return [int(t.user_attrs["job_id"]) for t in trials if t.state == TrialState.RUNNING and "job_id" in t.user_attrs]


def _interrupt(command: list[str], storage: str, name: str, cwd: Path, env: dict[str, str]
               ) -> tuple[subprocess.CompletedProcess, list[int]]:
    """Start ``command`` as a terminal would (its own process group), wait for two trials in flight, then
    Ctrl-C the whole group; returns the finished process and the worker pids that were running."""
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        wait_for(lambda: len(_in_flight(storage, name)) == 2, 240, "two trials in flight")
        pids = _in_flight(storage, name)
        os.killpg(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(command, proc.returncode, output, ""), pids


def _assert_clean_stop(done: subprocess.CompletedProcess, pids: list[int], storage: str, name: str) -> None:
    assert done.returncode == 130, done.stdout[-3000:]
    assert "Traceback" not in done.stdout and "KeyboardInterrupt" not in done.stdout, done.stdout[-3000:]
    lines = [line for line in done.stdout.splitlines() if "rerun the same command to resume" in line
             and "stopping" in line]
    assert len(lines) == 1 and "driver stopping (SIGINT): cancelling 2 running trial(s)" in lines[0], done.stdout
    assert not any(Path(f"/proc/{p}").exists() for p in pids)  # the workers were cancelled
    trials = load(storage, name).get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    requeued = [t for t in trials if t.state == TrialState.FAIL and not is_counted(t)]
    assert len(requeued) == 2 and len([t for t in trials if t.state == TrialState.WAITING]) == 2


@pytest.mark.slow
def test_ctrl_c_on_a_sweep_then_rerun_resumes_in_folders_named_by_trial(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    args = [*base_overrides(tmp_path, storage), SPACE, "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=2",
            "hydra.sweeper.sampler.seed=1"]
    done, pids = _interrupt(app_command(*args, "sleep=60"), storage, "t", APPS, app_env())
    _assert_clean_stop(done, pids, storage, "t")
    stopped = [t.number for t in load(storage).get_trials() if t.state == TrialState.FAIL]
    for number in stopped:  # what a checkpoint would be: it must follow the trial to its new folder
        (tmp_path / "out" / str(number)).mkdir(parents=True, exist_ok=True)
        (tmp_path / "out" / str(number) / "checkpoint.marker").write_text(str(number))

    rerun = run_app(*args, "sleep=0", timeout=180)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    trials = load(storage).get_trials()
    counted = [t for t in trials if is_counted(t)]
    assert len(counted) == 3 and all(t.state == TrialState.COMPLETE for t in counted)
    for trial in counted:
        assert trial.user_attrs["run_dir"] == str(tmp_path / "out" / str(trial.number))
    resumed = {t.user_attrs["requeued_from"]: t.number for t in counted if "requeued_from" in t.user_attrs}
    assert sorted(resumed) == sorted(stopped)
    for old, new in resumed.items():
        assert (tmp_path / "out" / str(new) / "checkpoint.marker").read_text() == str(old)
        assert not (tmp_path / "out" / str(old)).exists()


@pytest.mark.slow
def test_ctrl_c_on_the_demo_forwards_waits_and_resumes(tmp_path: Path) -> None:
    from sweep.demo import STUDY_NAME, storage_url

    out = tmp_path / "demo"
    command = [sys.executable, "-m", "sweep.cli", "demo", "--size", "tiny", "--trials", "4", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    storage = storage_url(out)
    done, pids = _interrupt(command, storage, STUDY_NAME, tmp_path, env)
    _assert_clean_stop(done, pids, storage, STUDY_NAME)
    assert "report:" not in done.stdout  # the demo stopped with its sweep

    rerun = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    counted = [t for t in load(storage, STUDY_NAME).get_trials() if is_counted(t)]
    assert len(counted) == 4 and all(t.state == TrialState.COMPLETE for t in counted)


@pytest.mark.slow
def test_sweep_without_a_completed_trial_exits_non_zero_and_select_too(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    env = {k: v for k, v in app_env().items() if k != "HYDRA_FULL_ERROR"}  # what a user sees: no traceback
    proc = subprocess.run(app_command(*base_overrides(tmp_path, storage), SPACE, "mode=raise",
                                      "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
                                      "hydra.sweeper.max_failure_ratio=1.0"),
                          capture_output=True, text=True, timeout=180, env=env, cwd=APPS)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "[sweep] stopped: no trial completed (2 of 2 ended failed or pruned)" in proc.stderr
    assert "RuntimeError: boom: injected failure" in proc.stderr and "Traceback" not in proc.stderr
    select = subprocess.run([sys.executable, "-m", "sweep.cli", "select", "--storage", storage, "--study", "t",
                             "--sweep-dir", str(tmp_path / "out"), "--launcher", "inprocess"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert select.returncode == 1, select.stdout[-3000:] + select.stderr[-3000:]
    assert "sweep select: nothing could be selected" in select.stderr


def test_nothing_selected_reads_the_policies_table(tmp_path: Path) -> None:
    from sweep.cli import _nothing_selected

    assert "wrote no" in (_nothing_selected(tmp_path) or "")
    (tmp_path / "policies.csv").write_text("policy,chosen_trial\noracle,\nrankme_topk,\n")
    assert "no completed trial with a usable readout" in (_nothing_selected(tmp_path) or "")
    (tmp_path / "policies.csv").write_text("policy,chosen_trial\noracle,3\nrankme_topk,\n")
    assert _nothing_selected(tmp_path) is None


def test_move_run_dir_renames_only_a_free_folder(tmp_path: Path) -> None:
    from sweep.launch.trial import RunDirLock
    from sweep.study.adoption import move_run_dir

    old, new = tmp_path / "8", tmp_path / "10"
    old.mkdir()
    (old / "last.pt").write_text("ckpt")
    held = RunDirLock(old).acquire()
    try:
        assert move_run_dir(old, new) is False and old.is_dir() and not new.exists()  # a writer is still there
    finally:
        held.release()
    assert move_run_dir(old, new) is True and (new / "last.pt").read_text() == "ckpt" and not old.exists()
    (tmp_path / "9").mkdir()
    assert move_run_dir(tmp_path / "9", new) is False  # never onto an existing folder
    assert move_run_dir(tmp_path / "nothing", tmp_path / "11") is True  # nothing to carry: a fresh start

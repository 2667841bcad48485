"""Resume after ``kill -9`` of the driver: total == n_trials, nothing lost, nothing run twice."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).parents[1] / "apps"))
from runner import APPS, app_command, app_env, base_overrides, load, run_app  # noqa: E402

from sweep.study.resume import is_counted, pid_alive  # noqa: E402
from _waiting import wait_for  # noqa: E402

pytestmark = pytest.mark.slow




def _states(storage: str) -> list[TrialState]:
    try:
        return [t.state for t in load(storage).get_trials()]
    except Exception:  # noqa: BLE001 - the study may not exist yet
        return []


def _submitted_running(storage: str) -> bool:
    """A trial in flight whose job was already submitted (it has a run dir): the case resume must continue."""
    try:
        return any(t.state == TrialState.RUNNING and "run_dir" in t.user_attrs for t in load(storage).get_trials())
    except Exception:  # noqa: BLE001 - the study may not exist yet
        return False


def test_kill_9_driver_then_rerun(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    args = [*base_overrides(tmp_path, storage), "+search_space=demo", "sleep=2.0", "hydra.sweeper.n_trials=6",
            "hydra.sweeper.n_jobs=2", "hydra.sweeper.sampler.seed=7"]
    driver = subprocess.Popen(app_command(*args), cwd=APPS, env=app_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _states(storage).count(TrialState.COMPLETE) >= 2 and _submitted_running(storage), 90,
                  "2 complete trials and one submitted trial running")
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    study = load(storage)
    orphans = [t for t in study.get_trials() if t.state == TrialState.RUNNING]
    assert orphans, "the driver should have died with trials in flight"
    worker_pids = [int(t.user_attrs["job_id"]) for t in orphans if "job_id" in t.user_attrs]
    wait_for(lambda: not any(pid_alive(p) for p in worker_pids), 10, "workers to die with their driver")
    done_before = {t.number: t.datetime_complete for t in study.get_trials() if t.state == TrialState.COMPLETE}

    proc = run_app(*args, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]

    trials = load(storage).get_trials()
    counted = [t for t in trials if is_counted(t)]
    assert len(counted) == 6 and all(t.state == TrialState.COMPLETE for t in counted)
    by_number = {t.number: t for t in trials}
    resumed = 0
    for orphan in orphans:
        lost = by_number[orphan.number]
        assert lost.state == TrialState.FAIL
        reason = lost.user_attrs["failure_reason"]
        if reason.startswith("driver lost before submission"):  # killed between ask and submit
            assert "job_id" not in orphan.user_attrs and not is_counted(lost)
            continue
        # killed after the submission record but before the job id reached the storage: requeued like the rest
        assert reason.startswith("driver lost: requeued as trial ")
        requeued = by_number[int(reason.rsplit(" ", 1)[1])]
        assert requeued.params == orphan.params and requeued.state == TrialState.COMPLETE
        if "run_dir" in orphan.user_attrs:  # it had been submitted: resume from its folder (checkpoint), which
            old_dir = Path(orphan.user_attrs["run_dir"])  # is renamed to the new trial number (issue 18)
            assert requeued.user_attrs["resumed_run_dir"] == str(old_dir)
            assert requeued.user_attrs["run_dir"] == str(old_dir.parent / str(requeued.number))
            resumed += 1
    assert resumed >= 1
    keys = [tuple(sorted(t.params.items())) for t in counted]
    assert len(set(keys)) == len(keys), "a trial ran twice"
    assert {n: by_number[n].datetime_complete for n in done_before} == done_before  # COMPLETE never re-run
    attrs = load(storage).user_attrs
    assert attrs["driver_pid"] != driver.pid and {"driver_host", "driver_start"} <= set(attrs)

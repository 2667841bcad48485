"""Issue 19, item 4, on the real SLURM: the disk that holds a job's submitit folder (its log, its result
pickle) fills while the job runs. The job cannot write its result pickle nor its log, so nothing in its output
names the full disk; the driver names it (the folder's file system has no space left), and since the trial's own
record reached its run dir on another disk, the trial is told complete from there, not counted as failed and not
run again. Needs root (a real 1 MiB tmpfs) and a SLURM; skipped otherwise."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).parents[1]))
from _disks import fill_disk  # noqa: E402
from _waiting import wait_for  # noqa: E402

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
NOOP_APP = ROOT / "benchmarks" / "noop_app.py"






def _study(storage: str) -> list[optuna.trial.FrozenTrial]:
    from sweep.study.storage import make_storage

    try:
        return optuna.load_study(study_name="full", storage=make_storage(storage)).trials
    except Exception:  # noqa: BLE001 - not created yet
        return []


def test_a_job_whose_log_disk_fills_is_named_and_its_finished_record_told(slurm_cluster, tiny_disk: Path,
                                                                         tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    cmd = [sys.executable, str(NOOP_APP), "--multirun", "hydra/launcher=sweep_slurm", "hydra.sweeper.n_trials=1",
           "hydra.sweeper.n_jobs=1", f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=full",
           f"hydra.sweep.dir={tmp_path / 'multirun'}", f"hydra.launcher.submitit_folder={tiny_disk / '%j'}",
           f"hydra.launcher.partition={slurm_cluster.partition}", "hydra.launcher.cpus_per_task=1",
           "hydra.launcher.timeout_min=10", "hydra.launcher.results_timeout_s=1", "sleep_s=6"]
    driver = subprocess.Popen(cmd, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(t.user_attrs.get("job_id") for t in _study(storage)), 90, "the job submitted")
        job_id = next(t.user_attrs["job_id"] for t in _study(storage))
        wait_for(lambda: "R" in subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%t"], capture_output=True,
                                               text=True).stdout, 60, "the job running")
        fill_disk(tiny_disk)
        out, err = driver.communicate(timeout=180)
    finally:
        driver.kill()
    output = out + err
    assert driver.returncode == 0, output[-4000:]
    assert "disk full (ENOSPC): crashed" in output and "its result is complete in its run dir" in output, \
        output[-4000:]
    trials = _study(storage)
    assert [t.state for t in trials] == [TrialState.COMPLETE]  # told from its record: not failed, not rerun

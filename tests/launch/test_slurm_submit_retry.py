"""Issue 19: a submission SLURM refuses for a passing reason (a busy controller, a submit limit) is retried in the
same run, never running a trial twice (a timed-out ``sbatch`` that queued its job anyway has that job cancelled);
a refusal of the request itself is raised at once. The last test runs a real sweep on the real SLURM behind an
``sbatch`` that refuses twice (the first time after queueing the job) before it lets the real one answer."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweep.launch import submit_retry
from sweep.launch.submit_retry import is_transient, submit_with_retries

ROOT = Path(__file__).resolve().parents[2]
NOOP_APP = ROOT / "benchmarks" / "noop_app.py"
TIMED_OUT = "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation"
LIMIT = ("sbatch: error: QOSMaxSubmitJobPerUserLimit\nsbatch: error: Batch job submission failed: Job violates "
         "accounting/QOS policy (job submit limit, user's size and/or time limits)")
BAD_PARTITION = "sbatch: error: Batch job submission failed: Invalid partition name specified"


@pytest.mark.parametrize(("text", "transient"), [(TIMED_OUT, True), (LIMIT, True), (BAD_PARTITION, False),
                                                 ("Invalid generic resource (gres) specification", False)])
def test_transient_refusals_are_told_from_refusals_of_the_request(text: str, transient: bool) -> None:
    assert is_transient(text) is transient


class _Sbatch:
    """Refuses with the given texts in turn, then answers with a job id."""

    def __init__(self, *refusals: str) -> None:
        self.refusals, self.calls = list(refusals), 0

    def __call__(self) -> str:
        self.calls += 1
        if self.refusals:
            raise RuntimeError(self.refusals.pop(0))
        return "job 42"


def test_a_transient_refusal_is_retried_after_cancelling_what_it_queued() -> None:
    sbatch, slept, cancels = _Sbatch(TIMED_OUT, LIMIT), [], []
    answer = submit_with_retries(sbatch, lambda: cancels.append(1) or ["7"], delays_s=(1.0, 2.0, 3.0),
                                 sleep=slept.append)
    assert answer == "job 42" and sbatch.calls == 3 and slept == [1.0, 2.0] and len(cancels) == 2


def test_a_refusal_of_the_request_is_raised_at_once() -> None:
    sbatch, slept = _Sbatch(BAD_PARTITION), []
    with pytest.raises(RuntimeError, match="Invalid partition"):
        submit_with_retries(sbatch, lambda: [], delays_s=(1.0,), sleep=slept.append)
    assert sbatch.calls == 1 and slept == []


def test_the_last_transient_refusal_is_raised_when_the_tries_run_out() -> None:
    sbatch = _Sbatch(TIMED_OUT, TIMED_OUT, TIMED_OUT)
    with pytest.raises(RuntimeError, match="Socket timed out"):
        submit_with_retries(sbatch, lambda: [], delays_s=(0.0, 0.0), sleep=lambda s: None)
    assert sbatch.calls == 3


def test_a_stop_requested_while_waiting_ends_the_retries() -> None:
    sbatch = _Sbatch(TIMED_OUT, TIMED_OUT)
    try:
        with pytest.raises(RuntimeError, match="Socket timed out"):
            submit_with_retries(sbatch, lambda: [], delays_s=(5.0, 5.0),
                                sleep=lambda s: submit_retry.stop_requested.set())
    finally:
        submit_retry.stop_requested.clear()
    assert sbatch.calls == 1


# The sbatch users get on PATH: the 1st call queues the job for real, then says the socket timed out; the 2nd
# says the controller is busy; from then on the real sbatch answers.
FLAKY_SBATCH = """#!/bin/bash
count_file="$(dirname "$0")/calls"
n=$(( $(cat "$count_file" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$count_file"
if [ "$n" -eq 1 ]; then
  {real} "$@" >> "$(dirname "$0")/orphans"
  echo "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation" >&2
  exit 1
elif [ "$n" -eq 2 ]; then
  echo "sbatch: error: Slurm temporarily unable to accept job, sleeping and retrying" >&2
  exit 1
fi
exec {real} "$@"
"""


@pytest.mark.slurm
@pytest.mark.slow
def test_a_sweep_rides_out_refused_sbatch_calls_on_the_real_slurm(slurm_cluster, tmp_path: Path) -> None:
    import shutil

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "sbatch"
    fake.write_text(FLAKY_SBATCH.format(real=shutil.which("sbatch")))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    storage = f"sqlite:///{tmp_path / 's.db'}"
    cmd = [sys.executable, str(NOOP_APP), "--multirun", "hydra/launcher=sweep_slurm", "hydra.sweeper.n_trials=2",
           "hydra.sweeper.n_jobs=2", f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=retry",
           f"hydra.sweep.dir={tmp_path / 'multirun'}", f"hydra.launcher.partition={slurm_cluster.partition}",
           "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10", "sleep_s=0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert (bin_dir / "calls").read_text().strip() == "3"  # one array: two refusals, then the real answer
    (orphan,) = [line.split()[-1] for line in (bin_dir / "orphans").read_text().splitlines() if "job" in line]
    assert output.count("sbatch refused the submission") == 2, output[-4000:]
    assert f"cancelled 2 job(s) it queued anyway ({orphan}_0, {orphan}_1)" in output, output[-4000:]
    from sweep.study.resume import is_counted
    from sweep.study.storage import make_storage

    trials = optuna.load_study(study_name="retry", storage=make_storage(storage)).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2 and all(is_counted(t) for t in trials)
    jobs = {t.user_attrs["job_id"].split("_")[0] for t in trials}
    assert jobs and orphan not in jobs  # the trials ran in the retried array, not in the orphan
    records = [json.loads(Path(t.user_attrs["record_path"]).read_text()) for t in trials]
    assert len({str(r["slurm_job_id"]) for r in records}) == 2  # each trial ran once
    state = subprocess.run(["sacct", "-n", "-X", "-P", "-j", orphan, "-o", "State"], capture_output=True,
                           text=True).stdout
    queued = subprocess.run(["squeue", "-h", "-r", "-j", orphan], capture_output=True, text=True).stdout
    assert "CANCELLED" in state or not queued.strip(), (state, queued)  # the orphan never runs a trial

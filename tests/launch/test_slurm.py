"""Integration tests against a REAL SLURM (launchers/slurm/start-local-slurm.sh) through submitit.

They check what sweeps rely on: job arrays run in parallel up to their limit and return the right results, a
``Checkpointable`` job preempted mid-run is requeued by SLURM and resumes from its checkpoint, and our sweeper
runs its trials there (job array, requeue).
Everything skips (with the reason) when no SLURM controller answers.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import optuna
import pytest
import submitit
from _waiting import wait_for  # noqa: E402

pytestmark = pytest.mark.slurm

# The job processes cannot import this test module by name: ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

ROOT = Path(__file__).resolve().parents[2]
NOOP_APP = ROOT / "benchmarks" / "noop_app.py"
ARRAY_SIZE = 6
ARRAY_PARALLELISM = 3
COUNT_TO = 24  # the checkpointed job adds 0..COUNT_TO-1, one step every STEP_S
STEP_S = 0.4


# ----------------------------------------------------------------------------- job functions (run on SLURM)
def square_with_ids(x: int, stamp_dir: str, sleep_s: float) -> dict[str, object]:
    """x**2 plus the SLURM ids it ran under; writes start/end times so the test can see the overlap."""
    start = time.time()
    time.sleep(sleep_s)
    Path(stamp_dir, f"{x}.txt").write_text(f"{start} {time.time()}")
    return {"value": x * x, "array_job_id": os.environ.get("SLURM_ARRAY_JOB_ID"),
            "task_id": os.environ.get("SLURM_ARRAY_TASK_ID")}


class ResumableSum(submitit.helpers.Checkpointable):
    """Adds 0..n-1 slowly; on preemption submitit calls ``checkpoint`` and requeues it from the step reached.

    Every start appends ``<job id> <first step>`` to ``log_path``, so the test can prove that the second run
    began where the first stopped instead of from 0.
    """

    def __init__(self, log_path: str) -> None:
        self.log_path = log_path
        self.position = (0, 0)  # (next step, running sum)

    def __call__(self, n: int, start: int = 0, total: int = 0) -> int:
        env = submitit.JobEnvironment()
        with open(self.log_path, "a") as log:
            log.write(f"{env.job_id} {start}\n")
        self.position = (start, total)
        for step in range(start, n):
            time.sleep(STEP_S)
            total += step
            self.position = (step + 1, total)
        return total

    def checkpoint(self, n: int, start: int = 0, total: int = 0) -> submitit.helpers.DelayedSubmission:
        step, reached = self.position
        return submitit.helpers.DelayedSubmission(ResumableSum(self.log_path), n, step, reached)


# ----------------------------------------------------------------------------- helpers
def _executor(folder: Path, partition: str, **params: object) -> submitit.AutoExecutor:
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    defaults = {"timeout_min": 60, "slurm_partition": partition, "cpus_per_task": 1}
    executor.update_parameters(**{**defaults, **params})
    return executor




def _log_lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    """Largest number of intervals open at one instant."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = current = 0
    for _, delta in events:
        current += delta
        best = max(best, current)
    return best


def _scontrol_field(job_id: str, field: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True,
                         timeout=15).stdout
    for token in out.split():
        if token.startswith(f"{field}="):
            return token.split("=", 1)[1]
    raise AssertionError(f"scontrol show job {job_id} has no {field}= field:\n{out}")


def test_max_overlap_counts_open_intervals() -> None:
    assert _max_overlap([(0, 2), (1, 3), (2.5, 4), (5, 6)]) == 2
    assert _max_overlap([(0, 1), (0, 1), (0, 1)]) == 3
    assert _max_overlap([]) == 0


# ----------------------------------------------------------------------------- tests
@pytest.mark.slow
def test_job_array_returns_results_in_order_within_parallelism(slurm_cluster, tmp_path: Path) -> None:
    stamps = tmp_path / "stamps"
    stamps.mkdir()
    executor = _executor(tmp_path / "jobs", slurm_cluster.partition,
                         slurm_array_parallelism=ARRAY_PARALLELISM)
    xs = list(range(ARRAY_SIZE))
    jobs = executor.map_array(square_with_ids, xs, [str(stamps)] * ARRAY_SIZE, [2.0] * ARRAY_SIZE)

    results = [job.result() for job in jobs]

    assert [r["value"] for r in results] == [x * x for x in xs]
    assert len({r["array_job_id"] for r in results}) == 1, "all tasks must belong to ONE array job"
    assert sorted(int(r["task_id"]) for r in results) == xs
    submission = next((tmp_path / "jobs").glob("*_submission.sh")).read_text()
    assert f"#SBATCH --array=0-{ARRAY_SIZE - 1}%{ARRAY_PARALLELISM}" in submission
    intervals = [tuple(map(float, (stamps / f"{x}.txt").read_text().split())) for x in xs]
    overlap = _max_overlap(intervals)
    assert 1 < overlap <= ARRAY_PARALLELISM, f"array tasks overlapped {overlap} at most"


@pytest.mark.slow
def test_checkpointable_job_resumes_after_preemption_signal(slurm_cluster, tmp_path: Path) -> None:
    """submitit's own preemption path: SIGTERM (ignored) then USR2 -> checkpoint -> `scontrol requeue`."""
    log_path = tmp_path / "starts.log"
    executor = _executor(tmp_path / "jobs", slurm_cluster.partition)
    job = executor.submit(ResumableSum(str(log_path)), COUNT_TO)
    wait_for(lambda: log_path.exists(), 60, "the job to start")
    time.sleep(6 * STEP_S)  # let it get a few steps in

    job._interrupt()  # what SLURM sends a submitit job on preemption (submitit's test hook)

    assert job.result() == sum(range(COUNT_TO))
    starts = _log_lines(log_path)
    assert len(starts) == 2, f"expected one requeue, got starts {starts}"
    assert starts[0] == [job.job_id, "0"]
    assert starts[1][0] == job.job_id, "a requeue keeps the job id"
    assert 0 < int(starts[1][1]) < COUNT_TO, "the second run must resume from the checkpointed step"
    assert _scontrol_field(job.job_id, "Restarts") == "1"
    assert "preempted" in Path(job.paths.stderr).read_text()


@pytest.mark.slow
def test_partition_preemption_requeues_and_resumes(slurm_cluster, tmp_path: Path) -> None:
    """Real preemption: a job in the higher-tier partition takes the node; SLURM signals and requeues ours."""
    if "urgent" not in slurm_cluster.partitions:
        pytest.skip("needs the 'urgent' preemptor partition of launchers/slurm/slurm.conf.in")
    log_path = tmp_path / "starts.log"
    low = _executor(tmp_path / "low", slurm_cluster.partition).submit(ResumableSum(str(log_path)), COUNT_TO)
    wait_for(lambda: log_path.exists(), 60, "the low-priority job to start")
    time.sleep(6 * STEP_S)

    high = _executor(tmp_path / "high", "urgent", cpus_per_task=slurm_cluster.cpus)
    urgent_job = high.submit(time.sleep, 1.0)

    assert low.result() == sum(range(COUNT_TO))
    urgent_job.result()
    starts = _log_lines(log_path)
    assert len(starts) == 2, f"expected one preemption, got starts {starts}"
    assert 0 < int(starts[1][1]) < COUNT_TO
    assert int(_scontrol_field(low.job_id, "Restarts")) >= 1


def _kill_self() -> None:
    """A hard crash (like an OOM kill): the job dies without writing a result."""
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def _accounting_enabled() -> bool:
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=15).stdout
    return "accounting_storage/slurmdbd" in out


@pytest.mark.slow
def test_hard_crash_is_reported_not_waited_for(slurm_cluster, tmp_path: Path) -> None:
    """With accounting, submitit learns from sacct that a job died without a result (else: polls forever)."""
    if not _accounting_enabled():
        pytest.skip("needs SLURM accounting (slurmdbd): start-local-slurm.sh sets it up "
                    "unless SWEEP_SLURM_ACCOUNTING=no")
    job = _executor(tmp_path / "jobs", slurm_cluster.partition).submit(_kill_self)

    with pytest.raises(submitit.core.utils.UncompletedJobError):
        job.result()
    assert job.state == "FAILED"


# ----------------------------------------------------------------------------- our sweeper on SLURM
SWEEP_TRIALS, SWEEP_JOBS = 6, 3
SWEEPER_MODULE = "hydra_plugins.sweep_plugins.sweep_optuna_sweeper"


@pytest.fixture(params=["postgres", "journal"])
def sweep_storage(request, tmp_path: Path) -> str:
    """The storages a SLURM sweep is meant for: PostgreSQL (many workers) and a journal file (shared disk)."""
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return f"journal://{tmp_path / 'journal.log'}"


@pytest.mark.slow
def test_sweep_runs_trials_as_slurm_job_array(slurm_cluster, sweep_storage: str, tmp_path: Path) -> None:
    """hydra/sweeper=sweep_optuna + hydra/launcher=sweep_slurm on the no-op app: the first n_jobs trials go
    out as ONE job array, every trial completes on SLURM, and each has its record file with the right loss."""
    pytest.importorskip(SWEEPER_MODULE, reason="sweeper plugin not installed")
    sweep_dir = tmp_path / "multirun"
    cmd = [sys.executable, str(NOOP_APP), "--multirun", "hydra/launcher=sweep_slurm",
           f"hydra.sweeper.n_trials={SWEEP_TRIALS}", f"hydra.sweeper.n_jobs={SWEEP_JOBS}",
           f"hydra.sweeper.storage='{sweep_storage}'", "hydra.sweeper.study_name=slurm-noop",
           "hydra.sweeper.sampler.seed=0", f"hydra.sweep.dir='{sweep_dir}'",
           f"hydra.launcher.partition={slurm_cluster.partition}", "hydra.launcher.cpus_per_task=1",
           "hydra.launcher.timeout_min=10"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, f"sweep failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"

    from sweep.study.storage import make_storage

    trials = optuna.load_study(study_name="slurm-noop", storage=make_storage(sweep_storage)).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * SWEEP_TRIALS
    first = [t.user_attrs["job_id"] for t in trials[:SWEEP_JOBS]]
    assert {j.split("_")[0] for j in first} == {first[0].split("_")[0]}, f"not one job array: {first}"
    assert sorted(j.split("_")[1] for j in first) == [str(i) for i in range(SWEEP_JOBS)]
    for trial in trials:
        record = json.loads(Path(trial.user_attrs["record_path"]).read_text())
        assert record["metrics"]["loss"] == pytest.approx((trial.params["x"] - 0.3) ** 2)
        assert record["slurm_job_id"], f"trial {trial.number} did not run under SLURM"
        assert trial.values == [pytest.approx(record["metrics"]["loss"])]
    assert (sweep_dir / "trials.csv").exists()


def _running_job_id(storage_url: str, study_name: str, timeout_s: float) -> str:
    """The SLURM job id the sweeper recorded for trial 0, once that job is RUNNING."""
    from sweep.study.storage import make_storage

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            trials = optuna.load_study(study_name=study_name, storage=make_storage(storage_url)).trials
        except KeyError:  # the study is not created yet
            trials = []
        job_id = trials[0].user_attrs.get("job_id") if trials else None
        if job_id and _squeue_state(job_id) == "RUNNING":
            return job_id
        time.sleep(0.5)
    raise AssertionError(f"no RUNNING SLURM job for trial 0 within {timeout_s} s")


def _squeue_state(job_id: str) -> str:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True,
                         timeout=15)
    return out.stdout.strip()


def _trial_started(run_dir: Path) -> bool:
    """The trial's task has begun: Hydra wrote ``.hydra/`` in its run dir, which happens after submitit loaded
    the job and installed its preemption handlers (a signal before that kills the job instead)."""
    return (run_dir / ".hydra" / "config.yaml").exists()


@pytest.mark.slow
def test_sweep_trial_preempted_on_slurm_is_requeued_and_completes(slurm_cluster, tmp_path: Path) -> None:
    """The sweeper's trial job is Checkpointable: preempted mid-run (submitit's signals), SLURM requeues it
    with the same job id and the trial still completes, told once."""
    pytest.importorskip(SWEEPER_MODULE, reason="sweeper plugin not installed")
    storage = f"journal://{tmp_path / 'journal.log'}"
    cmd = [sys.executable, str(NOOP_APP), "--multirun", "hydra/launcher=sweep_slurm", "sleep_s=6",
           "hydra.sweeper.n_trials=1", "hydra.sweeper.n_jobs=1", f"hydra.sweeper.storage='{storage}'",
           "hydra.sweeper.study_name=preempt", f"hydra.sweep.dir='{tmp_path / 'multirun'}'",
           f"hydra.launcher.partition={slurm_cluster.partition}", "hydra.launcher.timeout_min=10"]
    driver = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        job_id = _running_job_id(storage, "preempt", timeout_s=120)
        # under load the job may take seconds to import and unpickle: signal it only once the task runs
        wait_for(lambda: _trial_started(tmp_path / "multirun" / "0"), 120, "the trial's task to start")
        time.sleep(1.0)
        # what SLURM sends on preemption, as submitit's own test hook (Job._interrupt) does
        subprocess.run(["scancel", job_id, "--signal", "SIGTERM"], check=True)
        subprocess.run(["scancel", job_id, "--signal", "USR2"], check=True)
        output, _ = driver.communicate(timeout=240)
    finally:
        driver.kill()
    assert driver.returncode == 0, output[-4000:]
    from sweep.study.storage import make_storage

    (trial,) = optuna.load_study(study_name="preempt", storage=make_storage(storage)).trials
    assert trial.state == optuna.trial.TrialState.COMPLETE, (
        f"preempted trial not resumed: {trial.user_attrs.get('failure_reason')} "
        "(submitit's preemption handler exits the job with SystemExit; the trial runner must let it through)")
    assert trial.user_attrs["job_id"] == job_id
    assert _scontrol_field(job_id, "Restarts") == "1"


# ----------------------------------------------------------------------------- a driver lost or stopped
def _sweep_cmd(slurm_cluster, tmp_path: Path, storage: str, *extra: str) -> list[str]:
    return [sys.executable, str(NOOP_APP), "--multirun", "hydra/launcher=sweep_slurm", "hydra.sweeper.n_trials=2",
            "hydra.sweeper.n_jobs=2", f"hydra.sweeper.storage='{storage}'", "hydra.sweeper.study_name=lost",
            f"hydra.sweep.dir='{tmp_path / 'multirun'}'", f"hydra.launcher.partition={slurm_cluster.partition}",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10", *extra]


def _both_running(storage: str) -> list[str]:
    from sweep.study.storage import make_storage

    try:
        trials = optuna.load_study(study_name="lost", storage=make_storage(storage)).trials
    except KeyError:
        return []
    ids = [t.user_attrs.get("job_id") for t in trials]
    if len(ids) == 2 and all(ids) and all(_squeue_state(j) == "RUNNING" for j in ids):
        return ids
    return []


def _sacct_starts(job_id: str) -> int:
    """How many times SLURM started this job (its Restarts + 1)."""
    return int(_scontrol_field(job_id, "Restarts")) + 1


@pytest.mark.slow
def test_driver_killed_then_rerun_adopts_its_jobs(slurm_cluster, tmp_path: Path) -> None:
    """kill -9 of the driver: the jobs keep running; the rerun finds their ids on the trials and adopts them
    (no trial is started twice, no second writer in a run dir), and tells each once."""
    pytest.importorskip(SWEEPER_MODULE, reason="sweeper plugin not installed")
    storage = f"journal://{tmp_path / 'journal.log'}"
    cmd = _sweep_cmd(slurm_cluster, tmp_path, storage, "sleep_s=20")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + 120
        while not (job_ids := _both_running(storage)) and time.time() < deadline:
            time.sleep(0.5)
        assert job_ids, "the two trial jobs never ran"
    finally:
        driver.kill()
        driver.wait()
    assert all(_squeue_state(j) == "RUNNING" for j in job_ids), "the jobs must outlive the killed driver"

    rerun = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=240, env=env)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    output = rerun.stdout + rerun.stderr  # Hydra logs to stdout
    assert output.count("adopted job") == 2, output[-4000:]
    from sweep.study.storage import make_storage

    trials = optuna.load_study(study_name="lost", storage=make_storage(storage)).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2  # none requeued, none lost
    assert [t.user_attrs["job_id"] for t in trials] == job_ids
    for trial in trials:
        record = json.loads(Path(trial.user_attrs["record_path"]).read_text())
        assert record["slurm_job_id"] and _sacct_starts(trial.user_attrs["job_id"]) == 1
        assert trial.user_attrs["adopted_from"] != trial.user_attrs["driver"]


@pytest.mark.slow
def test_sigterm_to_the_driver_cancels_its_slurm_jobs(slurm_cluster, tmp_path: Path) -> None:
    """What a driver inside SLURM gets on scancel or time-out: its jobs are cancelled and their trials
    requeued, exit 143; the rerun runs them and the study ends with exactly n_trials counted trials."""
    pytest.importorskip(SWEEPER_MODULE, reason="sweeper plugin not installed")
    storage = f"journal://{tmp_path / 'journal.log'}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen(_sweep_cmd(slurm_cluster, tmp_path, storage, "sleep_s=120"), cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.time() + 120
        while not (job_ids := _both_running(storage)) and time.time() < deadline:
            time.sleep(0.5)
        assert job_ids, "the two trial jobs never ran"
        driver.send_signal(signal.SIGTERM)
        output, _ = driver.communicate(timeout=120)
    finally:
        driver.kill()
    assert driver.returncode == 143, output[-4000:]
    assert "driver stopping (SIGTERM): cancelling 2 running trial(s)" in output
    wait_for(lambda: all(_squeue_state(j) == "" for j in job_ids), 60, "the cancelled jobs to leave the queue")
    rerun = subprocess.run(_sweep_cmd(slurm_cluster, tmp_path, storage, "sleep_s=0"), cwd=tmp_path,
                           capture_output=True, text=True, timeout=240, env=env)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    from sweep.study.resume import is_counted
    from sweep.study.storage import make_storage

    trials = optuna.load_study(study_name="lost", storage=make_storage(storage)).trials
    counted = [t for t in trials if is_counted(t)]
    assert len(counted) == 2 and all(t.state == optuna.trial.TrialState.COMPLETE for t in counted)
    assert all(t.user_attrs["failure_reason"].startswith("driver lost: requeued as trial ")
               for t in trials if not is_counted(t))


@pytest.mark.slow
def test_two_task_ddp_trial_through_the_sweep_slurm_launcher(slurm_cluster, tmp_path: Path) -> None:
    """hydra.launcher.tasks_per_node=2: one trial = one SLURM job of 2 tasks training one model under DDP
    (gloo on CPU here); task 0 holds the run dir and writes the record, task 1 does not wait for its lock."""
    storage = f"sqlite:///{tmp_path / 'ddp.db'}"
    cmd = [sys.executable, "-m", "sweep.cli", "train", "-m", "experiment=tiny", "hydra/sweeper=sweep_optuna",
           "+search_space=tiny", "hydra/launcher=sweep_slurm", "hydra.sweeper.n_trials=1", "hydra.sweeper.n_jobs=1",
           f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=ddp", f"hydra.sweep.dir={tmp_path / 'sw'}",
           f"hydra.launcher.partition={slurm_cluster.partition}", "hydra.launcher.tasks_per_node=2",
           "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10", "device=cpu"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=400,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "SWEEP_RUN_DIR_WAIT_S": "30"})
    assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    from sweep.study.storage import make_storage

    (trial,) = optuna.load_study(study_name="ddp", storage=make_storage(storage)).trials
    assert trial.state == optuna.trial.TrialState.COMPLETE, trial.user_attrs.get("failure_reason")
    record = json.loads(Path(trial.user_attrs["record_path"]).read_text())
    assert record["status"] == "completed" and record["world_size"] == 2

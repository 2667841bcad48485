"""Issue 19, items 2, 4, 5 and 6, beside the fault tests of tests/study/test_reliability.py: a parent folder another
user could write, failures that are not the trial's fault (unsafe folder, full disk: requeued, not counted,
retried by the rerun), ENOSPC named whichever write hits it, a finished result of a lost trial told on rerun,
objectives and config errors checked before the first job (one line, exit 2), journal messages that say what
they did. The full-disk cases mount a real (tiny) tmpfs: they need root and skip otherwise."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweep.launch.outcome import outcome_from_exit
from sweep.safety import UnsafeFolderError, secure_dir
from sweep.study.resume import is_counted
from sweep.study.storage import make_storage

sys.path.insert(0, str(Path(__file__).parents[1] / "apps"))
from runner import APPS, app_command, base_overrides, load  # noqa: E402
from _disks import fill_disk  # noqa: E402
from _waiting import wait_for  # noqa: E402

SPACE = "+search_space=demo"


def _env(full_error: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return {**env, "OMP_NUM_THREADS": "1", **({"HYDRA_FULL_ERROR": "1"} if full_error else {})}


def _run(*overrides: str, full_error: bool = False, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(app_command(*overrides), capture_output=True, text=True, timeout=timeout,
                          env=_env(full_error), cwd=APPS)


# ----------------------------------------------------------------------------- 6. config errors, objectives
@pytest.mark.parametrize(("override", "says"), [
    ("hydra.sweeper.n_trials=-1", "hydra.sweeper.n_trials=-1: must be an integer >= 1"),
    ("hydra.sweeper.n_jobs=0", "hydra.sweeper.n_jobs=0: must be an integer >= 1"),
    ("+hydra.sweeper.search_space.lr={type: float, low: 2, high: 1}", "search_space.lr: needs low < high"),
    ("+hydra.sweeper.search_space.m={type: categorical, choices: []}", "search_space.m.choices: needs a non-empty"),
    ("hydra.sweeper.storage=redis://h/db", "unsupported scheme 'redis'; allowed: journal:///path"),
])
def test_config_errors_are_one_line_and_exit_2(tmp_path: Path, override: str, says: str) -> None:
    proc = _run(*base_overrides(tmp_path), SPACE, override)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("[sweep] config error: ") and says in lines[0]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*/result.json"))


def test_hydra_full_error_keeps_the_traceback(tmp_path: Path) -> None:
    proc = _run(*base_overrides(tmp_path), SPACE, "hydra.sweeper.n_jobs=0", full_error=True)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "hydra.sweeper.n_jobs=0" in proc.stderr


def test_unknown_objective_of_a_users_app_stops_after_its_first_result(tmp_path: Path) -> None:
    """Not every trial run to fail missing_metric: the first result names what the app reports."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    proc = _run(*base_overrides(tmp_path, storage), SPACE, "hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=1",
                "hydra.sweeper.objectives=[{metric: rankmee}]")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "hydra.sweeper.objectives[0].metric='rankmee': unknown metric" in proc.stderr
    assert "did you mean 'rankme'?" in proc.stderr
    assert len(list((tmp_path / "out").glob("*/result.json"))) == 1  # one trial ran, not six
    trials = load(storage).get_trials()
    assert not [t for t in trials if is_counted(t) and t.state != TrialState.WAITING]  # nothing counted


def test_train_job_objectives_are_checked_before_any_job() -> None:
    from sweep.config.sweeper_settings import SweepConfigError, SweepSettings
    from sweep.study.sweeper import AskTellSweeper
    from sweep.train.job import main

    def sweeper(metric: str) -> AskTellSweeper:
        settings = SweepSettings(objectives=[{"metric": metric}], validate_configs=False,
                                 search_space={"x": {"type": "float", "low": 0.0, "high": 1.0}})
        impl = AskTellSweeper(settings)
        impl.setup(hydra_context=None, task_function=main, config=None)
        return impl

    with pytest.raises(SweepConfigError, match=r"objectives\[0\].metric='rankme_norm': unknown metric; .*did you "
                                               r"mean 'rankme_normalized'\?"):
        sweeper("rankme_norm").prepare([])
    for known in ("rankme_normalized", "alpha", "abs_alpha_minus_1", "lidar"):
        sweeper(known).prepare([])


# ----------------------------------------------------------------------------- 6. journal messages
def _journal(path: Path) -> None:
    study = optuna.create_study(study_name="t", storage=make_storage(f"journal://{path}"), direction="maximize")
    for i in range(2):
        study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), float(i))


def _journal_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweep.study.journal", *args], capture_output=True, text=True,
                          timeout=60)


def test_journal_check_says_it_changed_nothing(tmp_path: Path) -> None:
    path = tmp_path / "j.log"
    _journal(path)
    path.write_bytes(path.read_bytes() + b'{"op_code":4,"worker')  # torn tail
    before = path.read_bytes()
    proc = _journal_cli("check", str(path))
    assert proc.returncode == 1 and path.read_bytes() == before
    assert "damaged, nothing changed: last line cut off (repair removes it)" in proc.stdout
    assert f"python -m sweep.study.journal repair {path}" in proc.stdout and "dropped" not in proc.stdout
    path.write_bytes(before.replace(b'{"op_code":4,"worker', b"garbage\n"))  # an unreadable whole line
    proc = _journal_cli("check", str(path))
    assert "unreadable lines [" in proc.stdout and "--drop-unreadable" in proc.stdout
    assert "(dropped)" not in proc.stdout


def test_progress_on_an_unreadable_journal_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "j.log"
    _journal(path)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + b"not json at all\n" + b"".join(lines[1:]))
    proc = subprocess.run([sys.executable, "-m", "sweep.cli", "progress", "--storage", f"journal://{path}",
                           "--study", "t"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "cannot be rebuilt; nothing was changed" in proc.stderr and "--drop-unreadable" in proc.stderr


# ----------------------------------------------------------------------------- 2. a writable parent folder
@pytest.mark.parametrize(("mode", "safe"), [(0o777, False), (0o775, False), (0o1777, True), (0o755, True)])
def test_every_folder_above_the_sweep_dir_is_checked(tmp_path: Path, mode: int, safe: bool) -> None:
    parent = tmp_path / "parent"
    parent.mkdir()
    parent.chmod(mode)
    if safe:
        assert secure_dir(parent / "sweep" / ".submitit") == parent / "sweep" / ".submitit"
        return
    if mode == 0o775 and parent.stat().st_gid == os.getegid():
        import grp
        import pwd

        group = grp.getgrgid(parent.stat().st_gid)
        if group.gr_name == pwd.getpwuid(os.geteuid()).pw_name and not set(group.gr_mem) - {group.gr_name}:
            pytest.skip("the folder's group is this user's private group: group-writable is still private")
    with pytest.raises(UnsafeFolderError, match=f"{parent} \\(above {parent / 'sweep'}\\): mode .* lets another "
                                                "user rename the sweep dir"):
        secure_dir(parent / "sweep")


def test_sweep_under_a_world_writable_parent_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared").chmod(0o777)
    proc = _run(f"hydra.sweeper.storage=sqlite:///{tmp_path / 's.db'}", "hydra.sweeper.study_name=t",
                f"hydra.sweep.dir={tmp_path / 'shared' / 'out'}", SPACE, "hydra.sweeper.n_trials=1")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "[sweep] stopped: " in proc.stderr and "lets another user rename the sweep dir" in proc.stderr
    assert not (tmp_path / "shared" / "out").exists()


# ----------------------------------------------------------------------------- 4. not the trial's fault
def test_unsafe_submit_folder_requeues_without_counting_and_the_rerun_runs_them(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    args = [*base_overrides(tmp_path, storage), SPACE, "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2"]
    shared = tmp_path / "out" / ".submitted"
    shared.mkdir(parents=True)
    (tmp_path / "out").chmod(0o700)
    shared.chmod(0o777)
    first = _run(*args)
    assert first.returncode == 1 and "Traceback" not in first.stderr, first.stderr[-3000:]
    assert "[sweep] stopped: 2 trial(s) could not run: submit failed: UnsafeFolderError" in first.stderr
    trials = load(storage).get_trials()
    assert not [t for t in trials if is_counted(t) and t.state != TrialState.WAITING]
    assert sum(t.state == TrialState.WAITING for t in trials) == 2
    assert all(t.user_attrs["failure_reason"].startswith("not the trial's fault (submit failed: UnsafeFolderError")
               for t in trials if t.state == TrialState.FAIL)
    shared.chmod(0o700)
    rerun = _run(*args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    counted = [t for t in load(storage).get_trials() if is_counted(t)]
    assert len(counted) == 2 and all(t.state == TrialState.COMPLETE for t in counted)


def test_a_lost_trials_finished_result_is_told_not_rerun(tmp_path: Path) -> None:
    """A driver died after its trial's job finished but before it told the result: the rerun tells that
    result (from the run dir's result.json) instead of throwing it away and running the trial again."""
    from sweep.study import attrs as schema
    from sweep.study import resume

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    dead = subprocess.Popen(["true"])
    dead.wait()
    lost = resume.DriverInfo(resume.DriverInfo.current().host, dead.pid, "2026-01-01T00:00:00+00:00")
    study = optuna.create_study(study_name="t", storage=make_storage(storage), direction="maximize")
    for key, value in {**lost.as_attrs(), schema.HEARTBEAT: time.time() - 3600}.items():
        study.set_user_attr(key, value)
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0),
                       "method": optuna.distributions.CategoricalDistribution(["simclr", "mocov2", "byol"])})
    run_dir = tmp_path / "out" / "0"
    run_dir.mkdir(parents=True)
    (tmp_path / "out").chmod(0o700)
    (run_dir / "result.json").write_text('{"status": "completed", "metrics": {"rankme": 12.5, "alpha": 1.1}}')
    for key, value in {schema.DRIVER: lost.id, "submitting": {"run_dir": str(run_dir)}, "job_id": "1",
                       "launcher": "local", "run_dir": str(run_dir)}.items():
        trial.set_user_attr(key, value)
    proc = _run(*base_overrides(tmp_path, storage), SPACE, "hydra.sweeper.n_trials=1")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "trial 0: its lost job finished" in output
    trials = load(storage).get_trials()
    assert [(t.state, t.values) for t in trials] == [(TrialState.COMPLETE, [12.5])]
    assert not (tmp_path / "out" / ".submitted").exists()  # nothing was run again


def test_a_result_older_than_the_trial_is_not_its_result(tmp_path: Path) -> None:
    """A result.json left by an earlier sweep in the same folder is not told for a new trial of that number."""
    import datetime as dt

    from sweep.study.adoption import finished_outcome

    (tmp_path / "result.json").write_text('{"status": "completed", "metrics": {"rankme": 1.0}}')
    os.utime(tmp_path / "result.json", (time.time() - 3600, time.time() - 3600))
    assert finished_outcome(str(tmp_path), dt.datetime.now()) is None
    assert finished_outcome(str(tmp_path), dt.datetime.now() - dt.timedelta(hours=2)).metrics == {"rankme": 1.0}
    (tmp_path / "result.json").write_text('{"status": "failed", "failure_reason": "x", "metrics": {}}')
    assert finished_outcome(str(tmp_path)) is None


# ----------------------------------------------------------------------------- 5. a full disk
def test_exit_code_4_names_a_full_disk_without_stderr() -> None:
    reason = outcome_from_exit(4, "").failure_reason
    assert reason.startswith("disk full (ENOSPC): crashed: worker exited with code 4")






def test_full_disk_at_start_is_one_line(tiny_disk: Path, tmp_path: Path) -> None:
    (tiny_disk / "out").mkdir(mode=0o700)
    fill_disk(tiny_disk)
    proc = _run(f"hydra.sweeper.storage=sqlite:///{tmp_path / 's.db'}", f"hydra.sweep.dir={tiny_disk / 'out'}",
                "hydra.sweeper.study_name=t", SPACE, "hydra.sweeper.n_trials=1")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "[sweep] stopped: cannot write" in proc.stderr and "disk full (ENOSPC)" in proc.stderr


def test_full_disk_mid_sweep_is_named_not_counted_and_retried(tiny_disk: Path, tmp_path: Path) -> None:
    """The disk fills while two trials run: their result writes and the worker's own stderr.log hit ENOSPC.
    The reason names the full disk, the trials are not counted, and the rerun after freeing space runs them."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    args = [f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tiny_disk / 'out'}", "hydra.sweeper.study_name=t",
            SPACE, "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2", "hydra.sweeper.export_results=false"]
    driver = subprocess.Popen(app_command(*args, "sleep=4"), cwd=APPS, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: _running_with_job(storage) == 2, 90, "two trials in flight")
        time.sleep(1.0)  # both workers past their start-up writes
        filler = fill_disk(tiny_disk)
        out, err = driver.communicate(timeout=120)
    finally:
        driver.kill()
    assert driver.returncode == 1 and "Traceback" not in err, err[-3000:]
    assert "[sweep] stopped: 2 trial(s) could not run: disk full (ENOSPC)" in err, err[-5000:]
    trials = load(storage).get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 2 and not [t for t in failed if is_counted(t)]
    assert all("disk full (ENOSPC)" in t.user_attrs["failure_reason"] for t in failed)
    assert len(trials) == 4 and sum(t.state == TrialState.WAITING for t in trials) == 2  # nothing more was asked
    filler.unlink()
    rerun = _run(*args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    counted = [t for t in load(storage).get_trials() if is_counted(t)]
    assert len(counted) == 4 and all(t.state == TrialState.COMPLETE for t in counted)


def _running_with_job(storage: str) -> int:
    try:
        return sum(t.state == TrialState.RUNNING and "job_id" in t.user_attrs for t in load(storage).get_trials())
    except Exception:  # noqa: BLE001 - not created yet
        return 0


def test_pickles_are_read_through_a_checked_folder_handle(tmp_path: Path) -> None:
    from sweep.safety import pickle_signed, read_private, unpickle_signed, write_private

    folder = secure_dir(tmp_path / "trial_0")
    write_private(folder / "result.pkl", pickle_signed({"ok": 1}))
    assert unpickle_signed(folder / "result.pkl") == {"ok": 1}
    folder.chmod(0o777)  # opened up after the start: the next read refuses
    with pytest.raises(UnsafeFolderError, match="lets group/others write"):
        read_private(folder / "result.pkl")
    folder.chmod(0o700)
    (tmp_path / "link").symlink_to(folder)
    with pytest.raises(OSError):
        read_private(tmp_path / "link" / "result.pkl")


def test_slurm_job_guard_refuses_a_folder_opened_up_after_submission(tmp_path: Path) -> None:
    """What runs first in a SLURM trial job: the folder chain is checked on the node, before submitit reads
    the job's pickle; an unsafe one ends the job without loading anything."""
    folder = secure_dir(tmp_path / "sweep" / ".submitit")
    (tmp_path / "sweep").chmod(0o777)
    proc = subprocess.run([sys.executable, "-m", "sweep.launch.guard", "-u", "-m", "submitit.core._submit",
                           str(folder / "%j")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3 and "refusing to load the job's pickle" in proc.stderr, proc.stderr
    assert "lets another user rename the sweep dir" in proc.stderr


def test_a_slurm_job_that_died_of_a_full_disk_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """submitit hands a failed job's traceback over as text: a full disk in it is named first, so the trial is
    requeued uncounted like any other full-disk failure."""
    from types import SimpleNamespace

    from sweep.launch import slurm
    from sweep.study.adoption import not_trial_fault

    class FailedJob:
        job_id, state = "7", "FAILED"
        _paths = SimpleNamespace(_folder="/x/.submitit/%j")
        paths = SimpleNamespace(folder="/x/.submitit/7", result_pickle=Path("/x/.submitit/7/7_0_result.pkl"))

        def task(self, index: int) -> "FailedJob":
            return self

        def result(self) -> None:
            raise RuntimeError("Job failed:\nOSError: [Errno 28] No space left on device: 'result.json'")

    monkeypatch.setattr(slurm, "check_folder_chain", lambda path: None)  # no real folder behind this job
    outcome = slurm.SubmititHandle(FailedJob(), "/x/0", 0.0).result()  # type: ignore[arg-type]
    assert outcome.failure_reason.startswith("disk full (ENOSPC): crashed: job 7 state FAILED")
    assert not_trial_fault(outcome.failure_reason)


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_full_disk_under_the_study_storage_is_named_and_nothing_is_lost(tiny_disk: Path, tmp_path: Path,
                                                                        kind: str) -> None:
    """The disk that holds the driver's store (SQLite or a journal file) fills while two trials run: the driver
    stops with one line naming ENOSPC and the storage, no traceback; the finished results stay in the run dirs,
    and the rerun after freeing space tells them (nothing runs twice) and completes the study."""
    storage = f"sqlite:///{tiny_disk / 'study.db'}" if kind == "sqlite" else f"journal://{tiny_disk / 'study.db'}"
    args = [f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp_path / 'out'}", "hydra.sweeper.study_name=t",
            SPACE, "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=2", "hydra.sweeper.export_results=false"]
    driver = subprocess.Popen(app_command(*args, "sleep=4"), cwd=APPS, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: _running_with_job(storage) == 2, 90, "two trials in flight")
        filler = fill_disk(tiny_disk)
        out, err = driver.communicate(timeout=120)
    finally:
        driver.kill()
    assert driver.returncode == 1 and "Traceback" not in err, err[-3000:]
    stopped = [line for line in err.splitlines() if line.startswith("[sweep] stopped:")]
    assert len(stopped) == 1 and "disk full (ENOSPC)" in stopped[0] and "study.db" in stopped[0], err[-3000:]
    finished = {path: path.stat().st_mtime_ns for path in (tmp_path / "out").glob("*/result.json")}
    assert len(finished) >= 2  # the jobs in flight finished; their results wait in the run dirs
    filler.unlink()
    rerun = _run(*args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    counted = [t for t in load(storage).get_trials() if is_counted(t)]
    assert len(counted) == 3 and all(t.state == TrialState.COMPLETE for t in counted)
    assert len(list((tmp_path / "out").glob("*/result.json"))) == 3
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in finished.items())  # none ran again


def test_submitit_result_pickles_are_read_through_a_checked_folder_handle(tmp_path: Path) -> None:
    """The driver reads a SLURM job's ``*_result.pkl`` itself, through ``read_private``: a result folder opened
    to others, or swapped for a symlink, after the chain check is refused instead of unpickled."""
    import cloudpickle
    import submitit

    from sweep.launch.slurm import _task_result

    class _Task:  # the two things _task_result uses of a submitit task: its result path and its fallback
        def __init__(self, path: Path) -> None:
            self.paths = type("Paths", (), {"result_pickle": path})()

        def result(self) -> None:
            raise submitit.core.utils.UncompletedJobError("no result pickle")

    folder = secure_dir(tmp_path / "submitit" / "7")
    (folder / "7_0_result.pkl").write_bytes(cloudpickle.dumps(("success", {"ok": 1})))
    assert _task_result(_Task(folder / "7_0_result.pkl"), 0.0) == {"ok": 1}
    (folder / "8_0_result.pkl").write_bytes(cloudpickle.dumps(("error", "Traceback: boom")))
    with pytest.raises(submitit.core.utils.FailedJobError, match="boom"):
        _task_result(_Task(folder / "8_0_result.pkl"), 0.0)
    with pytest.raises(submitit.core.utils.UncompletedJobError):
        _task_result(_Task(folder / "9_0_result.pkl"), 0.0)
    folder.chmod(0o777)
    with pytest.raises(UnsafeFolderError, match="lets group/others write"):
        _task_result(_Task(folder / "7_0_result.pkl"), 0.0)
    folder.chmod(0o700)
    (tmp_path / "swapped").symlink_to(folder)
    with pytest.raises(UnsafeFolderError, match="a symlink or file"):
        _task_result(_Task(tmp_path / "swapped" / "7_0_result.pkl"), 0.0)

"""Issue 9's fault table, kept fixed: no code execution from a shared folder, no secrets on disk, torn journals
repaired, every bad readout named, drivers that stop hand back their trials, concurrent starts, a full disk.
SLURM cases (adoption after kill -9, SIGTERM cancels jobs) are in tests/launch/test_slurm.py."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from sweep.launch.worker import EXIT_UNTRUSTED, RESULT_FILE
from sweep.safety import UnsafeFolderError, UntrustedPickleError, secure_dir, sign, unpickle_signed, verify
from sweep.study.journal import JournalCorruptError, check_and_repair, scan
from sweep.launch.outcome import outcome_from_exception, outcome_from_exit
from sweep.study.resume import is_counted
from sweep.study.storage import make_storage, mask_url, redact_text, split_password, with_password
from sweep.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

sys.path.insert(0, str(Path(__file__).parents[1] / "apps"))
from runner import APPS, app_command, app_env, base_overrides, load, run_app  # noqa: E402
from _waiting import wait_for  # noqa: E402

SPACE = "+search_space=demo"


class _Evil:
    """Unpickling this runs a command: what an attacker plants as payload.pkl, result.pkl or last.pt."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


# ----------------------------------------------------------------------------- 2. code execution
def test_secure_dir_creates_private_and_refuses_shared(tmp_path: Path) -> None:
    made = secure_dir(tmp_path / "a" / "b")
    assert (made.stat().st_mode & 0o777) == 0o700 and ((tmp_path / "a").stat().st_mode & 0o777) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(UnsafeFolderError, match=r"shared: mode drwxrwxrwx lets group/others write"):
        secure_dir(shared)
    (tmp_path / "link").symlink_to(made)
    with pytest.raises(UnsafeFolderError, match="symlink"):
        secure_dir(tmp_path / "link")
    if os.geteuid() == 0:  # only root can hand a folder to another user
        foreign = tmp_path / "foreign"
        foreign.mkdir(mode=0o755)
        os.chown(foreign, 4242, 4242)
        with pytest.raises(UnsafeFolderError, match="owned by uid 4242, not by this user"):
            secure_dir(foreign)


def test_signed_pickles_refuse_tampering(tmp_path: Path) -> None:
    import cloudpickle

    marker = tmp_path / "pwned"
    path = tmp_path / "payload.pkl"
    path.write_bytes(cloudpickle.dumps(_Evil(marker)))
    with pytest.raises(UntrustedPickleError, match="not signed by a sweep driver"):
        unpickle_signed(path)
    path.write_bytes(sign(cloudpickle.dumps(_Evil(marker)), key=b"someone else's key"))
    with pytest.raises(UntrustedPickleError, match="HMAC does not match"):
        unpickle_signed(path)
    assert not marker.exists()
    assert verify(sign(b"data"), "x") == b"data"


def test_worker_refuses_a_swapped_payload(tmp_path: Path) -> None:
    import cloudpickle

    marker = tmp_path / "pwned"
    (tmp_path / "payload.pkl").write_bytes(cloudpickle.dumps(_Evil(marker)))
    env = {**os.environ, "SWEEP_WORKER_KEY": os.urandom(32).hex()}
    proc = subprocess.run([sys.executable, "-m", "sweep.launch.worker", str(tmp_path / "payload.pkl")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == EXIT_UNTRUSTED, proc.stderr
    assert "not signed by a sweep driver; refusing to unpickle it" in proc.stderr
    assert not marker.exists() and not (tmp_path / RESULT_FILE).exists()


def test_planted_checkpoint_is_not_executed(tmp_path: Path) -> None:
    import torch

    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoints" / "last.pt"
    path.parent.mkdir()
    torch.save({"epoch": 1, "evil": _Evil(marker)}, path)
    with pytest.raises(CheckpointError, match=r"last.pt is not a plain-data checkpoint") as refused:
        load_checkpoint(path)
    assert not marker.exists()
    assert "posix.system" in str(refused.value) or "GLOBAL" in str(refused.value)  # what was refused
    assert "weights_only" not in str(refused.value) and "will likely succeed" not in str(refused.value)
    save_checkpoint(path, {"labels": __import__("numpy").arange(3), "history": [{"loss": 0.5}]})
    state = load_checkpoint(path)
    assert state is not None and state["labels"].tolist() == [0, 1, 2]
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left behind


@pytest.mark.slow
def test_sweep_refuses_a_world_writable_sweep_dir(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out").chmod(0o777)
    proc = run_app(*base_overrides(tmp_path), SPACE, "hydra.sweeper.n_trials=1")
    assert proc.returncode != 0
    assert "out: mode drwxrwxrwx lets group/others write" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "out" / ".submitted").exists()


@pytest.mark.slow
def test_local_sweep_writes_private_signed_pickles(tmp_path: Path) -> None:
    proc = run_app(*base_overrides(tmp_path), SPACE, "hydra.sweeper.n_trials=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "out" / ".submitted" / "trial_0"
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o700 and folder.stat().st_mode & 0o777 == 0o700
    for name in ("payload.pkl", RESULT_FILE):
        assert (folder / name).read_bytes().startswith(b"sweep-hmac-sha256\n")
        assert (folder / name).stat().st_mode & 0o777 == 0o600


# ----------------------------------------------------------------------------- 5. secrets
def test_password_masking_and_splitting() -> None:
    url = "postgresql+psycopg2://user:S3cr%40t@db.example:5432/sweeps"
    assert mask_url(url) == "postgresql+psycopg2://user:***@db.example:5432/sweeps"
    assert split_password(url) == ("postgresql+psycopg2://user@db.example:5432/sweeps", "S3cr@t")
    assert split_password(mask_url(url)) == ("postgresql+psycopg2://user@db.example:5432/sweeps", None)
    text = "storage: 'postgresql://a:b@h/db'\n- hydra.sweeper.storage=mysql://u:pw@h/x\nsqlite:////x.db"
    assert "b@" not in redact_text(text) and "pw@" not in redact_text(text) and "sqlite:////x.db" in text


def test_password_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWEEP_STORAGE_PASSWORD", "from-env")
    assert with_password("postgresql://user@h/db") == "postgresql://user:from-env@h/db"
    assert with_password("postgresql://user:***@h/db") == "postgresql://user:from-env@h/db"
    assert with_password("postgresql://user:own@h/db") == "postgresql://user:own@h/db"


def _role_with_password(base_url: str, database_url: str) -> tuple[str, str]:
    """(URL, needle): a login role whose password appears nowhere else, owning the test's database; when the
    test role may not create roles, the given URL and its ``user:password@`` (what a leak writes)."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg2
    from conftest import _admin_execute

    role, password = f"r_{uuid.uuid4().hex[:8]}", f"Pw{uuid.uuid4().hex}"
    database = urlsplit(database_url).path.lstrip("/")
    parts = urlsplit(database_url)
    try:
        _admin_execute(base_url, f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    except psycopg2.errors.InsufficientPrivilege:
        return database_url, f"{parts.username}:{parts.password}@"
    _admin_execute(base_url, f'GRANT {role} TO "{parts.username}"')  # PostgreSQL 16: ALTER ... OWNER needs it
    _admin_execute(base_url, f'ALTER DATABASE "{database}" OWNER TO {role}')
    netloc = f"{role}:{password}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc)), password


def _files_containing(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


@pytest.mark.slow
def test_no_password_on_disk_or_in_messages(postgres_url: str, _postgres_base_url: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    if "@" not in postgres_url or "options=" in postgres_url:
        pytest.skip("needs a PostgreSQL role allowed to create databases")
    url, needle = _role_with_password(_postgres_base_url, postgres_url)
    from urllib.parse import urlsplit

    password = urlsplit(url).password

    optuna.create_study(study_name="t", storage=make_storage(url), direction="maximize")
    for x in (0.5, 0.6):  # the pruning path: workers open the storage themselves
        optuna.load_study(study_name="t", storage=make_storage(url)).enqueue_trial({"x": x, "method": "byol"})
    proc = run_app(*base_overrides(tmp_path, f"'{url}'"), SPACE, "hydra.sweeper.n_trials=2", "mode=prune",
                   "hydra.sweeper.n_jobs=2", "hydra.sweeper.pruner.name=median")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [t.state for t in load(url).get_trials()] == [TrialState.COMPLETE] * 2
    assert _files_containing(tmp_path, needle) == []
    info = json.loads((tmp_path / "out" / "sweep_study.json").read_text())
    assert info["storage"] == mask_url(url) and ":***@" in info["storage"]
    assert "***" in (tmp_path / "out" / "0" / ".hydra" / "hydra.yaml").read_text()
    # a mismatch error names the study, never the password
    bad = run_app(*base_overrides(tmp_path, f"'{url}'"), SPACE, "hydra.sweeper.n_trials=2",
                  "hydra.sweeper.objectives=[{metric: alpha, target: 1.0}]")
    assert bad.returncode != 0 and "has directions" in bad.stderr and needle not in bad.stderr + bad.stdout
    # the password from the environment (libpq's PGPASSWORD) or ~/.pgpass: the URL carries none
    bare = split_password(url)[0]
    monkeypatch.setenv("PGPASSWORD", password)
    assert len(optuna.load_study(study_name="t", storage=make_storage(bare)).trials) == 2
    monkeypatch.delenv("PGPASSWORD")
    parts = urlsplit(url)
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"{parts.hostname}:{parts.port}:*:{parts.username}:{password}\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    assert len(optuna.load_study(study_name="t", storage=make_storage(bare)).trials) == 2


# ----------------------------------------------------------------------------- 4. torn journal
def _journal_with_trials(path: Path, n: int = 3) -> None:
    study = optuna.create_study(study_name="t", storage=make_storage(f"journal://{path}"), direction="maximize")
    for i in range(n):
        study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), float(i))


def test_torn_tail_is_repaired_before_any_append(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    _journal_with_trials(path)
    intact = path.read_bytes()
    path.write_bytes(intact + b'{"op_code":4,"worker_id":"x","trial_id":0,"us')  # a writer died mid-line
    study = optuna.load_study(study_name="t", storage=make_storage(f"journal://{path}"))
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 9.0)  # appends cleanly
    assert path.read_bytes().startswith(intact)
    backups = list(tmp_path.glob("journal.log.torn-*.bak"))
    assert len(backups) == 1 and backups[0].read_bytes().endswith(b'"us')
    reread = optuna.load_study(study_name="t", storage=make_storage(f"journal://{path}"))
    assert [t.value for t in reread.trials] == [0.0, 1.0, 2.0, 9.0]


def test_journal_broken_by_an_old_append_is_rebuilt(tmp_path: Path) -> None:
    """A fragment with a whole record glued on (what drivers before the fix produced) is separated again."""
    path = tmp_path / "journal.log"
    _journal_with_trials(path, 2)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]) + b'{"op_code":6,"wor' + lines[-1])
    found = scan(path.read_bytes())
    assert found.salvaged == [len(lines)] and not found.unreadable
    assert check_and_repair(path) is not None
    assert [t.value for t in optuna.load_study(study_name="t", storage=make_storage(f"journal://{path}")).trials] \
        == [0.0, 1.0]


def test_unreadable_journal_line_refused_with_the_repair_command(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    _journal_with_trials(path, 1)
    path.write_bytes(path.read_bytes() + b"garbage\n")
    with pytest.raises(JournalCorruptError, match=r"python -m sweep.study.journal repair .* --drop-unreadable"):
        make_storage(f"journal://{path}")
    proc = subprocess.run([sys.executable, "-m", "sweep.study.journal", "repair", str(path), "--drop-unreadable"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "repaired; original kept as" in proc.stdout
    assert len(optuna.load_study(study_name="t", storage=make_storage(f"journal://{path}")).trials) == 1


# ----------------------------------------------------------------------------- 6. readouts
def test_every_bad_readout_is_named_and_read_again(tmp_path: Path) -> None:
    from sweep.selection.pipeline import pending_trials, readout_problems
    from sweep.selection.readout_jobs import load_readouts, readout_job, readout_path

    sweep_dir = tmp_path / "sweep"
    records = {}
    for t in range(5):
        run = tmp_path / f"run_{t}"
        run.mkdir()
        records[t] = run / "result.json"
        records[t].write_text(json.dumps({"status": "completed", "features": {}}))
    records[4].write_text('{"status": "compl')  # truncated by a crash
    trials = pd.DataFrame({"trial": range(5), "state": "COMPLETE", "record_path": [str(records[t]) for t in range(5)]})
    good = {"trial": 0, "status": "completed", "val_accuracy": 0.9, "test_accuracy": 0.8,
            "record_path": str(records[0])}
    readout_path(sweep_dir, 0).parent.mkdir(parents=True)
    readout_path(sweep_dir, 0).write_text(json.dumps(good))
    readout_path(sweep_dir, 1).write_bytes(os.urandom(64))
    readout_path(sweep_dir, 2).write_text("[]")
    readout_path(sweep_dir, 3).write_text(json.dumps(good))  # copied from trial 0
    readout_job(4, str(records[4]), str(readout_path(sweep_dir, 4)), {})
    problems = readout_problems(trials, sweep_dir).set_index("trial")
    assert list(problems.index) == [1, 2, 3, 4]
    assert problems.loc[1, "kind"] == "unreadable" and "trial_1.json is not JSON" in problems.loc[1, "reason"]
    assert problems.loc[2, "kind"] == "unreadable" and "holds list" in problems.loc[2, "reason"]
    assert problems.loc[3, "kind"] == "mismatched" and "readout of trial 0, not of trial 3" in problems.loc[3, "reason"]
    assert problems.loc[4, "kind"] == "failed" and f"{records[4]}: not a readable JSON" in problems.loc[4, "reason"]
    assert pending_trials(trials, sweep_dir) == [1, 2, 3, 4]  # all read out again on the next run
    frame = load_readouts(sweep_dir)  # no crash on the bad files; they are left out
    assert frame["trial"].tolist() == [0, 4]


def test_run_readouts_prints_what_is_left_out(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import submitit

    from sweep.selection.pipeline import run_readouts

    record = tmp_path / "result.json"
    record.write_text("{trunc")
    trials = pd.DataFrame({"trial": [0], "state": ["COMPLETE"], "record_path": [str(record)]})
    frame = run_readouts(trials, tmp_path / "sweep", submitit.DebugExecutor(folder=tmp_path / "jobs"))
    out = capsys.readouterr().out
    assert "[select] readouts: 0 of 1 usable trials read out; 1 left out of the selection:" in out
    assert f"trial 0: failed: ReadoutError: {record}: not a readable JSON record" in out
    assert frame.attrs["readout_problems"]["trial"].tolist() == [0]


# ----------------------------------------------------------------------------- 1. signals / lost driver


def _running(storage: str) -> int:
    try:
        return sum(t.state == TrialState.RUNNING and "job_id" in t.user_attrs for t in load(storage).get_trials())
    except Exception:  # noqa: BLE001 - not created yet
        return 0


@pytest.mark.slow
def test_sigterm_cancels_requeues_and_rerun_completes(tmp_path: Path) -> None:
    storage = f"journal://{tmp_path / 'j.log'}"
    args = [*base_overrides(tmp_path, storage), SPACE, "sleep=30", "hydra.sweeper.n_trials=3",
            "hydra.sweeper.n_jobs=2", "hydra.sweeper.sampler.seed=1"]
    driver = subprocess.Popen(app_command(*args), cwd=APPS, env=app_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: _running(storage) == 2, 90, "two trials in flight")
        pids = [int(t.user_attrs["job_id"]) for t in load(storage).get_trials() if t.state == TrialState.RUNNING]
        driver.send_signal(signal.SIGTERM)
        output, _ = driver.communicate(timeout=60)
    finally:
        driver.kill()
    assert driver.returncode == 143, output[-3000:]
    assert "driver stopping (SIGTERM): cancelling 2 running trial(s)" in output
    assert not any(Path(f"/proc/{p}").exists() for p in pids)
    trials = load(storage).get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert sum(t.state == TrialState.FAIL and not is_counted(t) for t in trials) == 2
    assert load(storage).user_attrs["driver_heartbeat"] == 0.0  # released: a rerun need not wait
    proc = run_app(*args[:-4], "sleep=0", "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=2", timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counted = [t for t in load(storage).get_trials() if is_counted(t)]
    assert len(counted) == 3 and all(t.state == TrialState.COMPLETE for t in counted)


@pytest.mark.slow
def test_live_driver_elsewhere_is_never_taken_over(tmp_path: Path) -> None:
    """A second driver (any host) refuses while the first one's heartbeat is fresh; the first is unharmed."""
    storage = f"journal://{tmp_path / 'j.log'}"
    args = [*base_overrides(tmp_path, storage), SPACE, "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
            "hydra.sweeper.driver_heartbeat_s=1", "hydra.sweeper.driver_timeout_s=5"]
    first = subprocess.Popen(app_command(*args, "sleep=12"), cwd=APPS, env=app_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: _running(storage) == 2, 90, "two trials in flight")
        holder = load(storage).user_attrs["driver_id"]
        time.sleep(7)  # longer than driver_timeout_s: only its fresh heartbeat says it is alive
        second = run_app(*args, "sleep=0", timeout=120)
        output, _ = first.communicate(timeout=120)
    finally:
        first.kill()
    assert second.returncode != 0 and f"is driven by a live process ({holder}" in second.stderr
    assert first.returncode == 0, output[-3000:]
    assert [t.state for t in load(storage).get_trials()] == [TrialState.COMPLETE] * 2


# ----------------------------------------------------------------------------- 7. concurrent starts
def test_concurrent_first_opens_of_a_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    code = f"from sweep.study.storage import make_storage; make_storage({url!r}); print('ok')"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-500:] for _, err in results]


@pytest.mark.slow
def test_two_drivers_started_at_once_on_a_new_sqlite_file(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'new.db'}"
    args = [*base_overrides(tmp_path, storage), SPACE, "hydra.sweeper.n_trials=2", "sleep=1"]
    procs = [subprocess.Popen(app_command(*args), cwd=APPS, env=app_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=180) for p in procs]
    codes = sorted(p.returncode for p in procs)
    errors = "".join(err for _, err in results)
    assert "already exists" not in errors and "UNIQUE constraint" not in errors, errors[-3000:]
    assert codes[0] == 0, errors[-3000:]
    if codes[1] != 0:  # the loser steps back cleanly, naming the live driver
        assert "is driven by a live process" in errors
    counted = [t for t in load(storage).get_trials() if is_counted(t)]
    assert len(counted) == 2 and all(t.state == TrialState.COMPLETE for t in counted)


# ----------------------------------------------------------------------------- 8. disk full
def test_disk_full_is_named() -> None:
    reason = outcome_from_exit(4, "sweep worker: disk full (ENOSPC): cannot write result.pkl: [Errno 28] "
                                  "No space left on device").failure_reason
    assert reason.startswith("disk full (ENOSPC): crashed: worker exited with code 4")
    err = OSError(errno.ENOSPC, "No space left on device")
    assert outcome_from_exception(err).failure_reason.startswith("disk full (ENOSPC): exception: OSError")


def test_final_export_on_a_full_disk_does_not_fail_the_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    from sweep.study import sweeper

    def full(*args, **kwargs):  # noqa: ANN002, ANN003
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sweeper, "export_results", full)
    study = optuna.create_study(study_name="t", storage=make_storage(f"sqlite:///{tmp_path / 's.db'}"))
    sweeper._export_quietly(study, tmp_path)
    assert "all trials are in the storage" in caplog.text and "No space left" in caplog.text


def test_worker_names_a_full_disk(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from sweep.launch.worker import EXIT_NO_SPACE, _write_failed

    assert _write_failed(tmp_path / RESULT_FILE, OSError(errno.ENOSPC, "No space left on device")) == EXIT_NO_SPACE
    assert "disk full (ENOSPC)" in capsys.readouterr().err


def test_one_writer_per_run_dir(tmp_path: Path) -> None:
    from sweep.launch.trial import RunDirBusyError, RunDirLock

    first = RunDirLock(tmp_path).acquire()
    with pytest.raises(RunDirBusyError, match=r"still being written by .* pid"):
        RunDirLock(tmp_path).acquire(wait_s=0.3)
    first.release()
    RunDirLock(tmp_path).acquire(wait_s=0).release()


@pytest.mark.parametrize(("env", "secondary"), [
    ({}, False), ({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}, False),
    ({"SLURM_NTASKS": "4", "SLURM_PROCID": "0"}, False), ({"SLURM_NTASKS": "4", "SLURM_PROCID": "3"}, True),
    ({"SLURM_NTASKS": "x", "SLURM_PROCID": "1"}, False),
])
def test_only_task_zero_of_a_multi_task_trial_is_its_writer(env: dict, secondary: bool) -> None:
    from sweep.launch.trial import is_secondary_task

    assert is_secondary_task(env) is secondary


def test_secondary_task_runs_without_the_writer_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank 1 of a DDP trial on SLURM must not wait for rank 0's lock (it would time out), nor write a record."""
    from types import SimpleNamespace

    from hydra.core.utils import JobStatus

    from sweep.launch import trial as trial_module

    monkeypatch.setenv("SWEEP_RUN_DIR_WAIT_S", "0.2")
    monkeypatch.setattr(trial_module, "trial_run_dir", lambda config: str(tmp_path))
    monkeypatch.setattr("hydra.core.utils.run_job", lambda **kw: SimpleNamespace(
        status=JobStatus.COMPLETED, return_value={"status": "completed", "rankme": 2.0}))
    payload = trial_module.TrialPayload(hydra_context=None, task_function=lambda cfg: None, config=None)
    held = trial_module.RunDirLock(tmp_path).acquire()  # rank 0 holds it for the whole trial
    try:
        monkeypatch.setenv("SLURM_NTASKS", "2")
        monkeypatch.setenv("SLURM_PROCID", "1")
        outcome = trial_module.execute_trial(payload)
        assert outcome.status == "completed" and not (tmp_path / "result.json").exists()
        monkeypatch.setenv("SLURM_PROCID", "0")  # rank 0's own lock is what a second writer would meet
        assert "still being written" in (trial_module.execute_trial(payload).failure_reason or "")
    finally:
        held.release()

"""One storage suite run against SQLite, Journal (file) and PostgreSQL through one parametrized fixture."""
from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from sweep.study.attrs import HEARTBEAT as HEARTBEAT_ATTR
from sweep.study.resume import (
    DriverConflictError,
    DriverInfo,
    Heartbeat,
    claim_study,
    is_counted,
    lost_trials,
    recover_lost_trials,
    release_study,
)
from sweep.study.results import export_results, progress_line, trials_dataframe
from sweep.study.storage import StorageError, default_storage_url, make_storage, normalize_storage_url

sys.path.insert(0, str(Path(__file__).parents[1] / "apps"))
from runner import base_overrides, load, run_app  # noqa: E402

STORAGES = ["sqlite", "journal", "postgres"]


@pytest.fixture(params=STORAGES)
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    if request.param == "journal":
        return f"journal://{tmp_path / 'journal.log'}"
    return request.getfixturevalue("postgres_url")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _study_with_trials(url: str) -> optuna.Study:
    study = optuna.create_study(study_name="s", storage=make_storage(url), directions=["maximize", "minimize"])
    for i, (rankme, alpha) in enumerate([(10.0, 0.9), (12.0, 1.3)]):
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        trial.set_user_attr("metric_rankme", rankme)
        trial.set_user_attr("metric_alpha", alpha)
        trial.set_user_attr("method", "simclr")
        trial.set_user_attr("run_dir", f"/runs/{i}")
        trial.set_user_attr("record_path", f"/runs/{i}/result.json")
        study.tell(trial, [rankme, abs(alpha - 1.0)])
    failed = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    failed.set_user_attr("failure_reason", "crashed: worker killed by SIGKILL (exit 137)")
    study.tell(failed, state=TrialState.FAIL)
    return study


# ----------------------------------------------------------------------------- URL handling (no backend needed)
def test_default_and_relative_urls(tmp_path: Path) -> None:
    assert default_storage_url(tmp_path) == f"sqlite:///{tmp_path.resolve()}/.sweep/optuna.db"
    assert normalize_storage_url(None, tmp_path) == default_storage_url(tmp_path)
    assert normalize_storage_url("sqlite:///a/b.db", tmp_path) == f"sqlite:///{tmp_path.resolve()}/a/b.db"
    assert normalize_storage_url("sqlite:////abs/b.db", tmp_path) == "sqlite:////abs/b.db"
    assert normalize_storage_url("journal://j.log", tmp_path) == f"journal://{tmp_path.resolve()}/j.log"
    assert normalize_storage_url("journal:///abs/j.log", tmp_path) == "journal:///abs/j.log"
    url = "postgresql+psycopg2://u:p@h:5432/db"
    assert normalize_storage_url(url, tmp_path) == url
    with pytest.raises(StorageError, match="unsupported scheme 'redis'; allowed: journal:///path"):
        normalize_storage_url("redis://localhost", tmp_path)


# ----------------------------------------------------------------------------- the suite, per backend
def test_backend_type(storage_url: str) -> None:
    storage = make_storage(storage_url)
    expected = "JournalStorage" if storage_url.startswith("journal") else "RDBStorage"
    assert type(storage).__name__ == expected


def test_trials_dataframe_and_export(storage_url: str, tmp_path: Path) -> None:
    _study_with_trials(storage_url)
    frame = trials_dataframe(storage_url, "s")
    assert frame["trial"].tolist() == [0, 1, 2]
    assert frame["state"].tolist() == ["COMPLETE", "COMPLETE", "FAIL"]
    assert frame["rankme"].tolist()[:2] == [10.0, 12.0]
    assert frame["objective_1"].tolist()[:2] == pytest.approx([0.1, 0.3])
    assert frame.loc[2, "failure_reason"] == "crashed: worker killed by SIGKILL (exit 137)"
    assert list(frame.columns[:4]) == ["trial", "state", "method", "params_x"]
    assert {"record_path", "run_dir", "job_id", "objective_0", "alpha"} <= set(frame.columns)
    assert progress_line(storage_url, "s") == (
        "[sweep] 3/? finished | running 0, done 2, failed 1, pruned 0 | Pareto front: trials [0, 1]")
    paths = export_results(storage_url, "s", tmp_path / "export")
    back = pd.read_parquet(paths["parquet"])
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    assert pd.read_csv(paths["csv"])["rankme"].tolist()[:2] == [10.0, 12.0]


def test_dead_driver_trials_failed_and_requeued(storage_url: str) -> None:
    study = optuna.create_study(study_name="s", storage=make_storage(storage_url))
    dead = DriverInfo(socket.gethostname(), _dead_pid(), "2026-01-01T00:00:00+00:00")
    live = DriverInfo(socket.gethostname(), os.getpid(), "now")
    for owner, x in ((dead, 0.25), (live, 0.5)):
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        trial.set_user_attr("driver", owner.id)
    me = DriverInfo(socket.gethostname(), os.getpid(), "me")
    moves = recover_lost_trials(study, me)
    assert moves == [(0, 2)]
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL
    assert trials[0].user_attrs["failure_reason"] == "driver lost: requeued as trial 2"
    assert trials[1].state == TrialState.RUNNING  # its driver (this process) is alive
    assert trials[2].state == TrialState.WAITING and not is_counted(trials[0]) and is_counted(trials[2])
    asked = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    assert asked.number == 2 and asked.params["x"] == trials[0].params["x"]


def test_one_live_driver_per_study(storage_url: str) -> None:
    study = optuna.create_study(study_name="s", storage=make_storage(storage_url))
    host = socket.gethostname()
    claim_study(study, DriverInfo(host, _dead_pid(), "t0"))
    claim_study(study, DriverInfo(host, os.getppid(), "t1"))  # the holder's pid is gone: taken over at once
    assert study.user_attrs["driver_pid"] == os.getppid()
    with pytest.raises(DriverConflictError, match=r"is driven by a live process \(.*:t1, last heartbeat"):
        claim_study(study, DriverInfo(host, os.getpid(), "t2"))


def test_liveness_is_by_heartbeat_on_any_host(storage_url: str) -> None:
    """A driver on another host is alive while its heartbeat is fresh (never taken over), lost once stale."""
    study = optuna.create_study(study_name="s", storage=make_storage(storage_url))
    study.set_user_attr("driver_id", "other-host:1:t3")
    study.set_user_attr(HEARTBEAT_ATTR, time.time() - 5)
    with pytest.raises(DriverConflictError, match="other-host:1:t3"):
        claim_study(study, DriverInfo(socket.gethostname(), os.getpid(), "t4"), timeout_s=60)
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.set_user_attr("driver", "other-host:1:t3")
    assert lost_trials(study, DriverInfo(socket.gethostname(), os.getpid(), "t4"), timeout_s=60) == []
    study.set_user_attr(HEARTBEAT_ATTR, time.time() - 61)  # stale: the other driver is gone
    me = DriverInfo(socket.gethostname(), os.getpid(), "t4")
    claim_study(study, me, timeout_s=60, settle_s=0.1)
    assert study.user_attrs["driver_start"] == "t4"
    assert [t.number for t in lost_trials(study, me, timeout_s=60)] == [0]


def test_heartbeat_thread_refreshes_and_notices_a_takeover(storage_url: str) -> None:
    study = optuna.create_study(study_name="s", storage=make_storage(storage_url))
    me = DriverInfo(socket.gethostname(), os.getpid(), "hb")
    claim_study(study, me)
    study.set_user_attr(HEARTBEAT_ATTR, 1.0)
    beat = Heartbeat(lambda: make_storage(storage_url), "s", me, interval_s=0.2).start()
    try:
        deadline = time.time() + 10
        while study.user_attrs[HEARTBEAT_ATTR] == 1.0 and time.time() < deadline:
            time.sleep(0.1)
        assert time.time() - study.user_attrs[HEARTBEAT_ATTR] < 5
        study.set_user_attr("driver_id", "other-host:2:later")
        assert beat.superseded.wait(10)
    finally:
        beat.stop()
    release_study(study, me)  # not the holder any more: leaves the other driver's heartbeat alone
    assert study.user_attrs[HEARTBEAT_ATTR] != 0.0


def test_optuna_dashboard_lists_the_study(storage_url: str) -> None:
    optuna_dashboard = pytest.importorskip("optuna_dashboard")
    _study_with_trials(storage_url)
    app = optuna_dashboard.wsgi(make_storage(storage_url))
    status: list[str] = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/api/studies", "QUERY_STRING": "", "SERVER_NAME": "t",
               "SERVER_PORT": "80", "wsgi.input": io.BytesIO(b""), "wsgi.errors": io.StringIO(),
               "wsgi.url_scheme": "http", "SERVER_PROTOCOL": "HTTP/1.1"}
    body = b"".join(app(environ, lambda s, h, *a: status.append(s)))
    assert status[0].startswith("200")
    studies = json.loads(body)["study_summaries"]
    assert [(s["study_name"], s["directions"]) for s in studies] == [("s", ["maximize", "minimize"])]


@pytest.mark.slow
def test_sweep_end_to_end(storage_url: str, tmp_path: Path) -> None:
    proc = run_app(*base_overrides(tmp_path, f"'{storage_url}'"), "+search_space=demo", "hydra.sweeper.n_trials=3",
                   "hydra.sweeper.n_jobs=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = load(storage_url).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert all(Path(t.user_attrs["record_path"]).is_file() for t in trials)


def test_storage_full_is_told_from_a_full_disk_elsewhere(tmp_path) -> None:
    """Only the storage's own full disk stops the driver as "cannot write the study storage": SQLite's
    "database or disk is full" under Optuna's wrapper (the journal's ENOSPC: tests/study/test_security_faults.py); an
    ENOSPC from a run dir, or a message that merely quotes one, is not the storage's."""
    import errno
    import sqlite3

    import optuna

    from sweep.study.storage import storage_full

    def wrapped_sqlite() -> BaseException:
        try:
            try:
                raise sqlite3.OperationalError("database or disk is full")
            except sqlite3.OperationalError as err:
                raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from err
        except optuna.exceptions.StorageInternalError as err:
            return err

    assert storage_full(wrapped_sqlite())
    assert not storage_full(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "result.json")))
    assert not storage_full(RuntimeError("1 trial(s) could not run: disk full (ENOSPC): submit failed: OSError: "
                                         "[Errno 28] No space left on device"))

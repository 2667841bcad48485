"""The test services themselves: launcher scripts are idempotent, and the shared fixtures (tests/conftest.py)
hand out isolated, working PostgreSQL databases for Optuna and a described SLURM cluster."""
from __future__ import annotations

import os
import subprocess
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from conftest import (
    _libpq_url,
    _redact,
    _schema_scoped_url,
    _sqlalchemy_url,
    _with_database,
    _with_search_path,
)

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
LAUNCHERS = ROOT / "launchers"


# ----------------------------------------------------------------------------- pure helpers
def test_redact_hides_only_the_password() -> None:
    assert _redact("postgresql://sweep:secret@127.0.0.1:5432/db") == "postgresql://sweep:***@127.0.0.1:5432/db"
    assert _redact("postgresql://127.0.0.1/db") == "postgresql://127.0.0.1/db"


def test_url_rewrites_keep_credentials_and_query() -> None:
    url = "postgresql://u:p@h:1/base?sslmode=disable"
    assert _with_database(url, "other") == "postgresql://u:p@h:1/other?sslmode=disable"
    assert _with_search_path(url, "s1") == f"{url}&options=-csearch_path%3Ds1"
    assert _with_search_path("postgresql://h/db", "s1") == "postgresql://h/db?options=-csearch_path%3Ds1"


def test_driver_is_named_for_sqlalchemy_and_stripped_for_libpq() -> None:
    assert _libpq_url("postgresql+psycopg2://u:p@h:1/db") == "postgresql://u:p@h:1/db"
    assert _sqlalchemy_url("postgresql+psycopg2://u:p@h:1/db") == "postgresql+psycopg2://u:p@h:1/db"
    scheme = _sqlalchemy_url("postgresql://u:p@h:1/db").split("://")[0]
    assert scheme in ("postgresql+psycopg", "postgresql+psycopg2")


def test_launcher_scripts_parse() -> None:
    scripts = sorted(LAUNCHERS.rglob("*.sh"))
    assert len(scripts) >= 5
    for script in scripts:
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script}: {result.stderr}"


def test_start_test_services_rejects_unknown_arguments() -> None:
    result = subprocess.run(["bash", str(LAUNCHERS / "start-test-services.sh"), "--bogus"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "--no-slurm" in result.stderr


# ----------------------------------------------------------------------------- collection hooks
def test_conftest_marks_service_tests_and_skips_gpu_tests_without_cuda(pytester: pytest.Pytester) -> None:
    import torch

    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    pytester.makeini("[pytest]\nmarkers =\n    gpu: g\n    slurm: s\n    postgres: p\n")
    pytester.makepyfile(test_example="""
        import pytest

        @pytest.mark.gpu
        def test_on_gpu():
            pass

        def test_on_slurm(slurm_cluster):
            pass

        def test_on_postgres(postgres_url):
            pass

        def test_plain():
            pass
    """)
    selected = pytester.runpytest("-m", "slurm or postgres", "--collect-only", "-q").stdout.str()
    assert "test_on_slurm" in selected and "test_on_postgres" in selected and "test_plain" not in selected
    outcome = pytester.runpytest("-k", "gpu or plain", "-rs")
    if torch.cuda.is_available():
        outcome.assert_outcomes(passed=2)
    else:
        outcome.assert_outcomes(passed=1, skipped=1)
        outcome.stdout.fnmatch_lines(["*gpu test: torch * sees no CUDA device*"])


# ----------------------------------------------------------------------------- PostgreSQL
@pytest.mark.parametrize("round_", [1, 2])
def test_postgres_url_is_an_empty_database_of_its_own(postgres_url: str, round_: int) -> None:
    """Run twice: the second run must not see the first run's study (fresh database per test)."""
    import optuna

    assert postgres_url.startswith(("postgresql+psycopg2://", "postgresql+psycopg://"))
    storage = optuna.storages.RDBStorage(postgres_url)
    assert optuna.get_all_study_names(storage) == []
    study = optuna.create_study(study_name=f"isolation-{round_}", storage=storage)
    study.optimize(lambda t: (t.suggest_float("x", -1, 1) - 0.5) ** 2, n_trials=3)
    assert len(study.trials) == 3
    storage.engine.dispose()


def _ask_tell_worker(url: str, study_name: str, n: int) -> list[int]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=url)
    numbers = []
    for _ in range(n):
        trial = study.ask()
        study.tell(trial, trial.suggest_int("k", 0, 100) * 1.0)
        numbers.append(trial.number)
    return numbers


def test_postgres_storage_serves_parallel_ask_tell_workers(postgres_url: str) -> None:
    """Two processes share one study, as sweep workers do: every trial gets a unique number and completes."""
    import optuna

    optuna.create_study(study_name="parallel", storage=postgres_url)
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(_ask_tell_worker, [postgres_url] * 2, ["parallel"] * 2, [5, 5]))
    numbers = sorted(n for worker in results for n in worker)
    assert numbers == list(range(10))
    study = optuna.load_study(study_name="parallel", storage=postgres_url)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 10


def _tables_in_schema(url: str, schema: str) -> set[str]:
    import psycopg2

    conn = psycopg2.connect(_libpq_url(url))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))
            return {row[0] for row in cur.fetchall()}
    finally:
        conn.close()


@pytest.mark.postgres
def test_schema_fallback_keeps_optuna_tables_in_their_schema(_postgres_base_url: str) -> None:
    """For roles without CREATEDB: Optuna's tables go to the test's own schema, which is dropped after."""
    import optuna

    schema = "sweep_t_schema_check"
    scoped = _schema_scoped_url(_postgres_base_url, schema)
    url = next(scoped)
    storage = optuna.storages.RDBStorage(url)
    optuna.create_study(study_name="in-schema", storage=storage)
    storage.engine.dispose()
    assert {"studies", "trials"} <= _tables_in_schema(_postgres_base_url, schema)
    scoped.close()  # runs the fixture's cleanup
    assert _tables_in_schema(_postgres_base_url, schema) == set()


def test_start_local_postgres_is_idempotent(postgres_url: str) -> None:
    """A second start of a running server changes nothing and prints the same URL."""
    managed = ("", "127.0.0.1:54329/sweep_test")
    if os.environ.get("SWEEP_TEST_POSTGRES_URL", "").rsplit("@", 1)[-1] not in managed:
        pytest.skip("SWEEP_TEST_POSTGRES_URL points at a server this script does not manage")
    if os.geteuid() != 0:
        pytest.skip("the local PostgreSQL is managed as root")
    result = subprocess.run(["bash", str(LAUNCHERS / "postgres" / "start-local-postgres.sh")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "postgresql://sweep:sweep@127.0.0.1:54329/sweep_test"
    assert "already running" in result.stderr


# ----------------------------------------------------------------------------- SLURM
@pytest.mark.slurm
def test_slurm_cluster_fixture_describes_the_default_partition(slurm_cluster) -> None:
    assert slurm_cluster.partition in slurm_cluster.partitions
    assert slurm_cluster.cpus >= 1
    assert slurm_cluster.nodes


@pytest.mark.slurm
def test_start_local_slurm_is_idempotent(slurm_cluster) -> None:
    """A second start of a running cluster keeps the same daemons (no restart) and the node stays usable."""
    state_dir = Path(os.environ.get("SWEEP_SLURM_DIR", "/var/tmp/sweep-slurm"))
    pid_files = [state_dir / "run" / "slurmctld.pid", state_dir / "run" / "slurmd.pid"]
    if os.geteuid() != 0 or not all(p.exists() for p in pid_files):
        pytest.skip("this SLURM was not started by launchers/slurm/start-local-slurm.sh (or not as root)")
    before = [p.read_text() for p in pid_files]
    result = subprocess.run(["bash", str(LAUNCHERS / "slurm" / "start-local-slurm.sh")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert [p.read_text() for p in pid_files] == before
    assert "starting" not in result.stdout

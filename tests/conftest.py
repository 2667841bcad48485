"""Shared pytest fixtures: real PostgreSQL and SLURM services, and skips for missing hardware.

The services come from ``launchers/start-test-services.sh``; when one is not reachable, the tests that need it
skip with the reason instead of failing, so the same suite runs on a laptop, in CI and on a cluster.
Tests that use ``postgres_url`` / ``slurm_cluster`` get the ``postgres`` / ``slurm`` marker automatically
(so ``-m "not slurm"`` deselects them).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import pytest

DEFAULT_POSTGRES_URL = "postgresql://sweep:sweep@127.0.0.1:54329/sweep_test"
POSTGRES_URL_ENV = "SWEEP_TEST_POSTGRES_URL"
# Node states in which SLURM accepts and runs jobs (busy ones only delay them); down/drained/failed are not.
SLURM_READY_STATES = ("idle", "mixed", "allocated", "completing")
_FIXTURE_MARKERS = {"postgres_url": "postgres", "slurm_cluster": "slurm"}


# ----------------------------------------------------------------------------- collection hooks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark service-backed tests by the fixtures they use; skip ``gpu`` tests when CUDA is absent."""
    for item in items:
        for fixture, marker in _FIXTURE_MARKERS.items():
            if fixture in getattr(item, "fixturenames", ()) and item.get_closest_marker(marker) is None:
                item.add_marker(getattr(pytest.mark, marker))
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return  # do not import torch for nothing
    reason = _cuda_missing_reason()
    if reason:
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason=reason))


def _cuda_missing_reason() -> str | None:
    try:
        import torch
    except ImportError as err:  # pragma: no cover - torch is a dependency
        return f"gpu test: torch not importable ({err})"
    if not torch.cuda.is_available():
        return f"gpu test: torch {torch.__version__} sees no CUDA device"
    return None


# ----------------------------------------------------------------------------- PostgreSQL
def _postgres_connect_error(url: str) -> str | None:
    """Why ``url`` cannot be used (None when a connection works)."""
    try:
        import psycopg2
    except ImportError:
        return "psycopg2 is not installed (pip install psycopg2-binary)"
    try:
        psycopg2.connect(_libpq_url(url), connect_timeout=3).close()
    except psycopg2.Error as err:
        return f"cannot connect to {_redact(url)}: {str(err).strip().splitlines()[0]}"
    return None


def _redact(url: str) -> str:
    """The URL with its password replaced, for skip messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _libpq_url(url: str) -> str:
    """``postgresql+driver://...`` (SQLAlchemy) -> ``postgresql://...`` (libpq/psycopg2)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme=parts.scheme.split("+", 1)[0]))


def _sqlalchemy_url(url: str) -> str:
    """Name the installed driver: SQLAlchemy >= 2.1 reads a bare ``postgresql://`` as psycopg 3, which the
    ``postgres`` extra does not install (it installs psycopg2-binary)."""
    parts = urlsplit(url)
    if "+" in parts.scheme:
        return url
    try:
        import psycopg  # noqa: F401

        driver = "psycopg"
    except ImportError:
        driver = "psycopg2"
    return urlunsplit(parts._replace(scheme=f"{parts.scheme}+{driver}"))


def _with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def _with_search_path(url: str, schema: str) -> str:
    """libpq ``options`` in the URL: every connection made from it (Optuna's engine too) uses ``schema``."""
    parts = urlsplit(url)
    extra = f"options=-csearch_path%3D{schema}"
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


def _admin_execute(url: str, sql: str) -> None:
    """Run one statement outside a transaction (CREATE/DROP DATABASE refuse to run inside one)."""
    import psycopg2

    conn = psycopg2.connect(_libpq_url(url), connect_timeout=5)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


@pytest.fixture(scope="session")
def _postgres_base_url() -> str:
    url = os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL)
    reason = _postgres_connect_error(url)
    if reason:
        pytest.skip(f"PostgreSQL unavailable ({reason}); start it with launchers/start-test-services.sh "
                    f"or set {POSTGRES_URL_ENV}")
    return url


@pytest.fixture
def postgres_url(_postgres_base_url: str) -> Iterator[str]:
    """A SQLAlchemy URL (driver named, for Optuna's RDBStorage) to an empty database of this test's own.

    A fresh database (dropped afterwards) when the role may create one, else a fresh schema in the given
    database (selected through the URL's ``options=-csearch_path``): Optuna's tables never leak between tests.
    """
    import psycopg2

    name = f"sweep_t_{uuid.uuid4().hex[:12]}"
    try:
        _admin_execute(_postgres_base_url, f'CREATE DATABASE "{name}"')
    except psycopg2.errors.InsufficientPrivilege:
        yield from _schema_scoped_url(_postgres_base_url, name)
        return
    try:
        yield _sqlalchemy_url(_with_database(_postgres_base_url, name))
    finally:
        _admin_execute(_postgres_base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _schema_scoped_url(url: str, schema: str) -> Iterator[str]:
    _admin_execute(url, f'CREATE SCHEMA "{schema}"')
    try:
        yield _sqlalchemy_url(_with_search_path(url, schema))
    finally:
        _admin_execute(url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# ----------------------------------------------------------------------------- SLURM
@dataclass(frozen=True)
class SlurmCluster:
    """What the tests need to know about the reachable SLURM: default partition, its nodes and CPUs."""

    partition: str
    nodes: tuple[str, ...]
    cpus: int
    partitions: tuple[str, ...]


def _slurm_unavailable_reason() -> str | None:
    if shutil.which("sinfo") is None:
        return "sinfo not found (no SLURM client installed)"
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 15 s"
    if out.returncode != 0:
        return f"sinfo failed (exit {out.returncode}): {out.stderr.strip()[:200]}"
    states = {line.split()[1].rstrip("*~#") for line in out.stdout.splitlines() if len(line.split()) == 2}
    if not states & set(SLURM_READY_STATES):
        return f"no SLURM node is {', '.join(SLURM_READY_STATES)} (states: {sorted(states) or 'none'})"
    return None


def _describe_slurm() -> SlurmCluster:
    out = subprocess.run(["sinfo", "-h", "-o", "%P %N %c %D"], capture_output=True, text=True,
                         timeout=15, check=True).stdout.split("\n")
    rows = [line.split() for line in out if line.strip()]
    default = next((row for row in rows if row[0].endswith("*")), rows[0])
    partition = default[0].rstrip("*")
    nodes = subprocess.run(["sinfo", "-h", "-N", "-p", partition, "-o", "%N"], capture_output=True, text=True,
                           timeout=15, check=True).stdout.split()
    partitions = tuple(row[0].rstrip("*") for row in rows)
    return SlurmCluster(partition=partition, nodes=tuple(sorted(set(nodes))),
                        cpus=int(default[2].rstrip("+")), partitions=partitions)


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    """The reachable SLURM cluster (a node that can run jobs), else the test is skipped with the reason."""
    reason = _slurm_unavailable_reason()
    if reason:
        pytest.skip(f"SLURM unavailable: {reason}; start it with launchers/start-test-services.sh (as root)")
    return _describe_slurm()


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 1 MiB tmpfs under tmp_path (``tests/_disks.py``): the ENOSPC tests fill it."""
    from _disks import mounted_tiny_disk

    with mounted_tiny_disk(tmp_path / "disk") as disk:
        yield disk

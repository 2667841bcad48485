"""Storage URLs -> Optuna storages.

- ``None``/empty: SQLite in a stable place (``<cwd>/.sweep/optuna.db``), so re-running the same command resumes.
  SQLite is for one driver on a local disk (not NFS, not many writers: Optuna's own advice).
- ``journal:///abs/path.log`` (or ``journal://rel/path.log``): JournalStorage on a JournalFileBackend, made for
  shared file systems and tens of workers.
- ``sqlite:///...``, ``postgresql[+driver]://...``, ``mysql...``: passed to Optuna's RDBStorage.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage

DEFAULT_STORAGE_DIR = ".sweep"
DEFAULT_STORAGE_FILE = "optuna.db"
JOURNAL_SCHEME = "journal://"
RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")


class StorageError(ValueError):
    """A storage URL that does not name a supported backend."""


def default_storage_url(base_dir: str | Path) -> str:
    return f"sqlite:///{(Path(base_dir) / DEFAULT_STORAGE_DIR / DEFAULT_STORAGE_FILE).resolve()}"


def normalize_storage_url(url: str | None, base_dir: str | Path = ".") -> str:
    """Fill in the default and make relative SQLite/journal paths absolute against ``base_dir`` (the directory
    the command was started from), so trial workers started elsewhere open the same file."""
    if not url:
        return default_storage_url(base_dir)
    if url.startswith(JOURNAL_SCHEME):
        path = Path(url[len(JOURNAL_SCHEME):])
        return JOURNAL_SCHEME + str(path if path.is_absolute() else (Path(base_dir) / path).resolve())
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme not in RDB_SCHEMES:
        raise StorageError(f"storage={url!r}: unsupported scheme '{scheme}'; allowed: journal:///path, "
                           f"sqlite:///path, postgresql://..., mysql://... (or null for the default SQLite)")
    if scheme == "sqlite" and url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rel = url[len("sqlite:///"):]
        if rel and rel != ":memory:":
            return f"sqlite:///{(Path(base_dir) / rel).resolve()}"
    return url


def make_storage(url: str | None, base_dir: str | Path = ".") -> BaseStorage:
    """An Optuna storage for ``url`` (see module doc); creates parent directories of file-backed storages."""
    url = normalize_storage_url(url, base_dir)
    if url.startswith(JOURNAL_SCHEME):
        path = Path(url[len(JOURNAL_SCHEME):])
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(path)))
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs["connect_args"] = {"timeout": 60}  # workers reporting intermediate values share the file
    else:
        engine_kwargs["pool_pre_ping"] = True
    return optuna.storages.RDBStorage(with_available_driver(url), engine_kwargs=engine_kwargs)


def with_available_driver(url: str) -> str:
    """``postgresql://`` means psycopg 3 to SQLAlchemy 2.1; when only psycopg2 is installed (our ``postgres``
    extra), name it, so a plain PostgreSQL URL just works."""
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare) and not _importable("psycopg") and _importable("psycopg2"):
            return "postgresql+psycopg2://" + url[len(bare):]
    return url


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def as_storage(storage: str | BaseStorage | None, base_dir: str | Path = ".") -> BaseStorage:
    return storage if isinstance(storage, BaseStorage) else make_storage(storage, base_dir)

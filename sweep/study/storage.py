"""Storage URLs -> Optuna storages.

- ``None``/empty: SQLite in a stable place (``<cwd>/.sweep/optuna.db``), so re-running the same command resumes.
  SQLite is for one driver on a local disk (not NFS, not many writers: Optuna's own advice).
- ``journal:///abs/path.log`` (or ``journal://rel/path.log``): JournalStorage on a JournalFileBackend, made for
  shared file systems and tens of workers.
- ``sqlite:///...``, ``postgresql[+driver]://...``, ``mysql...``: passed to Optuna's RDBStorage.

Passwords: give none in the URL and let the driver find it in ``PGPASSWORD`` / ``~/.pgpass`` (libpq) or
``SWEEP_STORAGE_PASSWORD`` (any database). A password that is in the URL is used by the driver only: every file
and message shows the URL masked (``mask_url``), and workers get the URL without it plus the password in their
environment (``SWEEP_STORAGE_PASSWORD``), never in a file.
"""
from __future__ import annotations

import errno
import fcntl
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import optuna
from optuna.storages import BaseStorage

from sweep.errors import SweepError
from sweep.safety import MASK, password_span, redact_text, register_secret  # noqa: F401 - re-exported

DEFAULT_STORAGE_DIR = ".sweep"
DEFAULT_STORAGE_FILE = "optuna.db"
JOURNAL_SCHEME = "journal://"
RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")
PASSWORD_ENV = "SWEEP_STORAGE_PASSWORD"


class StorageError(SweepError, ValueError):
    """A storage URL that does not name a supported backend."""


class StudyNotFoundError(SweepError, LookupError):
    """A read-only command named a storage file or a study that does not exist (the message lists what does)."""


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
        raise StorageError(f"storage={mask_url(url)!r}: unsupported scheme '{scheme}'; allowed: journal:///path, "
                           f"sqlite:///path, postgresql://..., mysql://... (or null for the default SQLite)")
    if scheme == "sqlite" and url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rel = url[len("sqlite:///"):]
        if rel and rel != ":memory:":
            return f"sqlite:///{(Path(base_dir) / rel).resolve()}"
    return url


def make_storage(url: str | None, base_dir: str | Path = ".", create: bool = True) -> BaseStorage:
    """An Optuna storage for ``url`` (see module doc); creates parent directories of file-backed storages.

    ``create=False`` is for read-only commands (progress, results, select): a missing SQLite or journal file
    raises :class:`StudyNotFoundError` instead of being created, and no lock file is written beside it.
    """
    url = normalize_storage_url(url, base_dir)
    if not create:
        _require_storage_file(url)
    if url.startswith(JOURNAL_SCHEME):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        from sweep.study.journal import check_and_repair

        path = Path(url[len(JOURNAL_SCHEME):])
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        check_and_repair(path)  # a torn last line must go before anything is appended after it
        return JournalStorage(JournalFileBackend(str(path)))
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        db = Path(url[len("sqlite:///"):])
        engine_kwargs["connect_args"] = {"timeout": 60}  # workers reporting intermediate values share the file
        if not create:  # the schema exists (Optuna wrote it): no creation race to guard
            return _rdb_storage(url, engine_kwargs, read_only=True)
        db.parent.mkdir(parents=True, exist_ok=True)
        with _file_lock(db.with_name(db.name + ".lock")):  # two drivers creating the schema at once
            return _rdb_storage(url, engine_kwargs)
    engine_kwargs["pool_pre_ping"] = True
    return _rdb_storage(with_password(url), engine_kwargs)


def _require_storage_file(url: str) -> None:
    """A file-backed storage must already exist for a read-only command (a typo must not create a database)."""
    if url.startswith(JOURNAL_SCHEME):
        path = Path(url[len(JOURNAL_SCHEME):])
    elif url.startswith("sqlite:///") and url[len("sqlite:///"):] not in ("", ":memory:"):
        path = Path(url[len("sqlite:///"):])
    else:
        return
    if not path.is_file():
        raise StudyNotFoundError(f"no storage file {path} (from --storage {mask_url(url)}): check the path; "
                                 "a sweep prints its storage URL when it starts")


def find_study(storage: BaseStorage, study_name: str, url: str = "") -> None:
    """Raise :class:`StudyNotFoundError` naming the study and listing the studies that exist."""
    names = sorted(s.study_name for s in storage.get_all_studies())
    if study_name in names:
        return
    import difflib

    where = f" in {mask_url(url)}" if url else ""
    close = difflib.get_close_matches(study_name, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    listing = ", ".join(repr(n) for n in names) if names else "none"
    raise StudyNotFoundError(f"no study {study_name!r}{where}{hint}. Studies there: {listing}")


def _rdb_storage(url: str, engine_kwargs: dict[str, Any], attempts: int = 5, read_only: bool = False
                 ) -> BaseStorage:
    """RDBStorage, retried when another process created the schema at the same moment (the loser of that
    race sees 'already exists' / a UNIQUE violation on alembic_version; the schema is there on the retry).
    ``read_only``: a command that only reads an existing study skips the schema creation and the version check
    (the check imports alembic, ~0.2 s of every ``sweep progress``)."""
    skips = {"skip_table_creation": True, "skip_compatibility_check": True} if read_only else {}
    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(with_available_driver(url), engine_kwargs=engine_kwargs, **skips)
        except Exception as err:  # noqa: BLE001 - SQLAlchemy's IntegrityError/OperationalError/ProgrammingError
            text = str(err)
            racing = "already exists" in text or "alembic_version" in text or "duplicate key" in text
            if not racing or attempt == attempts - 1:
                raise StorageError(f"storage={mask_url(url)!r}: {redact_text(text.splitlines()[0])}") from None
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- passwords
# What a storage says when its disk is full: SQLite, PostgreSQL / MySQL (the server's disk), the journal file.
STORAGE_FULL_MARKERS = ("database or disk is full", "no space left on device", "could not extend file")
_STORAGE_MODULES = ("sqlalchemy", "sqlite3", "psycopg", "pymysql", "MySQLdb")


def storage_full(err: BaseException) -> bool:
    """Whether ``err`` is the study storage failing for a full disk: an error raised by the storage (Optuna's
    storage code, SQLAlchemy or the database driver; Optuna wraps SQLAlchemy wraps the driver) in a chain that
    says the disk is full. A full disk elsewhere (a run dir, the sweep dir) is not the storage's."""
    chain = _error_chain(err)
    return any(_raised_by_storage(e) for e in chain) and any(_says_full(e) for e in chain)


def _error_chain(err: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: Optional[BaseException] = err
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _raised_by_storage(err: BaseException) -> bool:
    import traceback

    if isinstance(err, optuna.exceptions.StorageInternalError) or type(err).__module__.startswith(_STORAGE_MODULES):
        return True
    return any("/optuna/storages/" in frame.filename for frame in traceback.extract_tb(err.__traceback__))


def _says_full(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return True
    return any(marker in str(err).lower() for marker in STORAGE_FULL_MARKERS)


def split_password(url: str) -> tuple[str, Optional[str]]:
    """``(url without its password, password or None)``; a masked password (``***``) counts as none. The
    password is found by ``password_span`` (any characters, ``'`` and ``@`` included) and remembered, so every
    later message and file of this process masks it (``register_secret``)."""
    span = password_span(url)
    if span is None:
        return url, None
    password = url[span[0]:span[1]]
    bare = url[:span[0] - 1] + url[span[1]:]
    if password == MASK:
        return bare, None
    register_secret(password)
    plain = _unquote(password)
    register_secret(plain)
    return bare, plain


def mask_url(url: Optional[str]) -> str:
    """The URL with its password replaced by ``***`` (for files and messages)."""
    split_password(url or "")  # remembers the password, so texts that quote this URL mask it too
    return redact_text(url or "")


def with_password(url: str) -> str:
    """The URL the driver connects with: its own password, else ``SWEEP_STORAGE_PASSWORD``; with neither,
    the URL as is (libpq then reads PGPASSWORD or ~/.pgpass)."""
    bare, password = split_password(url)
    password = password or os.environ.get(PASSWORD_ENV)
    if not password:
        return bare
    match = re.match(r"(?P<head>[a-zA-Z][\w+.-]*://)(?P<user>[^:/@]+)@", bare)  # user@ (password split off)
    if match is None:  # no user name in the URL: a password alone means nothing to the driver
        return bare
    from urllib.parse import quote

    return f"{match.group('head')}{match.group('user')}:{quote(password, safe='')}@{bare[match.end():]}"


def _unquote(text: str) -> str:
    from urllib.parse import unquote

    return unquote(text)


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


def as_storage(storage: str | BaseStorage | None, base_dir: str | Path = ".", create: bool = True) -> BaseStorage:
    return storage if isinstance(storage, BaseStorage) else make_storage(storage, base_dir, create=create)

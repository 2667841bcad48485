"""What keeps a sweep from running code it did not write: private folders and authenticated pickles.

The driver and its workers exchange pickles (a trial's payload, its result). Unpickling runs code, so a pickle
is only ever read (1) from a folder that no other user can write (``secure_dir``: ours, not group- or
world-writable; created 0700) and (2) when it carries an HMAC made with a key that only this driver and its own
workers hold (``sign`` / ``unpickle_signed``; the key lives in the driver's memory and reaches a local worker
through its environment, never a file).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import stat
from pathlib import Path
from typing import Any

KEY_ENV = "SWEEP_WORKER_KEY"  # hex key of the driver that started this worker (local launcher)
_MAGIC = b"sweep-hmac-sha256\n"
_DRIVER_KEY: bytes | None = None
MASK = "***"
# scheme://user:password@ in a URL or anywhere in a text (a YAML file, an error message)
CREDENTIALS = re.compile(r"(?P<head>\b[a-zA-Z][\w+.-]*://[^:/@\s'\"]*:)(?P<password>[^@\s'\"]+)(?P<at>@)")


def redact_text(text: str) -> str:
    """Every ``scheme://user:password@`` in ``text`` with the password masked (files, messages, payloads)."""
    return CREDENTIALS.sub(lambda m: f"{m.group('head')}{MASK}{m.group('at')}", text)


class UnsafeFolderError(PermissionError):
    """A folder that another user could write: nothing executable is read from it."""


class UntrustedPickleError(PermissionError):
    """A pickle without a valid HMAC of this driver: it is not loaded."""


# ----------------------------------------------------------------------------- folders
def secure_dir(path: str | Path) -> Path:
    """Create ``path`` (and missing parents) mode 0700, or check an existing one: owned by this user and not
    writable by group or others. Raises ``UnsafeFolderError`` naming the folder, its owner and mode."""
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # another process of ours made it meanwhile: checked below
            continue
        os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask; make it exact
    check_private_dir(path)
    return path


def check_private_dir(path: str | Path) -> None:
    """Refuse a folder owned by another user, a symlink, or one that group/others may write."""
    path = Path(path)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UnsafeFolderError(f"{path}: expected a real folder, found a symlink or file; remove it or choose "
                                f"another hydra.sweep.dir")
    if info.st_uid != os.geteuid():
        raise UnsafeFolderError(f"{path}: owned by uid {info.st_uid}, not by this user (uid {os.geteuid()}); "
                                f"sweep folders must be your own (another user could swap the pickles and "
                                f"checkpoints read from it): choose another hydra.sweep.dir")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeFolderError(f"{path}: mode {stat.filemode(info.st_mode)} lets group/others write; allowed: "
                                f"not group- or world-writable (run `chmod go-w '{path}'`, or choose another "
                                f"hydra.sweep.dir)")


# ----------------------------------------------------------------------------- authenticated pickles
def driver_key() -> bytes:
    """This process's HMAC key: the one handed down by our driver (worker side), else a fresh random one."""
    global _DRIVER_KEY
    if _DRIVER_KEY is None:
        inherited = os.environ.get(KEY_ENV)
        _DRIVER_KEY = bytes.fromhex(inherited) if inherited else secrets.token_bytes(32)
    return _DRIVER_KEY


def worker_env() -> dict[str, str]:
    """The environment entry that lets a worker sign and verify with the driver's key."""
    return {KEY_ENV: driver_key().hex()}


def sign(body: bytes, key: bytes | None = None) -> bytes:
    """``body`` prefixed with its HMAC-SHA256 under ``key`` (default: the driver's key)."""
    digest = hmac.new(key or driver_key(), body, hashlib.sha256).hexdigest().encode()
    return _MAGIC + digest + b"\n" + body


def verify(blob: bytes, source: str, key: bytes | None = None) -> bytes:
    """The body of a signed blob; raises ``UntrustedPickleError`` (naming ``source``) when the HMAC is wrong."""
    if not blob.startswith(_MAGIC):
        raise UntrustedPickleError(f"{source}: not signed by a sweep driver; refusing to unpickle it")
    digest, _, body = blob[len(_MAGIC):].partition(b"\n")
    expected = hmac.new(key or driver_key(), body, hashlib.sha256).hexdigest().encode()
    if not hmac.compare_digest(digest, expected):
        raise UntrustedPickleError(f"{source}: HMAC does not match this driver's key (modified or written by "
                                   f"someone else); refusing to unpickle it")
    return body


def pickle_signed(obj: Any) -> bytes:
    import cloudpickle

    return sign(cloudpickle.dumps(obj))


def unpickle_signed(path: Path) -> Any:
    """Load a signed pickle file; the HMAC is checked before a single byte is unpickled."""
    import cloudpickle

    return cloudpickle.loads(verify(path.read_bytes(), str(path)))


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` mode 0600 through a temp file unique to this writer, then rename."""
    tmp = path.with_name(f".{path.name}.{unique_suffix()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def unique_suffix() -> str:
    """``<host>.<pid>.<random>``: temp files of two writers (two hosts, two processes) never collide."""
    import socket

    return f"{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}.tmp"

"""What keeps a sweep from running code it did not write: private folders and authenticated pickles.

The driver and its workers exchange pickles (a trial's payload, its result). Unpickling runs code, so a pickle
is only ever read (1) from a folder that no other user can write or swap (``secure_dir``: ours, not group- or
world-writable, created 0700, and no folder above it writable by another user unless sticky; our own pickles are
opened through a handle on their checked folder) and (2) when it carries an HMAC made with a key that only this
driver and its own workers hold (``sign`` / ``unpickle_signed``; the key lives in the driver's memory and
reaches a local worker through its environment, never a file). Still trusted: this user, root, and the SLURM
spool (the job script and environment slurmctld keeps).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import stat
from pathlib import Path
from typing import Any

from sweep.errors import SweepError

KEY_ENV = "SWEEP_WORKER_KEY"  # hex key of the driver that started this worker (local launcher)
_MAGIC = b"sweep-hmac-sha256\n"
_DRIVER_KEY: bytes | None = None
MASK = "***"
# scheme://user:password@ in a text (a YAML file, an error message), where the URL's end is unknown: a password
# stops at whitespace or a quote here; ``register_secret`` catches the rest (any character, any escaping)
CREDENTIALS = re.compile(r"(?P<head>\b[a-zA-Z][\w+.-]*://[^:/@\s'\"]*:)(?P<password>[^@\s'\"]+)(?P<at>@)")
_SCHEME = re.compile(r"[a-zA-Z][\w+.-]*://")
_HOST = re.compile(r"[\w.\-\[\]:%]*(?:[/?]|$)")  # host[:port] up to the path, query or end of the URL
_URL_LEGAL = "!$&'()*+,;=:"  # sub-delims and ':' may stand unencoded in a URL's userinfo (RFC 3986)
_SECRETS: set[str] = set()


def password_span(url: str) -> tuple[int, int] | None:
    """``(start, end)`` of the password in a whole URL ``scheme://user:password@host...`` (or a one-word text
    holding one, such as the override ``hydra.sweeper.storage='<url>'``), or None.

    The userinfo runs up to the LAST ``@`` that is followed by a host and then ``/``, ``?`` or the end, so ``@``,
    ``:``, quotes and even ``/`` may stand raw in a password; an ``@`` inside the query of an earlier such ``@``
    (``?email=a@b.c``) is no userinfo. Raw ``?``, ``#`` and ``%`` in a password must be percent-encoded, as in
    any URL."""
    scheme = _SCHEME.search(url)
    if scheme is None:
        return None
    hosts = [(i, m.end()) for i, ch in enumerate(url) if ch == "@" and i >= scheme.end()
             for m in [_HOST.match(url, i + 1)] if m is not None]
    if not hosts:
        return None
    at = hosts[-1][0]
    for i, host_end in hosts[:-1]:
        query = url.find("?", host_end - 1)
        if 0 <= query < at:  # the later '@' sits in this one's query string
            at = i
            break
    colon = url.find(":", scheme.end(), at)
    return None if colon < 0 else (colon + 1, at)


def register_secret(secret: str | None) -> None:
    """Remember a password this process holds, so ``redact_text`` masks it in every URL it shows up in (raw,
    URL-encoded, or escaped by YAML, JSON, repr or a Hydra override), whatever characters it has."""
    if secret and secret != MASK and len(secret) >= 3:  # shorter would mask unrelated text, URLs still mask it
        _SECRETS.add(secret)


def _secret_forms(secret: str) -> set[str]:
    from urllib.parse import quote

    encoded = {secret, quote(secret, safe=""), quote(secret, safe=_URL_LEGAL), quote(secret)}
    forms = set()
    for text in encoded:
        forms |= {text, text.replace("\\", "\\\\").replace("'", "\\'"), text.replace("'", "''"),
                  json.dumps(text)[1:-1], repr(text)[1:-1]}
    return {f for f in forms if f}


def _mask_word(word: str) -> str:
    span = password_span(word)
    return word if span is None else word[:span[0]] + MASK + word[span[1]:]


def redact_text(text: str) -> str:
    """``text`` with every password masked: known ones (``register_secret``) in any form between ``user:`` and
    ``@``, and the password of every ``scheme://user:password@`` (each word is parsed as a URL, see
    ``password_span``)."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        for form in sorted(_secret_forms(secret), key=len, reverse=True):
            text = text.replace(f":{form}@", f":{MASK}@")  # as it stands in a URL: a word elsewhere is left
    text = re.sub(r"\S+", lambda m: _mask_word(m.group()), text)
    return CREDENTIALS.sub(lambda m: f"{m.group('head')}{MASK}{m.group('at')}", text)


def one_line_message(err: BaseException) -> str:
    """An error's message as the one line a command prints instead of a traceback: its lines joined, any
    password masked (``args[0]`` when it is the only one: a ``KeyError``'s ``str()`` would add quotes)."""
    text = str(err.args[0]) if len(err.args) == 1 else str(err)
    return redact_text(" ".join(line.strip() for line in text.splitlines() if line.strip()))


class UnsafeFolderError(SweepError, PermissionError):
    """A folder that another user could write: nothing executable is read from it."""


class UntrustedPickleError(SweepError, PermissionError):
    """A pickle without a valid HMAC of this driver: it is not loaded."""


# ----------------------------------------------------------------------------- folders
def secure_dir(path: str | Path) -> Path:
    """Create ``path`` (and missing parents) mode 0700, or check an existing one: owned by this user and not
    writable by group or others. Raises ``UnsafeFolderError`` naming the folder, its owner and mode."""
    path = Path(path).absolute()
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for ancestor in path.parents:
        if ancestor not in missing:  # nothing is created under a folder another user could swap
            _check_ancestor(ancestor, path)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # another process of ours made it meanwhile: checked below
            continue
        os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask; make it exact
    check_folder_chain(path)
    return path


def check_folder_chain(path: str | Path) -> None:
    """``path`` private (``check_private_dir``) and no folder above it that another user could write: whoever
    can write a parent can rename the sweep dir and put their own in its place, so every ancestor up to ``/``
    (as given and as resolved) must be owned by root or us and be writable by nobody else, or be sticky (as
    ``/tmp``: nobody renames another user's entry). Still trusted: this user, root, and the SLURM spool."""
    path = Path(path).absolute()
    check_private_dir(path)
    for ancestor in dict.fromkeys([*path.parents, *path.resolve().parents]):
        _check_ancestor(ancestor, path)


def _check_ancestor(ancestor: Path, path: Path) -> None:
    info = os.stat(ancestor)
    if info.st_uid not in (0, os.geteuid()):
        raise UnsafeFolderError(f"{ancestor} (above {path}) is owned by uid {info.st_uid}, who could rename the "
                                f"sweep dir and swap in their own pickles; allowed: folders owned by you or root "
                                f"up to /: choose another hydra.sweep.dir")
    others = stat.S_IWOTH | (0 if _private_group(info) else stat.S_IWGRP)
    if info.st_mode & others and not info.st_mode & stat.S_ISVTX:
        raise UnsafeFolderError(f"{ancestor} (above {path}): mode {stat.filemode(info.st_mode)} lets another "
                                f"user rename the sweep dir and swap in their own pickles; allowed: not writable by "
                                f"group/others, or sticky (run `chmod go-w '{ancestor}'` or `chmod +t "
                                f"'{ancestor}'`, or choose another hydra.sweep.dir)")


def _private_group(info: os.stat_result) -> bool:
    """A group-writable folder is still private when its group is its owner's own (the user-private-group
    convention: a group named after the owner, with no other member)."""
    import grp
    import pwd

    try:
        group, owner = grp.getgrgid(info.st_gid), pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        return False
    return group.gr_name == owner and set(group.gr_mem) <= {owner}


def check_private_dir(path: str | Path) -> None:
    """Refuse a folder owned by another user, a symlink, or one that group/others may write."""
    path = Path(path)
    _check_private_stat(os.lstat(path), path)


def read_private(path: Path) -> bytes:
    """``path``'s bytes, opened relative to a handle on its folder that was checked once (ours, private, no
    symlink): a folder swapped after the check is not the one read from."""
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        _check_private_stat(os.fstat(folder), path.parent)
        with os.fdopen(os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder), "rb") as fh:
            return fh.read()
    finally:
        os.close(folder)


def _check_private_stat(info: os.stat_result, path: Path) -> None:
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

    return cloudpickle.loads(verify(read_private(Path(path)), str(path)))


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

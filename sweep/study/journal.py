"""Torn journal files: found and repaired (with a backup) before anything is appended to them.

Optuna's JournalFileBackend appends one JSON line per operation under its lock. A writer killed mid-write leaves
a last line without its newline; Optuna reads past it, but the next append glues a whole record onto the
fragment and from then on every read fails with ``JSONDecodeError``. ``check_and_repair`` runs (under Optuna's
own journal lock, so no writer is mid-append) before a storage is opened: a torn tail is cut off, a record glued
onto a fragment is separated from it, and the original file is kept as ``<journal>.torn-<time>.bak``. A line that
cannot be salvaged stops everything with the command that drops it:

    python -m sweep.study.journal repair PATH --drop-unreadable
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from sweep.errors import SweepError

log = logging.getLogger("sweep.study")
RECORD_START = b'{"op_code":'  # every Optuna journal record starts so (json.dumps with compact separators)
REPAIR_COMMAND = "python -m sweep.study.journal repair {path} --drop-unreadable"


class JournalCorruptError(SweepError, ValueError):
    """A journal line that is neither a record nor a salvageable torn write."""


@dataclass
class Scan:
    """What a journal holds: the good lines (each ending in a newline) and what was wrong with the rest."""

    lines: list[bytes] = field(default_factory=list)
    torn_tail: bool = False  # the last line lacked its newline
    salvaged: list[int] = field(default_factory=list)  # 1-based numbers of lines rebuilt from glued writes
    unreadable: list[int] = field(default_factory=list)  # 1-based numbers of lines that could not be rebuilt

    @property
    def damaged(self) -> bool:
        return self.torn_tail or bool(self.salvaged) or bool(self.unreadable)


def _parses(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, UnicodeDecodeError):
        return False


def _looks_whole(line: bytes) -> bool:
    """Fast path: one record per line, start to end (json.loads only runs on suspicious lines)."""
    return line.startswith(RECORD_START) and line.rstrip(b"\r\n").endswith(b"}") and line.count(RECORD_START) == 1


def _salvage(line: bytes) -> Optional[bytes]:
    """The last whole record inside a line that starts with a torn fragment, or None."""
    start = line.rfind(RECORD_START)
    while start > 0:
        candidate = line[start:]
        if _parses(candidate):
            return candidate
        start = line.rfind(RECORD_START, 0, start)
    return None


def scan(data: bytes) -> Scan:
    result = Scan()
    raw = data.splitlines(keepends=True)
    for number, line in enumerate(raw, start=1):
        last = number == len(raw)
        if not line.endswith(b"\n"):
            result.torn_tail = True
            if last and _parses(line):  # the record is whole, only its newline was lost
                result.lines.append(line + b"\n")
            continue
        if _looks_whole(line) or _parses(line):
            result.lines.append(line)
            continue
        rebuilt = _salvage(line)
        if rebuilt is None:
            result.unreadable.append(number)
        else:
            result.salvaged.append(number)
            result.lines.append(rebuilt)
    return result


def check_and_repair(path: Path, drop_unreadable: bool = False) -> Optional[Path]:
    """Repair ``path`` in place when it is torn; returns the backup's path (None when nothing was wrong).
    Raises ``JournalCorruptError`` naming the lines and the repair command when a line cannot be rebuilt."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return None
    if not _tail_torn(path) and not _has_glued_lines(path):
        return None
    from optuna.storages.journal import JournalFileSymlinkLock

    lock = JournalFileSymlinkLock(str(path))  # the lock Optuna's JournalFileBackend takes to append
    lock.acquire()
    try:
        return _repair_locked(path, drop_unreadable)
    finally:
        lock.release()


def _tail_torn(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.seek(-1, 2)
        return fh.read(1) != b"\n"


def _has_glued_lines(path: Path) -> bool:
    with path.open("rb") as fh:
        return any(not _looks_whole(line) for line in fh)


def _repair_locked(path: Path, drop_unreadable: bool) -> Optional[Path]:
    data = path.read_bytes()
    found = scan(data)
    if not found.damaged:
        return None
    if found.unreadable and not drop_unreadable:
        raise JournalCorruptError(
            f"journal {path}: line(s) {found.unreadable[:10]} are not Optuna records and cannot be rebuilt; "
            f"nothing was changed. Repair it (keeps a backup, drops those lines) with: "
            f"{REPAIR_COMMAND.format(path=path)}")
    backup = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%dT%H%M%S')}.bak")
    shutil.copy2(path, backup)
    tmp = path.with_name(f".{path.name}.repair.tmp")
    tmp.write_bytes(b"".join(found.lines))
    tmp.replace(path)
    log.warning("[sweep] journal %s was torn (%s): repaired, original kept as %s", path, _describe(found), backup)
    return backup


def _describe(found: Scan, done: bool = True) -> str:
    """What was wrong and what the repair did (``done``), or what it would do (``check`` changes nothing)."""
    parts = [f"last line cut off ({'removed' if done else 'repair removes it'})"] if found.torn_tail else []
    if found.salvaged:
        verb = "rebuilt" if done else "repair rebuilds them"
        parts.append(f"records glued onto a torn write on lines {found.salvaged[:10]} ({verb})")
    if found.unreadable:
        verb = "dropped" if done else "repair --drop-unreadable drops them, losing their operations"
        parts.append(f"unreadable lines {found.unreadable[:10]} ({verb})")
    return "; ".join(parts)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sweep.study.journal",
                                     description="Check or repair an Optuna journal file (keeps a backup).")
    parser.add_argument("action", choices=("check", "repair"))
    parser.add_argument("path", type=Path)
    parser.add_argument("--drop-unreadable", action="store_true",
                        help="drop lines that cannot be rebuilt (their operations are lost)")
    args = parser.parse_args(argv)
    if args.action == "check":
        found = scan(args.path.read_bytes())
        if not found.damaged:
            print(f"{args.path}: intact")
            return 0
        fix = REPAIR_COMMAND.format(path=args.path)
        if not found.unreadable:
            fix = fix.replace(" --drop-unreadable", "")
        print(f"{args.path}: damaged, nothing changed: {_describe(found, done=False)}; fix it (keeps a backup) "
              f"with: {fix}")
        return 1
    try:
        backup = check_and_repair(args.path, args.drop_unreadable)
    except JournalCorruptError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"{args.path}: " + (f"repaired; original kept as {backup}" if backup else "intact, nothing to do"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

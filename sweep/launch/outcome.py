"""What a finished trial job came back with, independent of the launcher that ran it.

Jobs return values, never exceptions, across process boundaries: submitit turns every exception into a
FailedJobError (its type lost) and a hard crash (exit 137) leaves no exception at all. So the worker converts an
exception into a failed outcome with its reason, and a pruned trial is a record with ``status: pruned``.
"""
from __future__ import annotations

import errno
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from sweep.reporting import COMPLETED, FAILED, PRUNED  # noqa: F401 - one definition, re-exported to launchers
DISK_FULL = "disk full (ENOSPC)"  # named first in a failure reason: the fix is on the disk, not in the trial
_ENOSPC_MARKERS = ("No space left on device", "ENOSPC", "Errno 28")
EXIT_NO_SPACE = 4  # the worker's exit code when its result hit a full disk (its stderr.log may be on it too)


@dataclass
class TrialOutcome:
    status: str  # completed | failed | pruned
    record: dict[str, Any] = field(default_factory=dict)
    failure_reason: Optional[str] = None

    @property
    def metrics(self) -> dict[str, Any]:
        metrics = self.record.get("metrics") if isinstance(self.record, Mapping) else None
        return dict(metrics) if isinstance(metrics, Mapping) else {}


def outcome_from_return(value: Any) -> TrialOutcome:
    """The task function's return value (the result record) -> outcome; the record's own status wins."""
    if not isinstance(value, Mapping):
        return TrialOutcome(FAILED, {}, f"bad_record: the task returned {type(value).__name__}, "
                                        f"expected the result record (a mapping)")
    record = _plain(value)
    status = str(record.get("status", COMPLETED))
    if status == COMPLETED:
        return TrialOutcome(COMPLETED, record, None)
    if status == PRUNED:
        return TrialOutcome(PRUNED, record, record.get("failure_reason"))
    reason = record.get("failure_reason") or f"record status {status!r}"
    return TrialOutcome(FAILED, record, str(reason))


def outcome_from_exception(err: BaseException, prefix: str = "exception") -> TrialOutcome:
    text = str(err).strip().splitlines()
    head = text[0] if text else ""
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        prefix = f"{DISK_FULL}: {prefix}"
    return TrialOutcome(FAILED, {}, f"{prefix}: {type(err).__name__}: {head}"[:500])


def names_disk_full(text: str) -> bool:
    """Whether an error text (a job's traceback, a worker's stderr) says the disk was full."""
    return any(marker in (text or "") for marker in _ENOSPC_MARKERS)


def outcome_from_exit(returncode: int, stderr_tail: str = "") -> TrialOutcome:
    """A worker that died without writing its result: name the signal (-9/137 is the OOM killer or SLURM)."""
    sig = -returncode if returncode < 0 else (returncode - 128 if returncode > 128 else 0)
    if sig:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        reason = f"crashed: worker killed by {name} (exit {128 + sig})"
    else:
        reason = f"crashed: worker exited with code {returncode} without a result"
    if returncode == EXIT_NO_SPACE or names_disk_full(stderr_tail):
        reason = f"{DISK_FULL}: {reason}"
    tail = stderr_tail.strip().splitlines()[-1:] if stderr_tail else []
    if tail:
        reason += f"; last stderr line: {tail[0][:300]}"
    return TrialOutcome(FAILED, {}, reason)


def _plain(value: Any) -> Any:
    """DictConfig / numpy scalars -> plain Python, so records pickle and store as JSON."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        return value.item()
    return value

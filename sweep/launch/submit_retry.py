"""Retrying a submission that SLURM refused for a passing reason, without ever running a trial twice.

A busy controller answers ``sbatch`` with "Socket timed out", "Resource temporarily unavailable" or a submit
limit ("job submit limit" / ``QOSMaxSubmitJobPerUserLimit``); the same ``sbatch`` seconds later goes through.
A refusal for the request itself (an unknown partition, a GRES the nodes lack) does not pass: it is raised at
once, so the sweep stops on the first one with sbatch's reason.

``sbatch`` that timed out may still have queued the job. submitit moves the job's pickle into place only after
``sbatch`` answers, so such a job can never run the trial; before each retry the jobs already queued under the
submission's name are cancelled (``cancel_orphans``), and a later driver adopts only the job whose pickle is in
place (``sweep.launch.slurm.adopt_intent``).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

# Seconds to wait before each retry: about 1.5 minutes in all, enough for a controller restart or a queue that
# drains; a limit that lasts longer stops the run uncounted and the next run submits again.
RETRY_DELAYS_S: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 20.0, 45.0)
TRANSIENT_MARKERS = (
    "socket timed out", "timed out", "resource temporarily unavailable", "temporarily unable",
    "try again", "unable to contact slurm controller", "connection refused", "slurm_persist_conn",
    "job submit limit", "maxsubmitjob", "slurmctld is busy", "controller not responding",
)
# Set by the sweep driver when a stop signal arrives during a submission: no more retries, the stop goes on.
stop_requested = threading.Event()


def is_transient(error_text: str) -> bool:
    """Whether ``sbatch``'s refusal names a passing cause (busy or unreachable controller, a submit limit)
    rather than something wrong with the request."""
    text = error_text.lower()
    return any(marker in text for marker in TRANSIENT_MARKERS)


def submit_with_retries(submit: Callable[[], T], cancel_orphans: Callable[[], Sequence[str]],
                        delays_s: Sequence[float] = RETRY_DELAYS_S,
                        sleep: Callable[[float], None] | None = None) -> T:
    """``submit()``, retried after each transient refusal (``is_transient``) with ``delays_s`` between tries;
    any other error, the last transient one, or a stop requested meanwhile is raised. ``cancel_orphans`` runs
    before each retry and returns the ids it cancelled (jobs a timed-out ``sbatch`` queued after all)."""
    wait = sleep or _interruptible_sleep
    for attempt, delay in enumerate((*delays_s, None), start=1):
        try:
            return submit()
        except Exception as err:  # noqa: BLE001 - submitit raises FailedJobError with sbatch's stderr
            if delay is None or not is_transient(str(err)) or stop_requested.is_set():
                raise
            cancelled = cancel_orphans()
            log.warning("sbatch refused the submission (try %d of %d: %s)%s; retrying in %.0f s", attempt,
                        len(delays_s) + 1, _first_line(err), f"; cancelled {len(cancelled)} job(s) it queued "
                        f"anyway ({', '.join(cancelled)})" if cancelled else "", delay)
            wait(delay)
            if stop_requested.is_set():
                raise
    raise AssertionError("unreachable: the last try returns or raises")


def _interruptible_sleep(seconds: float) -> None:
    stop_requested.wait(seconds)


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    refusal = [line for line in lines if "error" in line.lower()]
    return (refusal or lines or [type(err).__name__])[-1][:300]

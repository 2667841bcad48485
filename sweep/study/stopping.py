"""How a sweep driver stops: the stop signals it turns into a clean exit (cancel, requeue, exit 128 + signal),
a submission that holds them until its job ids are stored, and the errors that end a run for a reason outside
the trials (a full disk, refused submissions, another driver that took over)."""
from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sweep.errors import SweepError
from sweep.launch import submit_retry

log = logging.getLogger("sweep.study")


class SweepAbortedError(SweepError, RuntimeError):
    """Too many trials failed (``max_failure_ratio``)."""


class DriverStopped(SystemExit):
    """SIGTERM/SIGHUP reached the driver (scancel, a SLURM time limit, a closed terminal): exit 128+signal
    after the running trials are cancelled and requeued."""


class SweepEnvironmentError(SweepError, RuntimeError):
    """The sweep cannot go on for a reason outside the trials (a full disk, an unsafe folder, refused
    submissions): nothing is lost, the trials it could not run are requeued for the next run."""


class DriverSupersededError(SweepError, RuntimeError):
    """Another driver holds the study now (this one was judged lost): stop without touching its jobs."""


@contextmanager
def deferred_stop_signals() -> Iterator[None]:
    """SIGTERM / SIGHUP / SIGINT that arrive during a submission are held until it returns and its job ids
    are stored, then delivered: the stop that follows cancels those jobs too (main thread only). A submission
    waiting to retry a refused ``sbatch`` gives up at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        caught.append(signum)
        submit_retry.stop_requested.set()  # a refused sbatch is not retried: the stop goes on after this try

    submit_retry.stop_requested.clear()
    previous = {sig: signal.signal(sig, hold) for sig in (*STOP_SIGNALS, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130, what a shell reports for Ctrl-C


def _ignore_further_stops() -> None:
    """After the first stop signal, later ones (a second Ctrl-C) are ignored while the driver cleans up."""
    if threading.current_thread() is threading.main_thread():
        for sig in (*STOP_SIGNALS, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)


def _stop_code(err: BaseException) -> int:
    """128 + the signal: 130 for Ctrl-C, 143 for SIGTERM."""
    if isinstance(err, SystemExit) and isinstance(err.code, int):
        return err.code
    return EXIT_INTERRUPTED


def _moved_text(moved: Sequence[tuple[int, int]]) -> str:
    if not moved:
        return ""
    return " (requeued as " + ", ".join(f"{old} -> {new}" for old, new in moved) + ")"


def _on_stop_signal(signum: int, frame: Any) -> None:  # noqa: ARG001 - signal handler signature
    for sig in STOP_SIGNALS:  # a second signal must not interrupt the cancel-and-requeue that follows
        signal.signal(sig, signal.SIG_IGN)
    raise DriverStopped(128 + signum)


def _install_stop_handlers() -> dict[int, Any]:
    """SIGTERM/SIGHUP -> ``DriverStopped`` (as Ctrl-C -> KeyboardInterrupt), main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _on_stop_signal) for sig in STOP_SIGNALS}


def _restore_handlers(previous: Mapping[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _stop_name(err: BaseException) -> str:
    if isinstance(err, KeyboardInterrupt):
        return "SIGINT"
    code = err.code if isinstance(err, SystemExit) and isinstance(err.code, int) else 0
    try:
        return signal.Signals(code - 128).name
    except ValueError:
        return f"exit {code}"

"""Resuming a study after its driver died (kill -9, node loss): nothing lost, nothing run twice.

Optuna's heartbeat only covers ``study.optimize``; with ask/tell a dead driver leaves its trials RUNNING forever.
Each trial carries the id of the driver that asked it. The driver holding a study writes a heartbeat (a
timestamp in the study's user attrs, from a thread, every ``heartbeat_s``) into the storage itself, so liveness
works across hosts and on every storage (journal included): a holder is alive while its heartbeat is fresher
than ``timeout_s`` (on its own host a dead pid ends it at once), and a live holder is never taken over. A new
driver first adopts the still-running jobs of lost trials (the sweeper does that, see ``lost_trials``); what it
cannot adopt it fails (reason ``driver lost: requeued as trial N``) and enqueues again, so the study still reaches
exactly ``n_trials`` counted trials.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Optional

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep.errors import SweepError
from sweep.study import attrs as schema

LOST_PREFIX = "driver lost"
NOT_TRIAL_FAULT = "not the trial's fault"  # unsafe folder, full disk, refused submission: retried on the next run
DEFAULT_HEARTBEAT_S, DEFAULT_TIMEOUT_S = 10.0, 60.0
log = logging.getLogger("sweep.study")


class DriverConflictError(SweepError, RuntimeError):
    """Another live driver already drives this study."""


@dataclass(frozen=True)
class DriverInfo:
    host: str
    pid: int
    start: str

    @property
    def id(self) -> str:
        return f"{self.host}:{self.pid}:{self.start}"

    @classmethod
    def current(cls) -> "DriverInfo":
        return cls(socket.gethostname(), os.getpid(), dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))

    @classmethod
    def parse(cls, driver_id: str) -> "DriverInfo":
        host, pid, start = driver_id.split(":", 2)
        return cls(host, int(pid), start)

    def as_attrs(self) -> dict[str, Any]:
        return {schema.DRIVER_ID: self.id, "driver_host": self.host, "driver_pid": self.pid, "driver_start": self.start}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_counted(trial: FrozenTrial) -> bool:
    """Trials that count towards n_trials: all but those failed for a reason outside the trial (their driver
    died, the folder was unsafe, the disk full, the submission refused): those were requeued."""
    reason = str(trial.user_attrs.get(schema.FAILURE_REASON) or "")
    return not (trial.state == TrialState.FAIL and reason.startswith((LOST_PREFIX, NOT_TRIAL_FAULT)))


def claim_study(study: optuna.Study, me: DriverInfo, timeout_s: float = DEFAULT_TIMEOUT_S,
                settle_s: float = 0.0) -> None:
    """Record this driver (and a first heartbeat) in the study's user attrs; refuse while the holder is alive.

    ``settle_s`` > 0 re-reads the claim after that long: of two drivers claiming at once, the one whose write
    came first sees the other's id and steps back, so at most one proceeds."""
    attrs = study.user_attrs
    previous = attrs.get(schema.DRIVER_ID)
    if previous and previous != me.id and holder_alive(attrs, timeout_s):
        raise DriverConflictError(_conflict_message(study.study_name, attrs, timeout_s))
    for key, value in {**me.as_attrs(), schema.HEARTBEAT: time.time()}.items():
        study.set_user_attr(key, value)
    if settle_s > 0:
        time.sleep(settle_s)
        now = schema.fresh_study_attrs(study)
        if now.get(schema.DRIVER_ID) != me.id:
            raise DriverConflictError(_conflict_message(study.study_name, now, timeout_s))


def _conflict_message(name: str, attrs: Mapping[str, Any], timeout_s: float) -> str:
    age = time.time() - float(attrs.get(schema.HEARTBEAT) or 0.0)
    return (f"study '{name}' is driven by a live process ({attrs.get(schema.DRIVER_ID)}, last heartbeat {age:.0f} s "
            f"ago); it counts as lost after {timeout_s:.0f} s without one (hydra.sweeper.driver_timeout_s). "
            f"Stop it first or use another hydra.sweeper.study_name")


def holder_alive(attrs: Mapping[str, Any], timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Is the study's holder alive? Its own host's pid table answers at once when the pid is gone; otherwise
    (any host) its heartbeat must be fresher than ``timeout_s``."""
    driver_id = attrs.get(schema.DRIVER_ID)
    if not driver_id:
        return False
    try:
        info = DriverInfo.parse(str(driver_id))
    except ValueError:
        return False
    if info.host == socket.gethostname() and info.pid != os.getpid() and not pid_alive(info.pid):
        return False
    beat = attrs.get(schema.HEARTBEAT)
    if beat is None:  # a holder from before heartbeats: alive only if its pid on this host is
        return info.host == socket.gethostname() and pid_alive(info.pid)
    return time.time() - float(beat) < timeout_s


def release_study(study: optuna.Study, me: DriverInfo) -> None:
    """A driver that stops cleanly ends its heartbeat, so the next one need not wait for it to go stale."""
    try:
        if schema.fresh_study_attrs(study).get(schema.DRIVER_ID) == me.id:
            study.set_user_attr(schema.HEARTBEAT, 0.0)
    except Exception as err:  # noqa: BLE001 - the storage may be gone at exit: the heartbeat then goes stale
        log.warning("[sweep] could not release study '%s': %s", study.study_name, err)


class Heartbeat:
    """A daemon thread that refreshes this driver's heartbeat through its own storage connection (so a trial
    running inside the driver, a slow sbatch or a long tell never stops it). ``superseded`` is set when another
    driver holds the study now (this one was judged lost): the loop must then stop without touching its jobs."""

    def __init__(self, storage_factory: Callable[[], Any], study_name: str, me: DriverInfo,
                 interval_s: float = DEFAULT_HEARTBEAT_S) -> None:
        self.storage_factory, self.study_name, self.me, self.interval_s = storage_factory, study_name, me, interval_s
        self.superseded = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweep-heartbeat", daemon=True)

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 5)

    def _run(self) -> None:
        storage: Optional[Any] = None
        while not self._stop.wait(self.interval_s):
            try:
                storage = storage or self.storage_factory()
                study_id = storage.get_study_id_from_name(self.study_name)
                if storage.get_study_user_attrs(study_id).get(schema.DRIVER_ID) != self.me.id:
                    self.superseded.set()
                    return
                storage.set_study_user_attr(study_id, schema.HEARTBEAT, time.time())
            except Exception as err:  # noqa: BLE001 - a storage hiccup: try again next beat
                log.warning("[sweep] heartbeat not written (%s); retrying in %.0f s", err, self.interval_s)


def lost_trials(study: optuna.Study, me: DriverInfo, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[FrozenTrial]:
    """RUNNING trials whose driver is gone (called after ``claim_study`` succeeded)."""
    attrs = study.user_attrs
    lost = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get(schema.DRIVER)
        if owner == me.id or (owner and _owner_alive(str(owner), attrs, timeout_s)):
            continue
        lost.append(trial)
    return lost


def recover_lost_trials(study: optuna.Study, me: DriverInfo,
                        timeout_s: float = DEFAULT_TIMEOUT_S) -> list[tuple[int, int]]:
    """Fail RUNNING trials of dead drivers and enqueue their params; returns ``(lost, requeued)`` numbers."""
    return [(trial.number, requeue(study, trial)) for trial in lost_trials(study, me, timeout_s)]


def requeue(study: optuna.Study, trial: FrozenTrial, why: str = LOST_PREFIX) -> int:
    """Fail a RUNNING trial with ``<why>: requeued as trial N`` and enqueue its params as trial N."""
    new_number = _enqueue_copy(study, trial)
    schema.set_trial_attr(study, trial, schema.FAILURE_REASON, f"{why}: requeued as trial {new_number}")
    study.tell(trial.number, state=TrialState.FAIL)
    return new_number


def drop_unsubmitted(study: optuna.Study, trial: FrozenTrial) -> None:
    """Fail a RUNNING trial whose driver died before submitting it: nothing ran, and its params may be only
    partly stored (the kill can land between ``ask`` and the last ``suggest``), so they are not requeued; the
    sampler proposes afresh. ``is_counted`` leaves it out of ``n_trials``."""
    reason = f"{LOST_PREFIX} before submission: nothing ran; its proposal is dropped"
    schema.set_trial_attr(study, trial, schema.FAILURE_REASON, reason)
    study.tell(trial.number, state=TrialState.FAIL)


def _owner_alive(owner: str, study_attrs: Mapping[str, Any], timeout_s: float) -> bool:
    """A trial's driver is alive when it is the study's live holder, or (same host) its pid still runs."""
    try:
        info = DriverInfo.parse(owner)
    except ValueError:
        return False
    if owner == study_attrs.get(schema.DRIVER_ID):
        return holder_alive(study_attrs, timeout_s)
    return info.host == socket.gethostname() and pid_alive(info.pid)


def _enqueue_copy(study: optuna.Study, trial: FrozenTrial) -> int:
    study.enqueue_trial(dict(trial.params), user_attrs={schema.REQUEUED_FROM: trial.number}, skip_if_exists=False)
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    return max(t.number for t in waiting)


def params_key(params: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


def finished_params(trials: Iterable[FrozenTrial]) -> dict[tuple, FrozenTrial]:
    """COMPLETE trials by their params: a proposal equal to one of them is not run again."""
    return {params_key(t.params): t for t in trials if t.state == TrialState.COMPLETE}

"""Resuming a study after its driver died (kill -9, node loss): nothing lost, nothing run twice.

Optuna's heartbeat only covers ``study.optimize``; with ask/tell a dead driver leaves its trials RUNNING forever.
Each trial carries the id of the driver that asked it; on start-up a driver fails the RUNNING trials of drivers
that are gone (reason ``driver lost: requeued as trial N``) and enqueues their params again, so the study still
reaches exactly ``n_trials`` counted trials.
"""
from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

DRIVER_ATTR = "driver"  # trial user attr: id of the driver that asked it
LOST_PREFIX = "driver lost"
FAILURE_REASON = "failure_reason"


class DriverConflictError(RuntimeError):
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
        return {"driver_id": self.id, "driver_host": self.host, "driver_pid": self.pid, "driver_start": self.start}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_counted(trial: FrozenTrial) -> bool:
    """Trials that count towards n_trials: all but those failed because their driver died (they were requeued)."""
    reason = trial.user_attrs.get(FAILURE_REASON) or ""
    return not (trial.state == TrialState.FAIL and str(reason).startswith(LOST_PREFIX))


def claim_study(study: optuna.Study, me: DriverInfo, assume_foreign_dead: bool = True) -> None:
    """Record this driver in the study's user attrs; refuse when a live driver on this host still holds it."""
    previous = study.user_attrs.get("driver_id")
    if previous and previous != me.id and _holder_alive(previous, assume_foreign_dead):
        raise DriverConflictError(
            f"study '{study.study_name}' is driven by a live process ({previous}); stop it first or use "
            f"another hydra.sweeper.study_name")
    for key, value in me.as_attrs().items():
        study.set_user_attr(key, value)


def _holder_alive(driver_id: str, assume_foreign_dead: bool) -> bool:
    info = DriverInfo.parse(driver_id)
    if info.host != socket.gethostname():
        return not assume_foreign_dead
    return info.pid != os.getpid() and pid_alive(info.pid)


def recover_lost_trials(study: optuna.Study, me: DriverInfo, assume_foreign_dead: bool = True) -> list[tuple[int, int]]:
    """Fail RUNNING trials of dead drivers and enqueue their params; returns ``(lost, requeued)`` numbers."""
    moves = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get(DRIVER_ATTR)
        if owner == me.id or (owner and _owner_alive(owner, assume_foreign_dead)):
            continue
        moves.append((trial.number, requeue(study, trial)))
    return moves


def requeue(study: optuna.Study, trial: FrozenTrial, why: str = LOST_PREFIX) -> int:
    """Fail a RUNNING trial with ``<why>: requeued as trial N`` and enqueue its params as trial N."""
    new_number = _enqueue_copy(study, trial)
    study._storage.set_trial_user_attr(trial._trial_id, FAILURE_REASON, f"{why}: requeued as trial {new_number}")
    study.tell(trial.number, state=TrialState.FAIL)
    return new_number


def _owner_alive(owner: str, assume_foreign_dead: bool) -> bool:
    try:
        info = DriverInfo.parse(owner)
    except ValueError:
        return False
    if info.host != socket.gethostname():
        return not assume_foreign_dead
    return pid_alive(info.pid)


def _enqueue_copy(study: optuna.Study, trial: FrozenTrial) -> int:
    study.enqueue_trial(dict(trial.params), user_attrs={"requeued_from": trial.number}, skip_if_exists=False)
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    return max(t.number for t in waiting)


def params_key(params: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


def finished_params(trials: Iterable[FrozenTrial]) -> dict[tuple, FrozenTrial]:
    """COMPLETE trials by their params: a proposal equal to one of them is not run again."""
    return {params_key(t.params): t for t in trials if t.state == TrialState.COMPLETE}

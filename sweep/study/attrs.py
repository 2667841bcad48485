"""The one schema of the study's and trials' user attributes, and the only module that reaches into Optuna.

Why: the driver, the resume logic, the results table and the commands all read and write the same attributes
(``job_id``, ``run_dir``, ``requeued_from``, ...); spelled as literals in each, a renamed key would silently
break resume. Here each key is named once with what it means, and the few places where Optuna offers no public
call (a trial's storage id, writing an attr of a trial we hold only as a ``FrozenTrial``, reading a study's
attrs fresh from the storage, several attrs in one transaction) go through named functions.

Several user attrs of a trial in one storage round trip (``set_user_attrs``): each ``Trial.set_user_attr`` is
its own transaction (one SQLite commit with an fsync, ~15 ms on the dev machine; a network round trip on
PostgreSQL), and the driver writes 4-6 attrs at a time (docs/ARCHITECTURE.md, "Per-trial overhead"). On an RDB
storage the attrs go in one transaction, through the same per-attr statement Optuna's own
``set_trial_user_attr`` runs; on any other storage (journal, in-memory) one call each. An attr that already
holds the value in the trial's cached view is not written again.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import optuna
from optuna.trial import FrozenTrial, Trial

# ----------------------------------------------------------------------------- trial user attributes
JOB_ID = "job_id"  # the launcher's job id (SLURM ``123`` or ``123_4``; local: the worker's pid)
RUN_DIR = "run_dir"  # the trial's run dir (its result.json, checkpoints, features)
RECORD_PATH = "record_path"  # the result record the trial was told from
LAUNCHER = "launcher"  # the launcher kind that ran it (how a later driver re-attaches)
JOB_FOLDER = "job_folder"  # SLURM: the submitit folder of its job
SUBMITTING = "submitting"  # before ``sbatch``: job name, array index, folder and run dir of the submission
SUBMITTED = "submitted"  # a foreign launcher ran it (no job id to record)
DRIVER = "driver"  # the id of the driver that asked it
ADOPTED_FROM = "adopted_from"  # the lost driver whose job this driver re-attached to
REQUEUED_FROM = "requeued_from"  # the trial this one runs again
RESUMED_RUN_DIR = "resumed_run_dir"  # the predecessor's run dir it resumed from
DUPLICATE_OF = "duplicate_of"  # the finished trial whose result it reused (same params)
METHOD = "method"  # the SSL method of its config: policies compare runs of one method
FAILURE_REASON = "failure_reason"  # why it failed, was pruned or requeued
# ----------------------------------------------------------------------------- study user attributes
SWEEP_DIR = "sweep_dir"  # where the trials' run dirs are (``sweep select`` reads out there)
OBJECTIVES = "objectives"  # the objectives' labels, in order
N_TRIALS = "n_trials"  # the study's target number of trials
SAMPLER = "sampler"  # the sampler's class name
DRIVER_ID = "driver_id"  # the driver holding the study (``resume.claim_study``)
HEARTBEAT = "driver_heartbeat"  # time.time() of the holder's last heartbeat (0: released)

_MISSING = object()


# ----------------------------------------------------------------------------- Optuna internals
def storage_of(study: optuna.Study) -> Any:
    """The study's storage (Optuna keeps it private)."""
    return study._storage


def study_id_of(study: optuna.Study | Any) -> int:
    """A study's id in the storage (a ``Study`` or a ``StudySummary``)."""
    return study._study_id


def trial_id_of(trial: Trial | FrozenTrial) -> int:
    """A trial's id in the storage (not its number): what the storage calls take."""
    return trial._trial_id


def fresh_trial(study: optuna.Study, trial: Trial | FrozenTrial) -> FrozenTrial:
    """The trial as the storage holds it now (state, attrs), not a cached view."""
    return study._storage.get_trial(trial._trial_id)


def live_trial(study: optuna.Study, frozen: FrozenTrial) -> Trial:
    """A ``Trial`` handle (tell, set_user_attr) on a RUNNING trial read back as a ``FrozenTrial``."""
    return Trial(study, frozen._trial_id)


def set_trial_attr(study: optuna.Study, trial: Trial | FrozenTrial, key: str, value: Any) -> None:
    """One user attr of a trial held as a ``FrozenTrial`` (no ``Trial`` handle to call ``set_user_attr`` on)."""
    study._storage.set_trial_user_attr(trial._trial_id, key, value)


def fresh_study_attrs(study: optuna.Study) -> dict[str, Any]:
    """The study's user attrs read from the storage now (``study.user_attrs`` may be a cached view)."""
    return study._storage.get_study_user_attrs(study._study_id)


def sweep_dir_of(study: optuna.Study | Any) -> Optional[str]:
    """The sweep dir a study recorded (a ``Study`` or a ``StudySummary``), or None."""
    value = study.user_attrs.get(SWEEP_DIR)
    return str(value) if value else None


def set_user_attrs(study: optuna.Study, trial: Trial, attrs: Mapping[str, Any]) -> int:
    """Write ``attrs`` onto ``trial`` (as ``trial.set_user_attr`` each would); returns how many were written."""
    cached = getattr(trial, "_cached_frozen_trial", None)
    known = cached.user_attrs if cached is not None else {}
    changed = {k: v for k, v in attrs.items() if known.get(k, _MISSING) is _MISSING or known[k] != v}
    if not changed:
        return 0
    if len(changed) == 1 or not _write_in_one_transaction(study, trial_id_of(trial), changed):
        for key, value in changed.items():
            trial.set_user_attr(key, value)
        return len(changed)
    if cached is not None:
        cached.user_attrs.update(changed)
    return len(changed)


def rdb_backend(storage: Any) -> Any:
    """The ``RDBStorage`` behind a storage (Optuna wraps it in a private ``_CachedStorage``), or None for a
    journal or in-memory storage: the plain-SQL fast paths (``set_user_attrs``, ``trial_rows``) need it."""
    from optuna.storages import RDBStorage

    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, RDBStorage) else None


def _write_in_one_transaction(study: optuna.Study, trial_id: int, attrs: Mapping[str, Any]) -> bool:
    """True when written (an RDB storage whose internals are as expected); False: nothing written."""
    backend = rdb_backend(study._storage)
    if backend is None:
        return False
    try:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        write = backend._set_trial_attr_without_commit
    except (ImportError, AttributeError):  # another Optuna version: the plain path is always right
        return False
    with _create_scoped_session(backend.scoped_session, True) as session:
        for key, value in attrs.items():
            write(session, models.TrialUserAttributeModel, trial_id, key, value)
    return True

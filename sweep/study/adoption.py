"""Trials a lost driver left behind: their jobs re-attached (SLURM, by job id or by the job name recorded before
``sbatch``), their finished results told from the run dir (``result.json``, never a pickle), their folders
renamed to the trial number that reruns them; and which failures are not the trial's fault."""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

from optuna.trial import Trial

from sweep.study import attrs as schema
from sweep.launch.outcome import (
    COMPLETED,
    DISK_FULL,
    TrialOutcome,
    outcome_from_return,
)

log = logging.getLogger("sweep.study")




NOT_TRIAL_FAULT_MARKERS = (DISK_FULL, "refused:", "submit failed:", "UnsafeFolderError", "UntrustedPickleError")


def not_trial_fault(reason: Optional[str]) -> bool:
    """A failure the trial did not cause: a full disk (whichever write hit it), a folder or pickle refused as
    unsafe, a refused submission. Such trials are requeued, not counted."""
    text = str(reason or "")
    return any(text.startswith(m) or f": {m}" in text for m in NOT_TRIAL_FAULT_MARKERS)


def _record_intents(items: Sequence[tuple[Trial, Any]], intents: Sequence[Mapping[str, str]]) -> None:
    """Before the launcher starts anything: per trial, how a later driver finds its job (job name, array
    index, folder) and its run dir (where a finished result is read): the submit window loses no job."""
    for (trial, _), intent in zip(items, intents):
        trial.set_user_attr(schema.SUBMITTING, dict(intent))
        if intent.get("run_dir"):
            trial.set_user_attr(schema.RUN_DIR, str(intent["run_dir"]))


class FinishedHandle:
    """A lost trial whose job already ended with its result in the run dir: told as if it had just finished."""

    def __init__(self, outcome: TrialOutcome, run_dir: str) -> None:
        self.outcome, self.run_dir, self.job_id = outcome, run_dir, "finished"

    def done(self) -> bool:
        return True

    def result(self) -> TrialOutcome:
        return self.outcome

    def cancel(self) -> None:
        """Nothing runs."""


def finished_outcome(run_dir: str, started: Optional[Any] = None) -> Optional[TrialOutcome]:
    """The completed result a lost trial's job left in ``<run_dir>/result.json`` (JSON, never a pickle), or
    None when there is none, it is not a completed record, or it is older than the trial (``started``, a
    datetime: a file left by an earlier sweep in the same folder is not this trial's result)."""
    path = Path(run_dir) / "result.json" if run_dir else None
    if path is None or not path.is_file():
        return None
    if started is not None and path.stat().st_mtime < started.timestamp() - 2.0:  # 2 s: clocks of two hosts
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    outcome = outcome_from_return(record)
    if outcome.status != COMPLETED:
        return None
    outcome.record.setdefault("run_dir", run_dir)
    outcome.record["record_path"] = str(path)
    return outcome


def _adopt_intent(intent: Optional[Mapping[str, Any]]) -> Any:
    """The job a lost driver submitted but never recorded the id of (SLURM: found by its job name)."""
    if not intent or intent.get("launcher") != "slurm" or not intent.get("job_name"):
        return None
    from sweep.launch.slurm import adopt_intent

    try:
        return adopt_intent(intent)
    except Exception as err:  # noqa: BLE001 - squeue/sacct or the folder unreadable: requeue instead
        log.warning("[sweep] cannot look up job %s (%s): requeueing its trial", intent.get("job_name"), err)
        return None


def move_run_dir(old: Path, new: Path) -> bool:
    """Rename a requeued trial's folder to its new trial number (its checkpoint goes with it); False, and
    nothing moved, when the new folder exists or another writer still holds the old one's lock."""
    from sweep.launch.trial import RunDirBusyError, RunDirLock

    if new.exists():
        return False
    if not old.is_dir():
        return True  # nothing to resume from: the new trial starts fresh in its own folder
    try:
        lock = RunDirLock(old).acquire(wait_s=0)
    except RunDirBusyError:
        log.warning("[sweep] %s is still being written: the requeued trial runs there", old)
        return False
    try:
        os.rename(old, new)
    except OSError as err:
        log.warning("[sweep] cannot rename %s to %s (%s): the requeued trial runs in %s", old, new, err, old)
        return False
    finally:
        lock.release()
    log.info("[sweep] resuming %s in %s", old.name, new)
    return True


def _adopt(attrs: Mapping[str, Any]) -> Any:
    """A handle on a lost trial's job when it can still be found, else None (then the trial is requeued)."""
    if attrs.get(schema.LAUNCHER) != "slurm" or not attrs.get(schema.JOB_FOLDER) or not attrs.get(schema.JOB_ID):
        return None
    from sweep.launch.slurm import adopt_job

    try:
        return adopt_job(str(attrs[schema.JOB_FOLDER]), str(attrs[schema.JOB_ID]), str(attrs.get(schema.RUN_DIR) or ""))
    except Exception as err:  # noqa: BLE001 - an unreadable folder: requeue instead (the run dir lock guards)
        log.warning("[sweep] cannot re-attach to job %s (%s): requeueing its trial", attrs.get(schema.JOB_ID), err)
        return None

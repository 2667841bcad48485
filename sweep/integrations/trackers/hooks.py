"""Where a sweep calls its tracker besides the train job: after each trial is told (:class:`StudyTracking`,
the sweeper's study-level step) and after a selection (:func:`log_selection`, called by the selection
pipeline with the settings the sweeper kept on the study)."""
from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from sweep.integrations.trackers.base import (
    FIELD,
    TRACKING_ATTR,
    Tracker,
    TrackingError,
    objective_labels,
    open_tracker,
)

if TYPE_CHECKING:
    import optuna
    import pandas as pd

log = logging.getLogger("sweep.trackers")


class StudyTracking:
    """The sweeper's step after each ``tell``: the trial's searched params, objective values and state go to
    the run its job logged (found by the link in its record), or to a new run when the job logged none."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    @property
    def enabled(self) -> bool:
        return self.tracker.settings.kind != "none"

    @classmethod
    def for_sweep(cls, config: Any, study: optuna.Study,
                  config_error: type[Exception] = TrackingError) -> StudyTracking:
        """From the composed config's ``tracking`` node (a user's app has none: nothing is tracked). Checks it
        (a bad setting raises the caller's ``config_error``, so a sweep ends on its one-line config error),
        creates the store and experiment before any job starts (jobs would race to), and keeps the settings on
        the study (``TRACKING_ATTR``) for the selection."""
        from omegaconf import OmegaConf

        if OmegaConf.is_config(config):
            node = OmegaConf.select(config, FIELD, default=None)
        else:  # a plain mapping (or None) built in Python
            node = (config or {}).get(FIELD)
        try:
            tracking = cls(open_tracker(node, study.study_name))
        except ValueError as err:  # TrackingError, or UnknownNameError for tracking.kind
            raise config_error(str(err)) from None
        if tracking.enabled:
            tracking.tracker.guarded("store", tracking.tracker.prepare)  # unreachable: a warning, jobs go on
            study.set_user_attr(TRACKING_ATTR, tracking.tracker.settings.as_attr())
        return tracking

    def trial_finished(self, study: optuna.Study, number: int, record: Optional[Mapping[str, Any]]) -> None:
        """Log trial ``number`` (just told) of ``study``; ``record``: its job's result record, if any."""
        if not self.enabled:
            return
        trial = copy.copy(study.get_trials(deepcopy=False)[number])  # a copy: the link is set on it in memory
        assert trial.number == number, (trial.number, number)
        link = (record or {}).get(FIELD) or {}
        self.tracker.guarded(f"trial {number}", self.tracker.log_trial, study, trial, objective_labels(study),
                             link)


def log_selection(policies: pd.DataFrame, tracking: Any, study_name: Optional[str] = None,
                  report_dir: Optional[Path] = None) -> dict[str, Any]:
    """Log a selection's policy table (``sweep.selection.report_numbers.policy_table``: one row per policy) and
    its report folder to the tracker the sweep used; returns the link ({} when tracking is off).

    ``tracking``: the study's ``user_attrs[TRACKING_ATTR]`` (what the sweep used), a ``TrackingConfig`` or a
    mapping, or None (nothing logged). An unreachable tracker, or one this environment lacks, is a warning and
    a link that says why, never a failed selection (its readouts are paid for)."""
    try:
        tracker = open_tracker(tracking, study_name)
    except ValueError as err:  # TrackingError, UnknownNameError: settings the sweep had, unusable here
        log.warning("[sweep] selection not logged: %s", err)
        return {"error": str(err)}
    if tracker.settings.kind == "none":
        return {}
    return tracker.guarded("selection", tracker.log_selection, policies, report_dir)

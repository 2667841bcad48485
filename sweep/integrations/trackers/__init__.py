"""Experiment trackers: each run's config, per-epoch curves and files, each trial's searched parameters and
objective values, and a sweep's selection results, logged to MLflow or TensorBoard (``tracking.kind``).

A tracker is one module: a :class:`Tracker` subclass registered in ``TRACKERS`` under the name
``tracking.kind`` takes, imported below. Three moments call it: the train job when a run ends
(:func:`open_tracker` then ``Tracker.log_record``; the job calls the factory by name, this layer sits above
training), the sweeper after each ``tell`` (:class:`StudyTracking`), and the selection (:func:`log_selection`).
Backends are optional (``pip install -e '.[trackers]'``) and imported only when used.
"""
from __future__ import annotations

from sweep.integrations.trackers import _mlflow, _none, _tensorboard  # noqa: F401 - register the built-ins
from sweep.integrations.trackers.base import (
    TRACKERS,
    TRACKING_ATTR,
    RunLog,
    Tracker,
    TrackingError,
    TrackingSettings,
    open_tracker,
    resolve_settings,
    run_log,
)
from sweep.integrations.trackers.hooks import StudyTracking, log_selection

__all__ = ["TRACKERS", "TRACKING_ATTR", "RunLog", "StudyTracking", "Tracker", "TrackingError", "TrackingSettings",
           "log_selection", "open_tracker", "resolve_settings", "run_log"]

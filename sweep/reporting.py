"""What a trial job and the sweep exchange, without either knowing the other: the pruning reporter handed to
the job, and the record the job hands back.

The sweeper builds the trial's reporter (``sweep.study.pruning.TrialReporter``) and it travels as data inside
the signed trial payload; the launch layer injects it with :func:`use_reporter` around the task function, and
training code of any kind reads it with :func:`current_reporter` and never imports the study. A task function may return the full result record or a
plain dict of metrics (+ ``features``); :func:`as_record` turns the latter into the former.
"""
from __future__ import annotations

import numbers
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Optional, Protocol, runtime_checkable

COMPLETED, FAILED, PRUNED = "completed", "failed", "pruned"  # the record's ``status`` values
RECORD_KEYS = ("status", "metrics")  # a returned mapping with either key is a result record already


@runtime_checkable
class Reporter(Protocol):
    """Reports intermediate values of one trial; a True / non-None answer means the pruner says stop."""

    def report(self, value: float, step: int) -> bool:
        """Report the objective's value at ``step``; True when the trial should stop."""
        ...

    def report_metrics(self, metrics: Mapping[str, Any], step: int) -> Optional[float]:
        """Report the study's objective computed from one row of metrics; the value when the trial should
        stop, else None (also when the row has no finite objective value)."""
        ...


_CURRENT: ContextVar[Optional[Reporter]] = ContextVar("sweep_reporter", default=None)


def current_reporter() -> Optional[Reporter]:
    """The reporter the launcher injected for the running trial; None outside a sweep or without a pruner."""
    return _CURRENT.get()


@contextmanager
def use_reporter(reporter: Optional[Reporter]) -> Iterator[Optional[Reporter]]:
    """Make ``reporter`` the current one for the code run inside (the launcher wraps the task function)."""
    token = _CURRENT.set(reporter)
    try:
        yield reporter
    finally:
        _CURRENT.reset(token)


def pruned_record(step: int, value: Optional[float] = None, **extra: Any) -> dict[str, Any]:
    """The value a pruned job returns (never an exception: submitit loses exception types)."""
    reason = f"pruned at step {step}" + ("" if value is None else f" ({value:.4g})")
    return {"status": PRUNED, "failure_reason": reason, "metrics": {}, **extra}


def as_record(value: Any) -> Any:
    """The result record of whatever a task function returned.

    A mapping with ``status`` or ``metrics`` is a record already and passes unchanged. Any other mapping is a
    plain dict of metrics: its numbers (and None) become ``metrics``, ``features`` stays the feature paths
    (``{split: {backbone|projector|labels: path}}``), other entries stay at the top. Non-mappings pass
    unchanged (the caller reports them as a bad record).
    """
    if not isinstance(value, Mapping) or any(k in value for k in RECORD_KEYS):
        return value
    metrics = {str(k): v for k, v in value.items() if _is_metric(k, v)}
    rest = {str(k): v for k, v in value.items() if str(k) not in metrics}
    return {"status": COMPLETED, "failure_reason": None, **rest, "metrics": metrics}


def _is_metric(key: Any, value: Any) -> bool:
    """A metric is a real number or None (a metric that could not be computed); never a bool or a path."""
    if str(key) == "features" or isinstance(value, bool):
        return False
    if value is None:
        return True
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        value = value.item()
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


__all__ = ["COMPLETED", "FAILED", "PRUNED", "Reporter", "as_record", "current_reporter", "pruned_record",
           "use_reporter"]

"""Bring your own trainer: the label-free monitor for any training loop, and (with the ``lightning`` extra) a
Lightning callback. Both report to the running sweep trial (pruning) and write the result record it reads.

``LabelFreeCallback`` is imported lazily so that a plain PyTorch loop never needs Lightning installed, and
``LabelFreeMonitor`` so that the sweep driver, which imports ``sweep.integrations.trackers``, never pays for torch.
"""
from __future__ import annotations

from typing import Any

from sweep.reporting import Reporter, as_record, current_reporter, use_reporter

__all__ = ["LabelFreeCallback", "LabelFreeMonitor", "Reporter", "as_record", "current_reporter", "use_reporter"]


def __getattr__(name: str) -> Any:
    if name == "LabelFreeMonitor":
        from sweep.integrations.monitor import LabelFreeMonitor

        return LabelFreeMonitor
    if name == "LabelFreeCallback":
        from sweep.integrations.lightning import LabelFreeCallback

        return LabelFreeCallback
    raise AttributeError(f"module 'sweep.integrations' has no attribute {name!r}")

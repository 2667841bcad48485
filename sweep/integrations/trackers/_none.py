"""``tracking.kind=none`` (the default): nothing is logged and nothing is imported."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

from sweep.integrations.trackers.base import TRACKERS, RunLog, Tracker


@TRACKERS.register("none")
class NoTracker(Tracker):
    """Registered so ``none`` is one of the allowed names; every step does nothing."""

    def log_record(self, record: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
        return {}  # the record gets no ``tracking`` entry

    def log_run(self, run: RunLog) -> dict[str, Any]:
        return {}

    def log_trial(self, study: Any, trial: Any, objectives: Sequence[str], link: Mapping[str, Any]) -> None:
        return None

    def log_selection(self, policies: Any, report_dir: Optional[Path]) -> dict[str, Any]:
        return {}


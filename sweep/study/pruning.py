"""Pruning from inside a trial job: the job reports intermediate values (RankMe/alpha per epoch) and stops early.

The sweeper puts the trial's coordinates into the job's environment, with the name of ``reporter_from_env``;
the launch layer calls it (``sweep.reporting.reporter_from_env``) and hands the reporter to the job
(``sweep.reporting.current_reporter``), so training code never imports this module. ``reporter_from_env()``
gives ``None`` outside a sweep. A pruned job RETURNS ``pruned_record(...)`` (never raises: submitit loses
exception types); the sweeper tells it PRUNED.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

import optuna

from sweep.reporting import ENV_REPORTER, pruned_record  # noqa: F401 - pruned_record: re-exported for jobs

ENV_STORAGE, ENV_STUDY, ENV_TRIAL_ID, ENV_TRIAL_NUMBER, ENV_PRUNER = (
    "SWEEP_STUDY_STORAGE", "SWEEP_STUDY_NAME", "SWEEP_TRIAL_ID", "SWEEP_TRIAL_NUMBER", "SWEEP_PRUNER")
# what the launch layer calls (by name, it never imports the study) to build the reporter it hands to the job
REPORTER_FACTORY = "sweep.study.pruning:reporter_from_env"


@dataclass(frozen=True)
class TrialContext:
    """Where a trial lives: enough for a job in another process to report to the study."""

    storage_url: str
    study_name: str
    trial_id: int
    trial_number: int
    pruner: Optional[dict[str, Any]] = None  # {"name": ..., "options": {...}}

    def to_env(self) -> dict[str, str]:
        return {ENV_STORAGE: self.storage_url, ENV_STUDY: self.study_name, ENV_TRIAL_ID: str(self.trial_id),
                ENV_TRIAL_NUMBER: str(self.trial_number), ENV_PRUNER: json.dumps(self.pruner or {}),
                ENV_REPORTER: REPORTER_FACTORY}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Optional["TrialContext"]:
        env = os.environ if env is None else env
        if ENV_STUDY not in env or ENV_TRIAL_ID not in env:
            return None
        return cls(env[ENV_STORAGE], env[ENV_STUDY], int(env[ENV_TRIAL_ID]), int(env[ENV_TRIAL_NUMBER]),
                   json.loads(env.get(ENV_PRUNER) or "{}") or None)


class TrialReporter:
    """``report(value, step) -> should_prune`` for the trial this job runs."""

    def __init__(self, ctx: TrialContext) -> None:
        from sweep.study.samplers import make_pruner
        from sweep.study.storage import make_storage

        pruner = make_pruner((ctx.pruner or {}).get("name"), (ctx.pruner or {}).get("options"))
        self.context = ctx
        self.study = optuna.load_study(study_name=ctx.study_name, storage=make_storage(ctx.storage_url),
                                       pruner=pruner)
        self.trial = optuna.trial.Trial(self.study, ctx.trial_id)

    def report(self, value: float, step: int) -> bool:
        self.trial.report(float(value), int(step))
        return self.trial.should_prune()

    def report_metrics(self, metrics: Mapping[str, Any], step: int) -> Optional[float]:
        """Report the study's objective computed from one monitoring row; returns the value when the pruner
        says stop, else None. Rows without a finite objective value are not reported."""
        spec = (self.context.pruner or {}).get("objective")
        if not spec:
            return None
        from sweep.study.objectives import Objective, ObjectiveError

        objective = Objective(metric=spec["metric"], target=spec.get("target"))
        try:
            value = objective.value(metrics)
        except ObjectiveError:
            return None
        return value if self.report(value, step) else None


def reporter_from_env() -> Optional[TrialReporter]:
    """The reporter of the trial this process runs, or None outside a sweep or when the sweep has no pruner."""
    ctx = TrialContext.from_env()
    if ctx is None or (ctx.pruner or {}).get("name", "none") in (None, "none"):
        return None
    return TrialReporter(ctx)

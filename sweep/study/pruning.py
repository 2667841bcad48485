"""Pruning from inside a trial job: the job reports intermediate values (RankMe/alpha per epoch) and stops early.

The sweeper builds each trial's :class:`TrialReporter` (where the trial lives, the pruner, the objective it
reports) and hands it to the launcher, which pickles it inside the HMAC-signed trial payload: it travels as data,
never as an environment variable or an import path. The launch layer injects it around the task function
(``sweep.reporting.use_reporter``), so training code reads it with ``sweep.reporting.current_reporter`` and never
imports this module. Without a pruner the payload carries no reporter, and the worker imports neither this
module nor optuna. A pruned job RETURNS ``pruned_record(...)`` (never raises: submitit loses exception types);
the sweeper tells it PRUNED.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from sweep.reporting import pruned_record  # noqa: F401 - re-exported for jobs
from sweep.study.objectives import Objective, ObjectiveError

if TYPE_CHECKING:
    import optuna

# the trial's names in the job's environment, for trackers' tags (``sweep.integrations.trackers``)
ENV_STUDY, ENV_TRIAL_NUMBER = "SWEEP_STUDY_NAME", "SWEEP_TRIAL_NUMBER"


@dataclass(frozen=True)
class TrialContext:
    """Where a trial lives: enough for a job in another process to report to the study."""

    storage_url: str
    study_name: str
    trial_id: int
    trial_number: int
    pruner: Optional[dict[str, Any]] = None  # {"name": ..., "options": {...}}

    def to_env(self) -> dict[str, str]:
        """The trial's names for the job's environment (trackers tag runs with them); the reporter itself
        travels in the payload."""
        return {ENV_STUDY: self.study_name, ENV_TRIAL_NUMBER: str(self.trial_number)}


class TrialReporter:
    """``report(value, step) -> should_prune`` for one trial, built by the sweeper and pickled into the signed
    payload. It holds data only (the trial's coordinates, the pruner spec, the objective): the study is opened
    on the first report, in the worker, with the storage password from the worker's environment
    (``SWEEP_STORAGE_PASSWORD``), so neither a connection nor a password is ever pickled."""

    def __init__(self, context: TrialContext, objective: Optional[Objective] = None) -> None:
        from sweep.study.storage import split_password

        bare = split_password(context.storage_url)[0]
        if bare != context.storage_url:  # defensive: the payload is a file on disk
            context = TrialContext(bare, context.study_name, context.trial_id, context.trial_number, context.pruner)
        self.context, self.objective = context, objective
        self._trial: Optional["optuna.trial.Trial"] = None

    def __getstate__(self) -> dict[str, Any]:
        return {"context": self.context, "objective": self.objective}  # never the open study

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self.context, self.objective, self._trial = state["context"], state.get("objective"), None

    @property
    def trial(self) -> "optuna.trial.Trial":
        """The trial in the study, opened on first use (in the worker, not in the driver that built this)."""
        if self._trial is None:
            import optuna

            from sweep.study.samplers import make_pruner
            from sweep.study.storage import make_storage

            ctx = self.context
            pruner = make_pruner((ctx.pruner or {}).get("name"), (ctx.pruner or {}).get("options"))
            study = optuna.load_study(study_name=ctx.study_name, storage=make_storage(ctx.storage_url),
                                      pruner=pruner)
            self._trial = optuna.trial.Trial(study, ctx.trial_id)
        return self._trial

    def report(self, value: float, step: int) -> bool:
        self.trial.report(float(value), int(step))
        return self.trial.should_prune()

    def report_metrics(self, metrics: Mapping[str, Any], step: int) -> Optional[float]:
        """Report the study's objective (``Objective.value``, as the sweeper tells it) from one monitoring row;
        returns the value when the pruner says stop, else None. Rows without a finite objective value are not
        reported, nor is anything for a multi-objective study (no objective: Optuna prunes single ones only)."""
        if self.objective is None:
            return None
        try:
            value = self.objective.value(metrics)
        except ObjectiveError:
            return None
        return value if self.report(value, step) else None


def trial_reporter(context: TrialContext, objective: Optional[Objective] = None) -> Optional[TrialReporter]:
    """The reporter the sweeper puts in a trial's payload, or None when the sweep has no pruner (the worker then
    imports neither the study layer nor optuna)."""
    if (context.pruner or {}).get("name", "none") in (None, "none"):
        return None
    return TrialReporter(context, objective)

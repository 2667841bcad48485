"""Objectives: which numbers of a trial's result record Optuna optimises, and in which direction.

``{metric: rankme, direction: maximize}`` optimises a metric as is; ``{metric: alpha, target: 1.0}`` minimises
``|alpha - target|`` (alpha-ReQ: representations whose eigenspectrum decays like 1/k generalise best). Several
objectives make a multi-objective study with one direction per objective (NSGA-II for RankMe + alpha).

Raw RankMe is capped by min(N, D), so with the projector width D in the search space an optimiser maximising it
learns to pick wide projectors (TPE sampled out_dim 256 in 14 of 24 trials); ``rankme_normalized``
(RankMe / min(N, D)) is the width-fair objective, and :func:`width_warning` says so before a sweep starts.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional

from sweep.errors import SweepError
from sweep.registry import Registry

DIRECTIONS = ("maximize", "minimize")
WIDTH_BIASED_METRICS = ("rankme",)  # metrics whose ceiling grows with the embedding width
WIDTH_PARAM_SUFFIX = "projector.out_dim"  # search-space keys that set the embedding width


class ObjectiveError(SweepError, ValueError):
    """A bad objective spec, or a record that lacks a usable value for one."""


# Derived objective values: name -> f(record metrics) -> float, for objectives that are not a metric of the record
# itself. ``{metric: <name>, direction: ...}`` uses one when the record has no metric of that name.
OBJECTIVES: Registry[Callable[[Mapping[str, Any]], float]] = Registry("objective")


@OBJECTIVES.register("abs_alpha_minus_1")
def abs_alpha_minus_1(metrics: Mapping[str, Any]) -> float:
    """alpha-ReQ's rule as one value to minimise: |alpha - 1| (same as ``{metric: alpha, target: 1}``)."""
    return abs(float(metrics["alpha"]) - 1.0)


class ObjectiveWarning(UserWarning):
    """A valid objective that is likely to steer the optimiser towards the wrong thing."""


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str = "maximize"
    target: Optional[float] = None

    @property
    def label(self) -> str:
        return self.metric if self.target is None else f"|{self.metric}-{self.target:g}|"

    def value(self, metrics: Mapping[str, Any]) -> float:
        """The objective value from a record's metrics (or a derived one of ``OBJECTIVES``); ObjectiveError when
        it is missing or not finite."""
        if self.metric not in metrics and self.metric in OBJECTIVES:
            metrics = {**metrics, self.metric: _derived(self.metric, metrics)}
        if self.metric not in metrics or metrics[self.metric] is None:
            raise ObjectiveError(f"missing_metric: the record has no value for '{self.metric}' "
                                 f"(metrics present: {sorted(k for k, v in metrics.items() if v is not None)})")
        try:
            raw = float(metrics[self.metric])
        except (TypeError, ValueError):
            raise ObjectiveError(f"bad_metric: '{self.metric}' = {metrics[self.metric]!r} is not a number") from None
        if not math.isfinite(raw):
            raise ObjectiveError(f"nan_metric: '{self.metric}' = {raw} is not finite")
        return self.score(raw)

    def score(self, raw: Any) -> Any:
        """The objective from the metric's raw value: ``|raw - target|`` with a target, else ``raw``. The one place
        that rule lives: the sweeper's tell, the job's pruning reports and the replay all score through it, so
        they cannot disagree. Works on a float and elementwise on numpy / torch arrays and pandas columns."""
        return raw if self.target is None else abs(raw - self.target)


def _derived(name: str, metrics: Mapping[str, Any]) -> Optional[float]:
    """A registered derived objective; None (reported as missing) when the metrics it reads are absent."""
    try:
        return OBJECTIVES.get(name)(metrics)
    except (KeyError, TypeError, ValueError):
        return None


def parse_objectives(raw: Sequence[Mapping[str, Any]] | None) -> list[Objective]:
    """Validate the sweeper's ``objectives`` list; an objective with a target is always minimised."""
    if not raw:
        raise ObjectiveError("objectives: needs at least one entry, e.g. [{metric: rankme, direction: maximize}]")
    out = [_parse_one(i, spec) for i, spec in enumerate(raw)]
    labels = [o.label for o in out]
    if len(set(labels)) != len(labels):
        raise ObjectiveError(f"objectives: duplicate entries {labels}")
    return out


def _parse_one(index: int, spec: Mapping[str, Any]) -> Objective:
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type):  # an ObjectiveConf of the sweeper schema
        spec = dataclasses.asdict(spec)
    if not isinstance(spec, Mapping):
        raise ObjectiveError(f"objectives[{index}]: expected a mapping {{metric, direction | target}}, got {spec!r}")
    unknown = sorted(set(spec) - {"metric", "direction", "target"})
    if unknown:
        raise ObjectiveError(f"objectives[{index}]: unknown key(s) {unknown}; allowed: metric, direction, target")
    metric = spec.get("metric")
    if not isinstance(metric, str) or not metric:
        raise ObjectiveError(f"objectives[{index}].metric: a metric name of the result record is required "
                             f"(e.g. rankme, alpha), got {metric!r}")
    target = spec.get("target")
    direction = spec.get("direction")
    if target is not None:
        if isinstance(target, bool) or not isinstance(target, (int, float)) or not math.isfinite(target):
            raise ObjectiveError(f"objectives[{index}].target: a finite number, got {target!r}")
        if direction not in (None, "minimize"):
            raise ObjectiveError(f"objectives[{index}]: with a target the objective |{metric} - target| is "
                                 f"minimised; direction must be minimize or left out, got {direction!r}")
        return Objective(metric=metric, direction="minimize", target=float(target))
    direction = direction or "maximize"
    if direction not in DIRECTIONS:
        raise ObjectiveError(f"objectives[{index}].direction={direction!r}: allowed values are {DIRECTIONS}")
    return Objective(metric=metric, direction=direction)


TRAIN_JOB_EXTRA_METRICS = ("alpha_window_lo", "alpha_window_hi", "rankme_backbone", "alpha_projector")


def train_job_metrics() -> list[str]:
    """Every metric name a ``sweep train`` record can hold: its contract keys, the registered metrics (built-in
    and a user's ``register_metric``), the monitoring row's extras and the derived objectives."""
    from sweep.metrics import METRICS
    from sweep.train.records import RECORD_METRIC_KEYS

    return sorted({*RECORD_METRIC_KEYS, *METRICS.names(), *TRAIN_JOB_EXTRA_METRICS, *OBJECTIVES.names()})


def unknown_metrics(objectives: Sequence[Objective], reported: Iterable[str]) -> Optional[str]:
    """A message naming the first objective whose metric is not among ``reported`` (with the allowed names and
    the closest one), or None when every objective can be computed from them."""
    from sweep.registry import unknown_name_message

    names = sorted(set(reported))
    for index, objective in enumerate(objectives):
        if objective.metric in names or (objective.metric in OBJECTIVES and _derived(objective.metric, dict.fromkeys(
                names, 1.0)) is not None):
            continue
        return unknown_name_message("metric", objective.metric, names, field=f"hydra.sweeper.objectives[{index}].metric")
    return None


def directions(objectives: Sequence[Objective]) -> list[str]:
    return [o.direction for o in objectives]


def objective_values(objectives: Sequence[Objective], record: Mapping[str, Any]) -> list[float]:
    """Values to ``tell`` Optuna, from a completed record's ``metrics`` mapping."""
    metrics = record.get("metrics") or {}
    if not isinstance(metrics, Mapping):
        raise ObjectiveError(f"bad_record: 'metrics' must be a mapping, got {type(metrics).__name__}")
    return [o.value(metrics) for o in objectives]


def width_params(varied: Iterable[str]) -> list[str]:
    """Varied search-space keys that set the embedding width (``method.projector.out_dim`` or any key ending in
    ``projector.out_dim``)."""
    return [name for name in varied if name.endswith(WIDTH_PARAM_SUFFIX)]


def width_warning(objectives: Sequence[Objective], varied: Iterable[str]) -> Optional[str]:
    """Why raw RankMe is a misleading objective for this space (a message naming the parameter), or None.

    ``varied`` are the search-space keys that take more than one value.
    """
    biased = [o.label for o in objectives if o.metric in WIDTH_BIASED_METRICS]
    params = width_params(varied)
    if not biased or not params:
        return None
    return (f"objective {biased[0]} is raw RankMe while the search space varies the embedding width "
            f"({', '.join(params)}): RankMe is capped by min(N, D), so the optimiser is rewarded for a wider "
            f"projector rather than a better representation; use hydra.sweeper.objectives=[{{metric: "
            f"rankme_normalized}}] (RankMe / min(N, D); hydra/sweeper=rankme_normalized) or fix {params[0]}")

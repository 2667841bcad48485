"""The sweeper's settings (``hydra.sweeper``): the one schema and the one set of defaults.

The Hydra plugin registers this schema in the ConfigStore (``hydra/sweeper=sweep_optuna``, adding only its
``_target_``); the driver reads the composed node back with :meth:`SweepSettings.from_config`, so a default
changed here changes both.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sweep.errors import SweepError

DEFAULT_VALIDATE_FN = "sweep.train.config_check.validate_train_config"


class SweepConfigError(SweepError, ValueError):
    """The sweep cannot start: bad sweeper settings, override, search space or composed trial config."""


@dataclass
class SamplerConf:
    name: str = "tpe"  # tpe | random | grid | cmaes | nsgaii
    seed: Optional[int] = None
    options: dict[str, Any] = field(default_factory=dict)  # passed to the Optuna sampler's constructor


@dataclass
class PrunerConf:
    name: str = "none"  # none | median | percentile | successive_halving | hyperband | threshold
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ObjectiveConf:
    metric: str = "rankme"  # a key of the result record's "metrics"
    direction: Optional[str] = None  # maximize | minimize; None: maximize, or minimize when target is set
    target: Optional[float] = None  # minimise |metric - target| (alpha-ReQ: target 1.0)


@dataclass
class SweepSettings:
    study_name: Optional[str] = None  # None: the Hydra job name
    storage: Optional[str] = None  # None: sqlite <cwd>/.sweep/optuna.db | journal:///path | postgresql://...
    sampler: SamplerConf = field(default_factory=SamplerConf)
    objectives: list[ObjectiveConf] = field(default_factory=lambda: [ObjectiveConf()])
    n_trials: int = 20  # TOTAL for the study: a re-run tops up to this number
    n_jobs: int = 1  # trials kept in flight
    max_failure_ratio: float = 0.5  # abort when failed/finished exceeds this ...
    min_finished_before_abort: int = 5  # ... once this many trials have finished
    pruner: PrunerConf = field(default_factory=PrunerConf)
    search_space: dict[str, Any] = field(default_factory=dict)  # or +search_space=<name> (conf/search_space/)
    validate_fn: Optional[str] = DEFAULT_VALIDATE_FN  # checks each composed config
    validate_configs: bool = True  # compose every categorical combination before submitting anything
    dedupe: bool = True  # a proposal equal to a COMPLETE trial reuses its result instead of running again
    poll_interval_s: float = 0.05
    assume_foreign_drivers_dead: bool = True  # deprecated, ignored: a driver is alive while its heartbeat is
    driver_heartbeat_s: float = 10.0  # the driver refreshes its heartbeat in the storage this often ...
    driver_timeout_s: float = 60.0  # ... and counts as lost (its jobs adopted or requeued) after this long without
    claim_settle_s: float = 0.5  # two drivers starting at once: the claim is re-read after this, one steps back
    export_results: bool = True  # trials.parquet + trials.csv in the sweep dir at the end

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> SweepSettings:
        """The settings from the composed ``hydra.sweeper`` node (or a plain mapping), on top of the defaults
        here; ``_target_`` is ignored, any other unknown key is an error naming the allowed ones."""
        plain = dict(OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg)
        plain.pop("_target_", None)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(plain) - known)
        if unknown:
            raise SweepConfigError(f"hydra.sweeper: unknown key(s) {unknown}; allowed: {sorted(known)}")
        plain = {k: v for k, v in plain.items() if not (k in ("sampler", "pruner") and v is None)}
        try:
            settings = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), plain))
        except OmegaConfBaseException as err:
            raise SweepConfigError(f"hydra.sweeper: {str(err).splitlines()[0]}") from None
        assert isinstance(settings, cls)
        settings.check()
        return settings

    def check(self) -> None:
        if not isinstance(self.n_trials, int) or self.n_trials < 1:
            raise SweepConfigError(f"hydra.sweeper.n_trials={self.n_trials!r}: must be an integer >= 1 "
                                   f"(the study's total, counted across re-runs)")
        if not isinstance(self.n_jobs, int) or self.n_jobs < 1:
            raise SweepConfigError(f"hydra.sweeper.n_jobs={self.n_jobs!r}: must be an integer >= 1")
        if not 0.0 <= float(self.max_failure_ratio) <= 1.0:
            raise SweepConfigError(f"hydra.sweeper.max_failure_ratio={self.max_failure_ratio}: must be in [0, 1]")
        if self.min_finished_before_abort < 1:
            raise SweepConfigError("hydra.sweeper.min_finished_before_abort: must be >= 1")
        if not 0 < float(self.driver_heartbeat_s) * 3 <= float(self.driver_timeout_s):
            raise SweepConfigError(f"hydra.sweeper.driver_heartbeat_s={self.driver_heartbeat_s}, driver_timeout_s="
                                   f"{self.driver_timeout_s}: need 0 < 3 * driver_heartbeat_s <= driver_timeout_s "
                                   f"(a live driver must never look lost)")

    # plain views for the code that builds Optuna objects (a field may also hold a plain mapping when the
    # settings were built in Python: SweepSettings(objectives=[{"metric": "alpha", "target": 1.0}]))
    def sampler_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(SamplerConf()), **as_dict(self.sampler)}

    def pruner_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(PrunerConf()), **as_dict(self.pruner)}

    def objective_dicts(self) -> list[dict[str, Any]]:
        return [as_dict(o) for o in self.objectives]


def as_dict(value: Any) -> dict[str, Any]:
    """A dataclass, mapping or None as a plain dict."""
    if value is None:
        return {}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return dict(value)

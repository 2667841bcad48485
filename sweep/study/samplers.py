"""Sampler and pruner factories from the sweeper's config (names, seed, options)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from sweep.errors import SweepError
from sweep.study.search_space import SearchSpace

SAMPLER_NAMES = ("tpe", "random", "grid", "cmaes", "nsgaii")
PRUNER_NAMES = ("none", "median", "percentile", "successive_halving", "hyperband", "threshold")


class SamplerConfigError(SweepError, ValueError):
    """Unknown sampler/pruner name, or one that cannot serve this study."""


class AskTellGridSampler(optuna.samplers.GridSampler):
    """GridSampler whose exhaustion does not call ``study.stop()`` (that only works inside ``optimize``);
    the driver caps n_trials at the grid size instead."""

    def after_trial(self, study: optuna.Study, trial: Any, state: Any, values: Any) -> None:
        return None


def derive_seed(seed: Optional[int], n_existing: int) -> Optional[int]:
    """A resumed sweep reseeds its sampler: with the original seed it would replay the proposals it already
    made (the stock sweeper's duplicates). Deterministic: same seed and same history -> same proposals."""
    if seed is None:
        return None
    return (int(seed) + 1_000_003 * n_existing) % (2**32)


class StratifiedSampler(optuna.samplers.BaseSampler):
    """Any sampler, with one categorical param taken out of its hands: each new trial gets the choice that
    the study's trials (running, finished or queued) hold least often, ties in the order of the choices.

    Why: a sampler that learns (NSGA-II's crossover, TPE) concentrates on one method within a few trials, so
    a small sweep over several SSL methods compares one well-sampled method with single points of the others.
    Stratified, 12 trials over 3 methods are 4 + 4 + 4 whatever the sampler prefers; the other params are
    still the base sampler's (``sampler.options.stratify=method``)."""

    def __init__(self, base: optuna.samplers.BaseSampler, param: str, choices: Sequence[Any]) -> None:
        self.base, self.param, self.choices = base, param, list(choices)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        space = self.base.infer_relative_search_space(study, trial)
        return {name: dist for name, dist in space.items() if name != self.param}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self.base.sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        if param_name != self.param:
            return self.base.sample_independent(study, trial, param_name, param_distribution)
        return least_used_choice(study.get_trials(deepcopy=False), trial.number, self.param, self.choices)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Optional[Sequence[float]]) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()


def least_used_choice(trials: Sequence[FrozenTrial], current: int, param: str, choices: Sequence[Any]) -> Any:
    """The choice of ``param`` held by the fewest counted trials other than ``current`` (queued trials by their
    fixed params); ties go to the earliest choice."""
    from sweep.study.resume import is_counted

    held: dict[Any, int] = {choice: 0 for choice in choices}
    for t in trials:
        if t.number == current or not is_counted(t):
            continue
        value = t.params.get(param, (t.system_attrs.get("fixed_params") or {}).get(param))
        if value in held:
            held[value] += 1
    return min(choices, key=lambda choice: held[choice])


def _stratify(base: optuna.samplers.BaseSampler, param: Optional[str], space: SearchSpace
              ) -> optuna.samplers.BaseSampler:
    """``base`` wrapped in a StratifiedSampler over ``param`` (a categorical of the space), or ``base``."""
    if not param:
        return base
    found = [p for p in space.params if p.name == param]
    if not found or found[0].type != "categorical":
        names = [p.name for p in space.params if p.type == "categorical"]
        raise SamplerConfigError(f"sampler.options.stratify={param!r}: not a categorical param of the search "
                                 f"space (its categoricals: {names})")
    return StratifiedSampler(base, param, found[0].choices)


def make_sampler(name: str, seed: Optional[int], options: Mapping[str, Any] | None,
                 space: SearchSpace, n_objectives: int) -> optuna.samplers.BaseSampler:
    options = dict(options or {})
    stratify = options.pop("stratify", None)
    return _stratify(_base_sampler(name, seed, options, space, n_objectives), stratify, space)


def _base_sampler(name: str, seed: Optional[int], options: dict[str, Any], space: SearchSpace,
                  n_objectives: int) -> optuna.samplers.BaseSampler:
    if name not in SAMPLER_NAMES:
        raise SamplerConfigError(f"sampler.name={name!r}: allowed values are {SAMPLER_NAMES}")
    if name == "cmaes" and n_objectives > 1:
        raise SamplerConfigError("sampler.name=cmaes supports one objective only; use nsgaii, tpe or random")
    try:
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, **options)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed, **options)
        if name == "grid":
            return AskTellGridSampler(space.grid(), seed=seed, **options)
        if name == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed, **options)
        return optuna.samplers.NSGAIISampler(seed=seed, **options)
    except TypeError as err:
        raise SamplerConfigError(f"sampler.options for {name}: {err}") from None


def make_pruner(name: Optional[str], options: Mapping[str, Any] | None) -> optuna.pruners.BasePruner:
    options = dict(options or {})
    name = name or "none"
    factories = {
        "none": optuna.pruners.NopPruner,
        "median": optuna.pruners.MedianPruner,
        "percentile": optuna.pruners.PercentilePruner,
        "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
        "threshold": optuna.pruners.ThresholdPruner,
    }
    if name not in factories:
        raise SamplerConfigError(f"pruner.name={name!r}: allowed values are {PRUNER_NAMES}")
    try:
        return factories[name](**options)
    except TypeError as err:
        raise SamplerConfigError(f"pruner.options for {name}: {err}") from None

"""Sampler and pruner factories from the sweeper's config (names, seed, options)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import optuna

from sweep.study.search_space import SearchSpace

SAMPLER_NAMES = ("tpe", "random", "grid", "cmaes", "nsgaii")
PRUNER_NAMES = ("none", "median", "percentile", "successive_halving", "hyperband", "threshold")


class SamplerConfigError(ValueError):
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


def make_sampler(name: str, seed: Optional[int], options: Mapping[str, Any] | None,
                 space: SearchSpace, n_objectives: int) -> optuna.samplers.BaseSampler:
    options = dict(options or {})
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

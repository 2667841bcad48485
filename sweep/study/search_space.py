"""Search spaces declared in YAML, validated up front and sampled through Optuna's define-by-run API.

A space maps an override key (``optim.lr``, ``method``, ``method.temperature``) to a param spec::

    method: {type: categorical, choices: [simclr, mocov2, byol]}
    method.temperature: {type: float, low: 0.05, high: 0.5, log: true, when: {method: [simclr, mocov2]}}
    epochs: {type: int, low: 2, high: 8, step: 2}

Bounds are inclusive for every type (``int`` 2..8 step 2 gives 2, 4, 6, 8 - Hydra's ``range`` is exclusive,
the stock sweeper mixed both). ``when`` makes a param conditional on categorical params; a trial only
suggests, and only overrides, the params that are active for its categorical choices.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna

from sweep.errors import SweepError

PARAM_TYPES = ("float", "int", "categorical")
_ALLOWED_KEYS = {
    "float": {"type", "low", "high", "log", "step", "when", "grid"},
    "int": {"type", "low", "high", "log", "step", "when", "grid"},
    "categorical": {"type", "choices", "when"},
}
MAX_COMBINATIONS = 512  # categorical combinations composed before the sweep; beyond this the space is refused


class SearchSpaceError(SweepError, ValueError):
    """A search space that cannot be sampled; the message names the param, the field and the allowed values."""


@dataclass(frozen=True)
class Param:
    """One hyperparameter: ``name`` is the Hydra override key it sets."""

    name: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    grid: tuple[Any, ...] = ()

    def is_active(self, values: Mapping[str, Any]) -> bool:
        """Active when every condition's categorical param was chosen with an allowed value."""
        return all(key in values and values[key] in allowed for key, allowed in self.when)

    def suggest(self, trial: optuna.trial.BaseTrial) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high),  # type: ignore[arg-type]
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high),  # type: ignore[arg-type]
                                   step=self.step, log=self.log)

    def grid_values(self) -> list[Any]:
        """Values the grid sampler visits: explicit ``grid``, all choices, or every int step (inclusive)."""
        if self.grid:
            return list(self.grid)
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int" and not self.log:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))  # type: ignore[arg-type]
        if self.type == "float" and self.step is not None and not self.log:
            n = int(math.floor((self.high - self.low) / self.step + 1e-9))  # type: ignore[operator]
            return [round(self.low + i * self.step, 12) for i in range(n + 1)]  # type: ignore[operator]
        raise SearchSpaceError(
            f"search_space.{self.name}: the grid sampler needs explicit 'grid' values for a "
            f"{'log ' if self.log else ''}{self.type} param (allowed without 'grid': categorical, int, stepped float)")


@dataclass(frozen=True)
class SearchSpace:
    """An ordered, validated set of params; categorical params come first so conditions can be evaluated."""

    params: tuple[Param, ...] = field(default_factory=tuple)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def suggest(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Suggest the active params of one trial (define-by-run: inactive params never reach Optuna)."""
        values: dict[str, Any] = {}
        for param in self.params:
            if param.is_active(values):
                values[param.name] = param.suggest(trial)
        return values

    def categorical_combinations(self) -> Iterator[dict[str, Any]]:
        """Every reachable assignment of the categorical params (inactive ones are left out)."""
        cats = [p for p in self.params if p.type == "categorical"]
        yield from _expand(cats, {})

    def grid(self) -> dict[str, list[Any]]:
        """Optuna GridSampler search space built from the params (inclusive bounds)."""
        return {p.name: p.grid_values() for p in self.params}

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid().values()) if self.params else 0

    def boundary_assignments(self) -> Iterator[dict[str, Any]]:
        """For each categorical combination, the active numeric params at their low and at their high bound:
        the configs composed and validated before anything is submitted."""
        numeric = [p for p in self.params if p.type != "categorical"]
        for combo in self.categorical_combinations():
            active = [p for p in numeric if p.is_active(combo)]
            for end in ("low", "high"):
                yield {**combo, **{p.name: _cast(p, getattr(p, end)) for p in active}}


def _expand(cats: list[Param], chosen: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if not cats:
        yield dict(chosen)
        return
    head, rest = cats[0], cats[1:]
    if not head.is_active(chosen):
        yield from _expand(rest, chosen)
        return
    for choice in head.choices:
        yield from _expand(rest, {**chosen, head.name: choice})


def _cast(param: Param, value: Any) -> Any:
    return int(value) if param.type == "int" else float(value)


# ----------------------------------------------------------------------------- parsing + validation
def parse_search_space(raw: Mapping[str, Any] | None) -> SearchSpace:
    """Build and validate a space from its YAML mapping; every problem is reported at once."""
    if not raw:
        raise SearchSpaceError("search_space is empty: give at least one param "
                               "(e.g. +search_space=demo or hydra.sweeper.search_space.<key>={type: float, ...})")
    errors: list[str] = []
    params: list[Param] = []
    for name, spec in raw.items():
        try:
            params.append(_parse_param(str(name), spec))
        except SearchSpaceError as err:
            errors.append(str(err))
    by_name = {p.name: p for p in params}
    for param in params:
        errors.extend(_condition_errors(param, by_name))
    if errors:
        raise SearchSpaceError("invalid search space:\n  " + "\n  ".join(errors))
    space = SearchSpace(tuple(_order(params)))
    n_combos = sum(1 for _ in itertools.islice(space.categorical_combinations(), MAX_COMBINATIONS + 1))
    if n_combos > MAX_COMBINATIONS:
        raise SearchSpaceError(f"search_space has more than {MAX_COMBINATIONS} categorical combinations; "
                               f"each is composed and validated before the sweep - reduce the choices")
    return space


def _parse_param(name: str, spec: Any) -> Param:
    if not isinstance(spec, Mapping):
        raise SearchSpaceError(f"search_space.{name}: expected a mapping with 'type' (one of {PARAM_TYPES}), "
                               f"got {spec!r}")
    ptype = spec.get("type")
    if ptype not in PARAM_TYPES:
        raise SearchSpaceError(f"search_space.{name}.type={ptype!r}: allowed values are {PARAM_TYPES}")
    unknown = sorted(set(spec) - _ALLOWED_KEYS[ptype])
    if unknown:
        raise SearchSpaceError(f"search_space.{name}: unknown key(s) {unknown} for type {ptype}; "
                               f"allowed keys are {sorted(_ALLOWED_KEYS[ptype])}")
    when = _parse_when(name, spec.get("when"))
    if ptype == "categorical":
        return _parse_categorical(name, spec, when)
    return _parse_numeric(name, ptype, spec, when)


def _parse_when(name: str, when: Any) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if when is None:
        return ()
    if not isinstance(when, Mapping) or not when:
        raise SearchSpaceError(f"search_space.{name}.when: expected a mapping {{categorical_param: [values]}}, "
                               f"got {when!r}")
    out = []
    for key, allowed in when.items():
        values = tuple(allowed) if isinstance(allowed, (list, tuple)) or _is_listconfig(allowed) else (allowed,)
        if not values:
            raise SearchSpaceError(f"search_space.{name}.when.{key}: empty list of values")
        out.append((str(key), values))
    return tuple(out)


def _is_listconfig(value: Any) -> bool:
    return type(value).__name__ == "ListConfig"


def _parse_categorical(name: str, spec: Mapping[str, Any], when: tuple) -> Param:
    choices = spec.get("choices")
    if not (isinstance(choices, (list, tuple)) or _is_listconfig(choices)) or len(choices) == 0:
        raise SearchSpaceError(f"search_space.{name}.choices: needs a non-empty list, got {choices!r}")
    choices = tuple(choices)
    bad = [c for c in choices if not (c is None or isinstance(c, (bool, int, float, str)))]
    if bad:
        raise SearchSpaceError(f"search_space.{name}.choices: {bad!r} not allowed; choices must be "
                               f"None, bool, int, float or str")
    if len(set(choices)) != len(choices):
        raise SearchSpaceError(f"search_space.{name}.choices: duplicates in {list(choices)}")
    return Param(name=name, type="categorical", choices=choices, when=when)


def _parse_numeric(name: str, ptype: str, spec: Mapping[str, Any], when: tuple) -> Param:
    low, high = _number(name, "low", spec.get("low")), _number(name, "high", spec.get("high"))
    log, step = bool(spec.get("log", False)), spec.get("step")
    if ptype == "int" and (low != int(low) or high != int(high)):
        raise SearchSpaceError(f"search_space.{name}: int bounds must be integers, got low={low}, high={high}")
    if not low < high:
        raise SearchSpaceError(f"search_space.{name}: needs low < high, got low={low}, high={high}")
    if log and low <= 0:
        raise SearchSpaceError(f"search_space.{name}: log scale needs low > 0, got low={low}")
    if step is not None:
        step = _number(name, "step", step)
        if step <= 0:
            raise SearchSpaceError(f"search_space.{name}.step: must be > 0, got {step}")
        if log:
            raise SearchSpaceError(f"search_space.{name}: 'step' and 'log: true' cannot be combined (Optuna)")
        if ptype == "int" and step != int(step):
            raise SearchSpaceError(f"search_space.{name}.step: must be an integer for an int param, got {step}")
    grid = tuple(spec.get("grid") or ())
    for value in grid:
        if not (low <= _number(name, "grid", value) <= high):
            raise SearchSpaceError(f"search_space.{name}.grid: value {value} outside [low={low}, high={high}]")
    cast = int if ptype == "int" else float
    return Param(name=name, type=ptype, low=cast(low), high=cast(high), log=log,
                 step=None if step is None else cast(step), when=when, grid=tuple(cast(v) for v in grid))


def _number(name: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SearchSpaceError(f"search_space.{name}.{key}: expected a number, got {value!r}")
    try:
        out = float(value)
    except ValueError:
        raise SearchSpaceError(f"search_space.{name}.{key}: expected a number, got {value!r}") from None
    if not math.isfinite(out):
        raise SearchSpaceError(f"search_space.{name}.{key}: must be finite, got {value!r}")
    return out


def _condition_errors(param: Param, by_name: Mapping[str, Param]) -> list[str]:
    errors = []
    for key, allowed in param.when:
        target = by_name.get(key)
        if target is None or target.type != "categorical":
            cats = sorted(p.name for p in by_name.values() if p.type == "categorical")
            errors.append(f"search_space.{param.name}.when: '{key}' must be a categorical param of the space "
                          f"(categorical params: {cats})")
            continue
        if key == param.name:
            errors.append(f"search_space.{param.name}.when: a param cannot depend on itself")
            continue
        bad = [v for v in allowed if v not in target.choices]
        if bad:
            errors.append(f"search_space.{param.name}.when.{key}: {bad} not among its choices "
                          f"{list(target.choices)}")
    return errors


def _order(params: list[Param]) -> list[Param]:
    """Topological order (conditions before dependants), categorical first, else declaration order."""
    ordered: list[Param] = []
    pending = sorted(params, key=lambda p: p.type != "categorical")
    while pending:
        ready = [p for p in pending if all(k in {o.name for o in ordered} for k, _ in p.when)]
        if not ready:
            cycle = sorted(p.name for p in pending)
            raise SearchSpaceError(f"search_space: conditions form a cycle among {cycle}")
        ordered.append(ready[0])
        pending.remove(ready[0])
    return ordered


# ----------------------------------------------------------------------------- overrides
def format_override_value(value: Any) -> str:
    """A value as Hydra's override grammar reads it back unchanged (strings quoted when needed)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    if text and all(c.isalnum() or c in "_-./" for c in text) and text not in ("null", "true", "false"):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def to_overrides(values: Mapping[str, Any]) -> list[str]:
    """``{"method": "simclr", "method.temperature": 0.1}`` -> ``["method=simclr", "method.temperature=0.1"]``:
    the categorical first, so choosing a config group happens before its fields are set."""
    return [f"{name}={format_override_value(value)}" for name, value in values.items()]

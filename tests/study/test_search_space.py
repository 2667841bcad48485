"""Search-space parsing, validation messages, conditional sampling and grids, on exact known answers."""
from __future__ import annotations

import optuna
import pytest

from sweep.study.search_space import (
    SearchSpaceError,
    format_override_value,
    parse_search_space,
    to_overrides,
)

SPACE = {
    "optim.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "method.temperature": {"type": "float", "low": 0.05, "high": 0.5, "when": {"method": ["simclr", "mocov2"]}},
    "method": {"type": "categorical", "choices": ["simclr", "mocov2", "byol"]},
    "epochs": {"type": "int", "low": 2, "high": 8, "step": 2},
}


def test_order_puts_conditions_first() -> None:
    space = parse_search_space(SPACE)
    assert space.names[0] == "method"
    assert space.names.index("method.temperature") > space.names.index("method")


@pytest.mark.parametrize("spec, fragment", [
    ({"a": {"type": "float", "low": 1.0, "high": 1.0}}, "search_space.a: needs low < high, got low=1.0, high=1.0"),
    ({"a": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}, "log scale needs low > 0"),
    ({"a": {"type": "categorical", "choices": []}}, "search_space.a.choices: needs a non-empty list"),
    ({"a": {"type": "uniform", "low": 0, "high": 1}}, "allowed values are ('float', 'int', 'categorical')"),
    ({"a": {"type": "float", "low": 0, "high": 1, "lower": 3}}, "unknown key(s) ['lower']"),
    ({"a": {"type": "int", "low": 0.5, "high": 3}}, "int bounds must be integers"),
    ({"a": {"type": "float", "low": 0, "high": 1, "when": {"m": ["x"]}}}, "'m' must be a categorical param"),
    ({"m": {"type": "categorical", "choices": ["x", "y"]},
      "a": {"type": "float", "low": 0, "high": 1, "when": {"m": ["z"]}}}, "['z'] not among its choices ['x', 'y']"),
    ({"a": {"type": "float", "low": 0.1, "high": 1, "log": True, "step": 0.1}}, "'step' and 'log: true'"),
    ({"a": {"type": "float", "low": 0, "high": 1, "grid": [0.5, 2.0]}}, "value 2.0 outside [low=0.0, high=1.0]"),
    ({}, "search_space is empty"),
])
def test_invalid_spaces_name_param_and_allowed_values(spec: dict, fragment: str) -> None:
    with pytest.raises(SearchSpaceError) as err:
        parse_search_space(spec)
    assert fragment in str(err.value)


def test_all_errors_reported_at_once() -> None:
    with pytest.raises(SearchSpaceError) as err:
        parse_search_space({"a": {"type": "float", "low": 2, "high": 1}, "b": {"type": "categorical", "choices": []}})
    assert "search_space.a" in str(err.value) and "search_space.b" in str(err.value)


def test_conditional_param_only_when_active() -> None:
    space = parse_search_space(SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: dict[str, set] = {"simclr": set(), "mocov2": set(), "byol": set()}
    for _ in range(60):
        trial = study.ask()
        params = space.suggest(trial)
        seen[params["method"]].add("method.temperature" in params)
        assert params["epochs"] in (2, 4, 6, 8)
        assert 1e-4 <= params["optim.lr"] <= 1e-1
        study.tell(trial, 0.0)
    assert seen == {"simclr": {True}, "mocov2": {True}, "byol": {False}}


def test_int_bounds_are_inclusive_both_ends() -> None:
    space = parse_search_space({"k": {"type": "int", "low": -2, "high": 2}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    values = set()
    for _ in range(200):
        trial = study.ask()
        values.add(space.suggest(trial)["k"])
        study.tell(trial, 0.0)
    assert values == {-2, -1, 0, 1, 2}
    assert space.grid() == {"k": [-2, -1, 0, 1, 2]}


def test_grid_from_space() -> None:
    space = parse_search_space({
        "m": {"type": "categorical", "choices": ["a", "b"]},
        "e": {"type": "int", "low": 1, "high": 5, "step": 2},
        "w": {"type": "float", "low": 0.0, "high": 0.3, "step": 0.1},
        "lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True, "grid": [1e-3, 1e-2]},
    })
    assert space.grid() == {"m": ["a", "b"], "e": [1, 3, 5], "w": [0.0, 0.1, 0.2, 0.3], "lr": [1e-3, 1e-2]}
    assert space.grid_size() == 2 * 3 * 4 * 2


def test_grid_needs_explicit_values_for_continuous_floats() -> None:
    space = parse_search_space({"lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}})
    with pytest.raises(SearchSpaceError, match="needs explicit 'grid' values"):
        space.grid()


def test_categorical_combinations_and_boundaries() -> None:
    space = parse_search_space({
        "method": {"type": "categorical", "choices": ["simclr", "byol"]},
        "opt": {"type": "categorical", "choices": ["sgd", "lars"], "when": {"method": ["simclr"]}},
        "t": {"type": "float", "low": 0.1, "high": 0.5, "when": {"method": ["simclr"]}},
    })
    combos = list(space.categorical_combinations())
    assert combos == [{"method": "simclr", "opt": "sgd"}, {"method": "simclr", "opt": "lars"}, {"method": "byol"}]
    bounds = list(space.boundary_assignments())
    assert {"method": "simclr", "opt": "sgd", "t": 0.1} in bounds and {"method": "byol"} in bounds
    assert len(bounds) == 6


def test_overrides_round_trip_through_hydra_grammar() -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    values = {"method": "simclr", "t": 0.1, "n": 3, "flag": True, "none": None, "name": "a b", "odd": "null"}
    parsed = OverridesParser.create().parse_overrides(to_overrides(values))
    assert {o.key_or_group: o.value() for o in parsed} == values
    assert format_override_value(1e-5) == "1e-05"


# ----------------------------------------------------------------------------- the shipped YAML spaces and presets
def _compose_train(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from sweep.config.paths import conf_dir
    from sweep.config.store import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["demo", "tiny", "grid_lr"])
def test_shipped_spaces_compose_and_validate_for_every_combination(name: str) -> None:
    """Each conf/search_space/*.yaml, at every categorical combination and both numeric ends, composes against the
    real train config and passes its validator (what the sweeper checks before submitting)."""
    pytest.importorskip("sweep.config.validate")
    from omegaconf import OmegaConf

    from sweep.train.config_check import validate_train_config

    raw = OmegaConf.to_container(_compose_train(["hydra/sweeper=sweep_optuna", f"+search_space={name}"])
                                 .hydra.sweeper.search_space)
    space = parse_search_space(raw)
    if name == "grid_lr":
        assert space.grid_size() == 2 * 3 * 3
    for assignment in space.boundary_assignments():
        cfg = _compose_train(["experiment=tiny", *to_overrides(assignment)])
        OmegaConf.set_struct(cfg, False)
        cfg.pop("hydra")
        cfg.run_dir = "/tmp/unused"
        validate_train_config(cfg)


def test_sweeper_presets() -> None:
    cfg = _compose_train(["hydra/sweeper=rankme_alpha", "hydra/launcher=slurm_gpu"])
    assert cfg.hydra.sweeper.sampler.name == "nsgaii"
    assert [dict(o) for o in cfg.hydra.sweeper.objectives] == [
        {"metric": "rankme", "direction": "maximize", "target": None},
        {"metric": "alpha", "direction": None, "target": 1.0}]
    assert cfg.hydra.launcher.gpus_per_node == 1 and cfg.hydra.launcher.preempt_signal == "USR2"
    journal = _compose_train(["hydra/sweeper=journal"]).hydra.sweeper
    assert journal.objectives[0].metric == "rankme"
    from omegaconf import OmegaConf

    storage = OmegaConf.to_container(journal, resolve=False)["storage"]
    assert storage == "journal://.sweep/${hydra.job.name}.journal"

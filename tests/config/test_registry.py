"""sweep.registry.Registry, and the "add one of each" examples of docs/ARCHITECTURE.md run exactly as written:
each registers a new entry of its kind, which is then built, validated or run through the public path."""
from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from sweep.registry import DuplicateNameError, Registry, UnknownNameError

DOC = Path(__file__).resolve().parents[2] / "docs" / "ARCHITECTURE.md"


# ----------------------------------------------------------------------------- Registry
def test_get_names_the_kind_field_allowed_names_and_the_closest() -> None:
    reg: Registry[int] = Registry("optimizer", field="optim.name")
    reg.register("adam", 1)
    reg.register("adamw", 2)
    assert reg.get("adamw") == 2 and reg.names() == ["adam", "adamw"] and "adam" in reg and len(reg) == 2
    with pytest.raises(UnknownNameError) as err:
        reg.get("adamv")
    assert str(err.value) == "optim.name='adamv': unknown optimizer; allowed ['adam', 'adamw']; did you mean 'adam'?"
    assert isinstance(err.value, ValueError) and isinstance(err.value, KeyError)
    import pickle

    assert str(pickle.loads(pickle.dumps(err.value))) == str(err.value)  # survives a job's result pickle
    with pytest.raises(UnknownNameError, match=r"^unknown policy 'zzz'; allowed \[\]$"):
        Registry("policy").get("zzz")


def test_decorator_returns_the_entry_and_duplicates_are_refused() -> None:
    reg: Registry[Any] = Registry("thing")

    @reg.register("f")
    def f() -> int:
        return 1

    assert f() == 1 and reg.get("f") is f
    reg.register("f", f)  # the same object again: idempotent (a module imported twice)
    with pytest.raises(DuplicateNameError, match="thing 'f' is registered twice"):
        reg.register("f", lambda: 2)
    reg.unregister("f")
    assert reg.names() == []
    with pytest.raises(ValueError, match="non-empty string"):
        reg.register("")


# ----------------------------------------------------------------------------- the documented examples
def doc_examples() -> dict[str, str]:
    """``# example: <kind>`` python blocks of docs/ARCHITECTURE.md, by kind."""
    blocks = re.findall(r"```python\n# example: (\w+)\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    return {kind: code for kind, code in blocks}


KINDS = ("method", "backbone", "optimizer", "dataset", "metric", "objective", "policy", "launcher")


def test_the_doc_has_one_example_per_kind() -> None:
    assert set(doc_examples()) == set(KINDS)


def _registries() -> dict[str, tuple[Registry[Any], str]]:
    from sweep.data import DATASETS
    from sweep.launch import LAUNCHERS
    from sweep.metrics import METRICS
    from sweep.selection.policies import POLICIES
    from sweep.ssl.backbones import BACKBONES
    from sweep.ssl.methods import METHODS
    from sweep.study.objectives import OBJECTIVES
    from sweep.train.optim import OPTIMIZERS

    return {"method": (METHODS, "my_simclr"), "backbone": (BACKBONES, "tiny_conv"),
            "optimizer": (OPTIMIZERS, "rmsprop"), "dataset": (DATASETS, "stripes"),
            "metric": (METRICS, "feature_norm"), "objective": (OBJECTIVES, "rankme_per_alpha"),
            "policy": (POLICIES, "lowest_alpha"), "launcher": (LAUNCHERS, "serial")}


@pytest.fixture
def example(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Run the kind's example; afterwards its entry (and the method's schema) is removed again."""
    kind = request.param
    registry, name = _registries()[kind]
    assert name not in registry
    module = types.ModuleType(f"doc_example_{kind}")  # a real module: dataclasses look their module up
    sys.modules[module.__name__] = module
    try:
        exec(compile(doc_examples()[kind], f"{DOC}:{kind}", "exec"), module.__dict__)
        assert name in registry
        yield module.__dict__
    finally:
        sys.modules.pop(module.__name__, None)
        registry.unregister(name)
        from sweep.config.schema import METHOD_SCHEMAS

        METHOD_SCHEMAS.pop("my_simclr", None)


def _cfg(**overrides: Any) -> Any:
    from sweep.config import compose_train_config

    return compose_train_config([f"{k}={v}" for k, v in overrides.items()], run_dir=".")


@pytest.mark.parametrize("example", ["method"], indirect=True)
def test_method_example_builds_trains_and_validates(example: dict[str, Any]) -> None:
    from sweep.ssl import build_backbone, build_method
    from sweep.train.config_check import registered_names

    backbone, dim = build_backbone(OmegaConf.create({"name": "mlp", "hidden_dims": [16]}), (1, 8, 8))
    cfg = OmegaConf.structured(example["MySimCLRConfig"])
    model = build_method(cfg, backbone, dim)
    x = torch.rand(8, 1, 8, 8)
    assert type(model).__name__ == "MySimCLR" and torch.isfinite(model.loss(x, x.flip(-1)))
    assert "my_simclr" in registered_names()["method"]


@pytest.mark.parametrize("example", ["backbone"], indirect=True)
def test_backbone_example_builds(example: dict[str, Any]) -> None:
    from sweep.ssl import build_backbone

    net, dim = build_backbone(OmegaConf.create({"name": "tiny_conv", "width": 6}), (3, 8, 8))
    assert dim == 6 and net(torch.rand(2, 3, 8, 8)).shape == (2, 6)


@pytest.mark.parametrize("example", ["optimizer"], indirect=True)
def test_optimizer_example_is_built_and_allowed_by_validation(example: dict[str, Any]) -> None:
    from sweep.config.schema import OptimConfig
    from sweep.train.optim import build_optimizer
    from sweep.train.config_check import config_problems

    opt = build_optimizer(torch.nn.Linear(2, 2), OptimConfig(name="rmsprop"))
    assert isinstance(opt, torch.optim.RMSprop)
    assert not [p for p in config_problems(_cfg(**{"optim.name": "rmsprop"})) if p.startswith("optim.name")]


def test_validation_suggests_the_closest_registered_name() -> None:
    from sweep.train.config_check import config_problems

    problems = config_problems(_cfg(**{"optim.name": "adamv", "method.name": "simclrr"}))
    assert "optim.name='adamv': unknown optimizer; allowed ['adam', 'adamw', 'sgd', 'lars']; did you mean 'adam'?" \
        in problems
    assert any(p.startswith("method.name='simclrr'") and "did you mean 'simclr'" in p for p in problems)


@pytest.mark.parametrize("example", ["dataset"], indirect=True)
def test_dataset_example_loads(example: dict[str, Any]) -> None:
    from sweep.config.schema import DataConfig
    from sweep.data import load_dataset

    ds = load_dataset(DataConfig(name="stripes"))
    assert ds.train.images.shape == (64, 1, 8, 8) and ds.classes == ["vertical", "horizontal"]
    assert float(ds.train.images.max()) == 1.0


@pytest.mark.parametrize("example", ["metric"], indirect=True)
def test_metric_example_lands_in_the_monitoring_row(example: dict[str, Any]) -> None:
    from sweep.metrics import registered_row

    x = np.ones((4, 9))
    assert registered_row(x, x)["feature_norm"] == pytest.approx(3.0)  # beside the built-in row metrics


@pytest.mark.parametrize("example", ["objective"], indirect=True)
def test_objective_example_is_a_sweep_objective(example: dict[str, Any]) -> None:
    from sweep.study.objectives import objective_values, parse_objectives

    objectives = parse_objectives([{"metric": "rankme_per_alpha", "direction": "maximize"}])
    assert objective_values(objectives, {"metrics": {"rankme": 12.0, "alpha": 2.0}}) == [6.0]


@pytest.mark.parametrize("example", ["policy"], indirect=True)
def test_policy_example_runs_with_every_policy(example: dict[str, Any]) -> None:
    from sweep.selection.policies import run_policies

    trials = pd.DataFrame({"trial": [0, 1, 2], "state": "COMPLETE", "method": "simclr",
                           "rankme": [5.0, 6.0, 7.0], "alpha": [1.4, 0.7, 1.0]})
    acc = {0: 0.5, 1: 0.6, 2: 0.7}
    chosen = {r.policy: r.chosen_trial for r in run_policies(trials, acc.__getitem__)}
    assert chosen["lowest_alpha"] == 1


@pytest.mark.parametrize("example", ["launcher"], indirect=True)
def test_launcher_example_runs_plain_jobs_and_is_a_cli_choice(example: dict[str, Any], tmp_path: Path) -> None:
    from sweep.cli import _launcher_kind, _launcher_plugin
    from sweep.launch import LAUNCHERS, kind_of_plugin, make_executor

    assert make_executor({"kind": "serial"}, tmp_path).submit(pow, 3, 2).result() == 9
    assert LAUNCHERS.get("serial").launcher is example["SerialLauncher"]
    assert kind_of_plugin("sweep_serial") == "serial"
    assert _launcher_kind("serial") == "serial" and _launcher_plugin("sweep_serial") == "sweep_serial"

    from hydra_plugins.sweep_plugins.sweep_launchers import SweepLauncher

    front = SweepLauncher(kind="serial")  # what conf/hydra/launcher/sweep_serial.yaml instantiates
    front.setup(hydra_context=None, task_function=print, config=OmegaConf.create({}))
    assert isinstance(front.impl, example["SerialLauncher"])


def test_cli_launcher_flags_name_the_registered_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    from sweep.cli import main as cli_main

    with pytest.raises(SystemExit) as exc:
        cli_main(["risk", "--storage", "s", "--study", "x", "--sweep-dir", "d", "--launcher", "locall"])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert "unknown launcher 'locall'; allowed ['inprocess', 'local', 'slurm']; did you mean 'local'?" in err

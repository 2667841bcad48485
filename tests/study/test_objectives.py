"""Objective specs -> directions and values, including the alpha target and failure reasons."""
from __future__ import annotations

import math

import pytest

from sweep.study.objectives import ObjectiveError, directions, objective_values, parse_objectives
from sweep.launch.outcome import FAILED, PRUNED, outcome_from_exit, outcome_from_return


def test_rankme_maximised_alpha_target_minimised() -> None:
    objs = parse_objectives([{"metric": "rankme", "direction": "maximize"}, {"metric": "alpha", "target": 1.0}])
    assert directions(objs) == ["maximize", "minimize"]
    assert objective_values(objs, {"metrics": {"rankme": 42.0, "alpha": 0.75}}) == [42.0, 0.25]
    assert objective_values(objs, {"metrics": {"rankme": 1.0, "alpha": 1.5}}) == [1.0, 0.5]


def test_default_direction_is_maximize() -> None:
    assert directions(parse_objectives([{"metric": "rankme"}])) == ["maximize"]
    assert directions(parse_objectives([{"metric": "alpha", "direction": None, "target": 1}])) == ["minimize"]


@pytest.mark.parametrize("spec, fragment", [
    ([], "needs at least one entry"),
    ([{"metric": "rankme", "direction": "up"}], "allowed values are ('maximize', 'minimize')"),
    ([{"metric": "alpha", "target": 1.0, "direction": "maximize"}], "direction must be minimize"),
    ([{"metric": "", "direction": "maximize"}], "objectives[0].metric"),
    ([{"metric": "rankme", "goal": 1}], "unknown key(s) ['goal']"),
    ([{"metric": "rankme"}, {"metric": "rankme"}], "duplicate entries"),
])
def test_bad_specs(spec: list, fragment: str) -> None:
    with pytest.raises(ObjectiveError) as err:
        parse_objectives(spec)
    assert fragment in str(err.value)


@pytest.mark.parametrize("metrics, fragment", [
    ({"alpha": 1.0}, "missing_metric: the record has no value for 'rankme'"),
    ({"rankme": None}, "missing_metric"),
    ({"rankme": math.nan}, "nan_metric: 'rankme' = nan"),
    ({"rankme": "x"}, "bad_metric"),
])
def test_unusable_values_fail_with_reason(metrics: dict, fragment: str) -> None:
    with pytest.raises(ObjectiveError) as err:
        objective_values(parse_objectives([{"metric": "rankme"}]), {"metrics": metrics})
    assert fragment in str(err.value)


def test_record_status_decides_outcome() -> None:
    failed = outcome_from_return({"status": "failed", "failure_reason": "nan_loss: epoch 3", "metrics": {}})
    assert (failed.status, failed.failure_reason) == (FAILED, "nan_loss: epoch 3")
    pruned = outcome_from_return({"status": "pruned", "failure_reason": "pruned at step 2"})
    assert pruned.status == PRUNED
    assert outcome_from_return(3.0).failure_reason.startswith("bad_record")


def test_exit_codes_name_the_signal() -> None:
    assert outcome_from_exit(-9).failure_reason == "crashed: worker killed by SIGKILL (exit 137)"
    assert outcome_from_exit(137).failure_reason == "crashed: worker killed by SIGKILL (exit 137)"
    assert outcome_from_exit(3, "x\nValueError: bad\n").failure_reason == (
        "crashed: worker exited with code 3 without a result; last stderr line: ValueError: bad")


def test_one_score_for_floats_arrays_and_columns() -> None:
    """The sweeper's tell, the job's reports and the replay all score through ``Objective.score``."""
    import numpy as np
    import pandas as pd
    import torch

    alpha, rankme = parse_objectives([{"metric": "alpha", "target": 1.0}, {"metric": "rankme"}])
    assert alpha.score(1.5) == pytest.approx(0.5) and rankme.score(7.0) == 7.0
    assert np.allclose(alpha.score(np.array([0.5, 1.25, np.nan])), [0.5, 0.25, np.nan], equal_nan=True)
    assert torch.allclose(alpha.score(torch.tensor([0.0, 2.0])), torch.tensor([1.0, 1.0]))
    assert alpha.score(pd.Series([0.0, 3.0])).tolist() == [1.0, 2.0]
    assert objective_values([alpha, rankme], {"metrics": {"alpha": 0.75, "rankme": 3}}) == [alpha.score(0.75), 3.0]

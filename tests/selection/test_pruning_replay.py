"""Pruner replay on stored curves (sweep.selection.replay) and the benchmarks/pruning.py CLI, on hand-made data with
known answers; nothing here needs benchmarks/data/*.parquet."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from sweep.study.objectives import parse_objectives
from sweep.selection.replay import (
    ALL_METHODS,
    COMPLETE,
    FAIL,
    PRUNED,
    ReplayError,
    ReplaySetup,
    SelectionColumns,
    choose,
    objective_curves,
    oracle_test,
    regret_points,
    replay_all,
    replay_pruner,
    summarise,
    target_met,
    verdict,
)
from sweep.study.samplers import make_pruner

REPO = Path(__file__).resolve().parents[2]
MAXIMISE = parse_objectives([{"metric": "rankme_normalized"}])[0]
# trials 0-2 improve together; trial 3 is clearly worse at every epoch
VALUES = {0: [1.0, 2.0, 3.0], 1: [1.1, 2.1, 3.1], 2: [1.2, 2.2, 3.2], 3: [0.1, 0.2, 0.3]}


def _curves(values: dict[int, list[float]], metric: str = "rankme_normalized") -> pd.DataFrame:
    return pd.DataFrame([{"trial": t, "epoch": e + 1, metric: v} for t, vs in values.items() for e, v in enumerate(vs)])


def _median(startup: int = 2, warmup: int = 0):
    return lambda: optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)


def test_median_prunes_the_worse_trial_at_its_first_report_when_it_comes_last() -> None:
    res = replay_pruner(_curves(VALUES), MAXIMISE, _median(), order=[0, 1, 2, 3])
    assert res.states == {0: COMPLETE, 1: COMPLETE, 2: COMPLETE, 3: PRUNED}
    assert res.epochs_run == {0: 3, 1: 3, 2: 3, 3: 1}
    assert (res.trial_epochs_run, res.trial_epochs_full) == (10, 12)
    assert res.saved == pytest.approx(2 / 12)
    assert res.pruned == (3,) and res.completed == (0, 1, 2)
    assert res.values == {0: 3.0, 1: 3.1, 2: 3.2} and res.best_trial() == 2


def test_median_cannot_prune_the_worse_trial_while_it_is_a_startup_trial() -> None:
    res = replay_pruner(_curves(VALUES), MAXIMISE, _median(), order=[3, 0, 1, 2])
    assert set(res.states.values()) == {COMPLETE} and res.trial_epochs_run == 12 and res.saved == 0.0


def test_warmup_delays_pruning_to_the_first_step_at_or_after_it() -> None:
    res = replay_pruner(_curves(VALUES), MAXIMISE, _median(warmup=2), order=[0, 1, 2, 3])
    assert res.states[3] == PRUNED and res.epochs_run[3] == 2 and res.trial_epochs_run == 11


def test_none_saves_nothing() -> None:
    res = replay_pruner(_curves(VALUES), MAXIMISE, lambda: make_pruner("none", {}), order=[0, 1, 2, 3])
    assert res.saved == 0.0 and res.ratio == 1.0 and not res.pruned and len(res.completed) == 4


def test_target_objective_is_minimised_distance() -> None:
    alpha = parse_objectives([{"metric": "alpha", "target": 1.0}])[0]
    values = {0: [1.1, 1.05, 1.0], 1: [0.9, 0.95, 1.02], 2: [1.3, 1.2, 1.1], 3: [3.0, 3.0, 3.0]}
    curves = objective_curves(_curves(values, "alpha"), alpha)
    np.testing.assert_allclose(curves[3].values, [2.0, 2.0, 2.0])
    res = replay_pruner(curves, alpha, _median(), order=[0, 1, 2, 3])
    assert res.states[3] == PRUNED and res.epochs_run[3] == 1 and res.best_trial() == 0


def test_failed_and_nan_trials() -> None:
    values = {0: [1.0, 2.0, 3.0], 1: [1.1, 2.1, 3.1], 2: [1.5, float("nan")], 3: [1.2, 2.2, float("nan")]}
    res = replay_pruner(_curves(values), MAXIMISE, lambda: make_pruner("none", {}), order=[0, 1, 2, 3], failed=[2])
    assert res.states == {0: COMPLETE, 1: COMPLETE, 2: FAIL, 3: FAIL}  # failed run; NaN final value
    assert res.epochs_full[2] == 2 and res.trial_epochs_full == 11 and res.saved == 0.0


def test_bad_inputs_name_the_problem() -> None:
    with pytest.raises(ReplayError, match=r"lack column\(s\) \['rankme_normalized'\]"):
        objective_curves(pd.DataFrame({"trial": [0], "epoch": [1]}), MAXIMISE)
    with pytest.raises(ReplayError, match="duplicate"):
        objective_curves(_curves({0: [1.0]}).pipe(lambda f: pd.concat([f, f])), MAXIMISE)
    with pytest.raises(ReplayError, match="1-based"):
        objective_curves(_curves({0: [1.0]}).assign(epoch=0), MAXIMISE)
    with pytest.raises(ReplayError, match=r"trial ids \[9\]"):
        replay_pruner(_curves(VALUES), MAXIMISE, _median(), order=[0, 9])


# ----------------------------------------------------------------------------- selection and the measurement
def _table() -> pd.DataFrame:
    """Trial 2 has the best val and test; trial 3 is the one the median pruner removes."""
    return pd.DataFrame({
        "trial": [0, 1, 2, 3], "method": "m", "state": ["COMPLETE"] * 4,
        "rankme_normalized": [3.0, 3.1, 3.2, 0.3], "alpha": [1.0, 1.1, 0.9, 2.0],
        "val_accuracy": [0.80, 0.81, 0.85, 0.70], "test_accuracy": [0.79, 0.80, 0.84, 0.71]})


def test_oracle_and_regret_by_hand() -> None:
    table, cols = _table(), SelectionColumns()
    assert oracle_test(table, cols) == pytest.approx(0.84)
    assert regret_points(table, 0, 0.84, cols) == pytest.approx(5.0)
    assert math.isnan(regret_points(table, None, 0.84, cols))
    assert choose(table, "argmax", MAXIMISE, cols).chosen_trial == 2
    survivors = choose(table[table["trial"] != 2], "oracle", MAXIMISE, cols)  # pruning removed the best config
    assert survivors.chosen_trial == 1 and survivors.readouts_used == 3
    assert regret_points(table, survivors.chosen_trial, oracle_test(table, cols), cols) == pytest.approx(4.0)
    with pytest.raises(ReplayError, match="allowed values"):
        choose(table, "best", MAXIMISE, cols)


def test_replay_all_none_row_equals_no_pruning_and_median_saves() -> None:
    setup = ReplaySetup(MAXIMISE, {"median": _median(), "none": lambda: make_pruner("none", {})}, n_orders=12)
    summary = summarise(replay_all(_table(), _curves(VALUES), setup))
    none = summary[summary["pruner"] == "none"]
    assert (none["saved"] == 0.0).all()
    np.testing.assert_allclose(none["regret_mean_pts"], none["regret_unpruned_pts"])
    median = summary[(summary["pruner"] == "median") & (summary["method"] == ALL_METHODS)]
    assert (median["saved"] > 0).all() and (median["saved"] <= 2 / 12 + 1e-12).all()  # only trial 3 is prunable
    assert (median["regret_mean_pts"] == 0.0).all()  # pruning the worst trial never costs the choice
    assert verdict(summary, "median").endswith("NOT MET")  # saves at most 17%: below the 40% target


def test_target_definition() -> None:
    assert target_met(0.40, 0.55, 0.30) and not target_met(0.39, 0.0, 0.0)
    assert not target_met(0.9, 0.56, 0.30)  # 0.26 points worse is not equal quality


# ----------------------------------------------------------------------------- the CLI end to end
def _write_testbed(folder: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    rows, curves = [], []
    for trial in range(24):
        method, quality = ("simclr", "vicreg")[trial % 2], rng.normal()
        last = 2 if trial == 5 else 4  # trial 5 failed after 2 epochs
        for epoch in range(1, last + 1):
            value = 0.4 * (1 - math.exp(-epoch)) + 0.05 * quality
            curves.append({"trial": trial, "method": method, "epoch": epoch, "loss": 1 / epoch, "rankme": 64 * value,
                           "rankme_normalized": value, "alpha": 1 + 0.2 * rng.normal()})
        accuracy = 0.8 + 0.02 * quality
        for repeat in (0, 1):
            rows.append({"trial": trial + 100 * repeat, "method": method, "config_id": trial, "seed": repeat,
                         "repeat": repeat, "state": "FAIL" if trial == 5 else "COMPLETE",
                         "rankme_normalized": curves[-1]["rankme_normalized"], "alpha": curves[-1]["alpha"],
                         "val_accuracy": accuracy + 0.003 * rng.normal(), "test_accuracy": accuracy, "epochs": last})
    table, curve_path = folder / "testbed.parquet", folder / "testbed_curves.parquet"
    pd.DataFrame(rows).to_parquet(table)
    pd.DataFrame(curves).to_parquet(curve_path)
    return table, curve_path


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "pruning.py"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_runs_end_to_end(tmp_path: Path) -> None:
    table, curves = _write_testbed(tmp_path)
    out = tmp_path / "summary.csv"
    proc = _cli("--table", str(table), "--curves", str(curves), "--quick", "--csv", str(out),
                "--n-startup-trials", "3")
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("pruning (successive_halving): saves ") and last.endswith(("MET", "NOT MET"))
    assert "pruning (median): saves " in proc.stdout and f"wrote {out}" in proc.stdout
    assert "hydra.sweeper.pruner.name=median hydra.sweeper.pruner.options.n_startup_trials=3" in proc.stdout
    summary = pd.read_csv(out)
    assert set(summary["pruner"]) == {"median", "successive_halving", "none"}
    assert set(summary["method"]) == {"simclr", "vicreg", ALL_METHODS}
    assert (summary["trials"][summary["method"] == ALL_METHODS] == 24).all()  # repeat 0 only
    assert (summary.loc[summary["pruner"] == "none", "saved"] == 0.0).all()


def test_cli_alpha_target_pooled_and_errors(tmp_path: Path) -> None:
    table, curves = _write_testbed(tmp_path)
    proc = _cli("--table", str(table), "--curves", str(curves), "--quick", "--objective", "alpha", "--target", "1.0",
                "--pooled", "--pruners", "median", "none")
    assert proc.returncode == 0, proc.stderr
    assert "objective |alpha-1| (minimize), one study over all methods" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("pruning (median): saves ")
    missing = _cli("--table", str(tmp_path / "nope.parquet"), "--curves", str(curves), "--quick")
    assert missing.returncode == 2 and "--table" in missing.stderr and "no such file" in missing.stderr
    bad = _cli("--table", str(table), "--curves", str(curves), "--quick", "--objective", "no_such_metric")
    assert bad.returncode == 2 and "no_such_metric" in bad.stderr

"""The synthetic-sweep generator and the summary of benchmarks/selection.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sweep.selection.policies import POLICY_NAMES

_SPEC = importlib.util.spec_from_file_location(
    "bench_selection", Path(__file__).parents[1] / "benchmarks" / "selection.py"
)
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)  # type: ignore[union-attr]


def test_generator_is_seeded_and_plausible() -> None:
    a = bench.synthetic_sweep(2000, np.random.default_rng(1), residual=0.0, readout=0.0)
    b = bench.synthetic_sweep(2000, np.random.default_rng(1), residual=0.0, readout=0.0)
    pd.testing.assert_frame_equal(a[0], b[0])
    trials, val, test = a
    failed = trials["state"] == "FAIL"
    assert (
        0.03 < failed.mean() < 0.07
        and trials.loc[failed, "alpha"].isna().all()
        and np.isnan(val[failed]).all()
    )
    np.testing.assert_allclose(val, test)  # no noise -> the two splits agree
    ok = ~failed.to_numpy()
    alpha, acc = trials["alpha"].to_numpy()[ok], val[ok]
    bins = pd.cut(alpha, [0.4, 0.7, 0.9, 1.1, 1.5, 3.0])
    means = pd.Series(acc).groupby(bins, observed=True).mean()
    # accuracy peaks near alpha = 1: a little below it, since the RankMe term favours flatter spectra
    assert means.idxmax().left in (0.7, 0.9)
    assert means.iloc[0] < means.max() and means.iloc[-1] < means.max()
    a_rows = trials["method"].to_numpy()[ok] == "method_a"
    assert np.corrcoef(trials["rankme"].to_numpy()[ok][a_rows], acc[a_rows])[0, 1] > 0.3  # rises with RankMe


def test_summary_criteria_by_hand() -> None:
    raw = pd.DataFrame(
        {
            "n": [64] * 4,
            "policy": ["p"] * 4,
            "readouts": [8, 9, 6, 7],
            "chose": [True, True, True, False],
            "regret_points": [0.5, 0.0, 2.0, np.nan],
            "ratio": [0.995, 1.0, 0.97, np.nan],
        }
    )
    row = bench.summarise(raw).iloc[0]
    assert row["budget"] == 8  # ceil(log2 64) + 2
    assert row["p_success"] == pytest.approx(0.25)  # only the first: within budget and >= 99%
    assert row["p_ge99_oracle"] == pytest.approx(0.5) and row["p_no_choice"] == pytest.approx(0.25)
    assert row["p_within_1pt"] == pytest.approx(0.5)


def test_noise_free_accuracy_recovers_the_generator_without_noise() -> None:
    trials, val, _ = bench.synthetic_sweep(300, np.random.default_rng(2), residual=0.0, readout=0.0)
    ok = (trials["state"] == "COMPLETE").to_numpy()
    np.testing.assert_allclose(bench.noise_free_accuracy(trials)[ok], val[ok])


def test_noise_free_top_reads_the_best_noise_free_configs() -> None:
    trials, val, _ = bench.synthetic_sweep(40, np.random.default_rng(3), residual=0.0, readout=0.0)
    res = bench.noise_free_top(trials, val, budget=3)
    ok = (trials["state"] == "COMPLETE").to_numpy()
    best3 = np.argsort(-np.where(ok, val, -np.inf))[:3]
    assert set(res.read_trials) == set(int(t) for t in best3) and res.chosen_trial == int(best3[0])


def test_target_ignores_reference_rows_and_reports_not_met() -> None:
    table = pd.DataFrame(
        {
            "n": [64] * 3,
            "policy": ["oracle", "noise_free_top", "alpha_rankme"],
            "budget": [8.0] * 3,
            "readouts_mean": [64.0, 6.0, 6.0],
            "p_success": [1.0, 0.99, 0.9],
        }
    )
    assert bench.target_met(table) == (False, "alpha_rankme")
    text = bench.verdict(table)
    assert "NOT MET" in text and "0.900" in text and "0.990" in text


def test_main_quick_runs_every_policy_and_reports_target(capsys: pytest.CaptureFixture[str]) -> None:
    table = bench.main(["--quick"])
    assert set(table["n"]) == {16, 64}
    expected = set(POLICY_NAMES) | {"alpha_rankme+2", "noise_free_top"}
    assert set(table["policy"]) == expected
    assert (table.loc[table["policy"] == "oracle", "p_ge99_oracle"] == 1.0).all()
    rows = table.set_index(["n", "policy"])
    assert rows.loc[(64, "alpha_rankme"), "readouts_max"] == 6  # ceil(log2 64) in total, not per method
    assert rows.loc[(64, "alpha_rankme+2"), "readouts_max"] == 8
    assert rows["target_met"].equals(rows["p_success"] >= 0.95)
    assert "target at N=64" in capsys.readouterr().out

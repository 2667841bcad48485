"""The synthetic-sweep generator and the summary of benchmarks/selection.py."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sweep.selection.policies import POLICIES

_SPEC = importlib.util.spec_from_file_location(
    "bench_selection", Path(__file__).parents[2] / "benchmarks" / "selection.py"
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
    expected = set(POLICIES) | {"alpha_rankme+2", "noise_free_top"}
    assert set(table["policy"]) == expected
    assert (table.loc[table["policy"] == "oracle", "p_ge99_oracle"] == 1.0).all()
    rows = table.set_index(["n", "policy"])
    assert rows.loc[(64, "alpha_rankme"), "readouts_max"] == 6  # ceil(log2 64) in total, not per method
    assert rows.loc[(64, "alpha_rankme+2"), "readouts_max"] == 8
    assert rows["target_met"].equals(rows["p_success"] >= 0.95)
    assert "target at N=64" in capsys.readouterr().out


# ----------------------------------------------------------------------------- --table mode
def _table(tmp_path: Path, **kwargs: object) -> Path:
    from _selection_tables import make_testbed

    path = tmp_path / "testbed.parquet"
    make_testbed(**kwargs).to_parquet(path)  # type: ignore[arg-type]
    return path


def test_table_mode_prints_correlations_noise_savings_coverage_and_the_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _table(tmp_path, n_configs=10, repeats=2, failed=(4,))
    csv = tmp_path / "policies.csv"
    table = bench.main(["--table", str(path), "--reps", "8", "--boot", "100", "--csv", str(csv),
                        "--val-images", "700", "--test-images", "1000"])
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert "where repeat == 0: 30 trials, 29 complete" in out  # the default query drops the seed repeats
    assert re.search(r"^rankme\s+\+1\.00 \[\+1\.00, \+1\.00\] n=10", out, re.M)  # exact: rho 1, tight interval
    assert "knn_accuracy" not in out and "config_id" not in out and "abs_alpha_minus_1" in out
    assert re.search(r"simclr \(N = 9\): oracle trial \d+: val [\d.]+%, test [\d.]+%; binomial SE", out)
    assert "leave-one-out coverage" in out and "metrics" in out and "savings = random readouts needed" in out
    assert re.fullmatch(r"best policy: \S+ savings \d+\.\d\d \[\d+\.\d\d, \d+\.\d\d\] P\(within 1 pt\) "
                        r"\d\.\d\d at \d+\.\d readouts: target (MET|NOT MET)", lines[-1])
    assert f"per-policy table: {csv}" in out
    written = pd.read_csv(csv)
    assert len(written) == len(table) and set(written["scope"]) == {"barlow_twins", "simclr", "vicreg", "pooled"}
    assert {"alpha_rankme+2", "rankme_topk+2", "calibrated_rank+2", "guided-metrics", *POLICIES} == set(
        written["policy"])
    per_method = table[table["scope"] == "simclr"].set_index("policy")
    assert per_method.loc["oracle", "readouts_max"] <= 10  # a bootstrap sweep may draw the failed trial 4 (never read)
    assert per_method.loc["rankme_topk", "regret_mean_pts"] == 0.0  # RankMe ranks accuracy exactly
    assert per_method.loc["oracle", "savings"] == pytest.approx(1.0, abs=0.15)  # reading everything saves ~nothing


def test_table_mode_meets_the_target_when_rankme_is_accuracy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _table(tmp_path, n_configs=48, methods=("simclr",))
    bench.main(["--table", str(path), "--reps", "20", "--boot", "100"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("best policy: ") and last.endswith("target MET")


def test_table_mode_task_and_column_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from _selection_tables import make_testbed

    frame = make_testbed(n_configs=6, methods=("simclr",)).rename(columns={"val_accuracy": "v", "trial": "id"})
    other = frame.assign(id=frame["id"] + 50, dataset="b")
    pd.concat([frame.assign(dataset="a"), other]).to_csv(tmp_path / "t.csv", index=False)
    table = bench.main(["--table", str(tmp_path / "t.csv"), "--val-column", "v", "--trial-column", "id",
                        "--task-column", "dataset", "--query", "", "--reps", "5", "--boot", "50"])
    out = capsys.readouterr().out
    assert "=== task a ===" in out and "=== task b ===" in out and "where" not in out.splitlines()[0]
    assert set(table["scope"]) == {"a/simclr", "b/simclr"} and (table["n"] <= 6).all()
    with pytest.raises(SystemExit, match="holds 80"):
        make_testbed(n_configs=3).assign(test_accuracy=80.0).to_csv(tmp_path / "pct.csv", index=False)
        bench.main(["--table", str(tmp_path / "pct.csv")])

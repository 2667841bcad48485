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


def test_table_mode_prints_correlations_policies_and_verdicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _table(tmp_path, n_configs=10, repeats=2, failed=(4,))
    csv = tmp_path / "policies.csv"
    table = bench.main(["--table", str(path), "--reps", "30", "--boot", "200", "--csv", str(csv)])
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert "where repeat == 0: 30 trials, 29 complete" in out  # the default query drops the seed repeats
    assert re.search(r"^rankme\s+\+1\.00 \[\+1\.00, \+1\.00\] n=10", out, re.M)  # exact: rho 1, tight interval
    assert "knn_accuracy" not in out and "config_id" not in out and "abs_alpha_minus_1" in out
    assert "p_vs_random = P(random-b regret <= policy regret)" in out
    verdicts = [line for line in lines if line.startswith("scope ") and ": best: " in line]
    assert [v.split()[1] for v in verdicts] == ["barlow_twins", "simclr", "vicreg", "pooled"]
    assert re.fullmatch(
        r"best label-free policy: \S+ \((barlow_twins|simclr|vicreg|pooled)\): P\(within 1 pt\) = \d\.\d\d with "
        r"\d+\.\d readouts \(budget ceil\(log2 N\)\+2 = \d+\), p vs random-b = \d\.\d{3}: target (MET|NOT MET)",
        lines[-1])
    assert lines[-2] in verdicts[-1:] and f"per-policy table: {csv}" in out
    written = pd.read_csv(csv)
    assert len(written) == len(table) and set(written["scope"]) == {"barlow_twins", "simclr", "vicreg", "pooled"}
    assert {"alpha_rankme+2", "rankme_topk+2", "calibrated_rank+2", *POLICIES} == set(written["policy"])
    per_method = table[table["scope"] == "simclr"].set_index("policy")
    assert per_method.loc["oracle", "readouts_max"] == 9  # trial 4 (simclr, repeat 0) failed
    assert per_method.loc["rankme_topk", "regret_mean_pts"] == 0.0


def test_table_mode_meets_the_target_when_rankme_is_accuracy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _table(tmp_path, n_configs=512, methods=("simclr",))
    bench.main(["--table", str(path), "--reps", "100", "--boot", "100"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("best label-free policy: rankme_topk (simclr): P(within 1 pt) = 1.00 with 9.0 readouts")
    assert last.endswith("target MET")


def test_table_mode_subsample_and_column_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from _selection_tables import make_testbed

    frame = make_testbed(n_configs=12, methods=("simclr",)).rename(columns={"val_accuracy": "v", "trial": "id"})
    frame.to_csv(tmp_path / "t.csv", index=False)
    table = bench.main(["--table", str(tmp_path / "t.csv"), "--val-column", "v", "--trial-column", "id",
                        "--query", "", "--subsample", "6", "--reps", "40", "--boot", "50"])
    out = capsys.readouterr().out
    assert "over 40 sweeps of 6 configs" in out and "where" not in out.splitlines()[0]
    assert (table["n"] == 6).all() and set(table["scope"]) == {"simclr"}
    assert table.set_index("policy").loc["rankme_topk", "readouts_max"] == 3  # ceil(log2 6)
    with pytest.raises(SystemExit, match="holds 80"):
        make_testbed(n_configs=3).assign(test_accuracy=80.0).to_csv(tmp_path / "pct.csv", index=False)
        bench.main(["--table", str(tmp_path / "pct.csv")])

"""The guided reader, its surrogate features, the readout-savings statistic and the task split.

Known answers by hand where the math allows (choice probabilities, interpolation, log scaling); exact random
reading checked against brute-force enumeration; the reader itself on sweeps whose accuracy is a known
function of the hyperparameters.
"""

from __future__ import annotations

import itertools
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sweep.config.schema import SelectionConfig
from sweep.selection import POLICIES, run_policies
from sweep.selection.guided import GuidedSettings, guided, loo_coverage, ridge_reader
from sweep.selection.policies import SelectionError
from sweep.selection.savings import (
    binomial_se_points,
    choice_probabilities,
    random_curves,
    readouts_to_reach,
    savings_statistics,
    top_ties,
)
from sweep.selection.surrogate import config_features, encode_scale, expected_improvement, make_surrogate
from sweep.selection.verdict import PolicyVerdict, verdict_line


# ----------------------------------------------------------------------------- features
def test_encode_scale_takes_logs_of_columns_spanning_a_decade() -> None:
    np.testing.assert_allclose(encode_scale(np.array([1e-4, 1e-3, 1e-2])), [-4.0, -3.0, -2.0])
    np.testing.assert_allclose(encode_scale(np.array([0.0, 1.0, 10.0])), np.log10([1.0, 2.0, 11.0]))  # + min pos
    np.testing.assert_allclose(encode_scale(np.array([2.0, 3.0, 4.0])), [2.0, 3.0, 4.0])  # < a decade: as is
    np.testing.assert_allclose(encode_scale(np.array([-1.0, 5.0, 50.0])), [-1.0, 5.0, 50.0])  # negative: as is


def test_features_standardise_log_parameters_one_hot_methods_and_metrics_within_method() -> None:
    trials = pd.DataFrame({
        "trial": [0, 1, 2, 3], "method": ["a", "a", "b", "b"], "lr": [1e-4, 1e-2, 1e-4, 1e-2],
        "temperature": [0.1, 1.0, np.nan, np.nan], "out_dim": [64, 64, 64, 64], "rankme": [10.0, 20.0, 100.0, 300.0],
    })
    f = config_features(trials, ["rankme"])
    assert f.names == ("lr", "temperature", "method=a", "method=b", "rankme")  # out_dim is constant: dropped
    np.testing.assert_allclose(f.values[:, 0], [-1, 1, -1, 1])  # log10 then z-score
    np.testing.assert_allclose(f.values[:, 1], [-1, 1, 0, 0])  # another method's parameter: 0, the mean
    np.testing.assert_allclose(f.values[:, 4], [-1, 1, -1, 1])  # RankMe compared within its method only
    with pytest.raises(ValueError, match="metric feature 'nope'"):
        config_features(trials, ["nope"])


def test_expected_improvement_known_values() -> None:
    ei = expected_improvement(np.array([1.0, 0.0, 2.0]), np.array([1.0, 0.0, 0.0]), 1.0)
    np.testing.assert_allclose(ei, [1.0 / math.sqrt(2 * math.pi), 0.0, 1.0])


@pytest.mark.parametrize("name", ["gp", "ard", "bayes_ridge"])
def test_surrogates_fit_a_linear_trend_and_give_intervals(name: str) -> None:
    x = np.linspace(-2, 2, 12)[:, None]
    y = 80.0 + 5.0 * x[:, 0]
    pred = make_surrogate(name, 1).fit(x, y).predict(np.array([[0.0], [1.0]]))
    np.testing.assert_allclose(pred.mean, [80.0, 85.0], atol=0.5)
    low, high = pred.interval(0.8)
    assert np.all(low < pred.mean) and np.all(pred.mean < high) and pred.noise_var > 0


# ----------------------------------------------------------------------------- random reading, savings
def test_choice_probabilities_by_hand() -> None:
    p = choice_probabilities(3)
    np.testing.assert_allclose(p[0], [0, 0, 0])
    np.testing.assert_allclose(p[1], [1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_allclose(p[2], [2 / 3, 1 / 3, 0])  # best of 2 reads is the k-th best
    np.testing.assert_allclose(p[3], [1, 0, 0])
    np.testing.assert_allclose(choice_probabilities(9).sum(axis=1)[1:], 1.0)


def test_random_curves_match_brute_force_enumeration() -> None:
    rng = np.random.default_rng(3)
    ids = list(range(7))
    val = {t: float(v) for t, v in zip(ids, rng.uniform(0.6, 0.9, 7), strict=True)}
    test = {t: val[t] + float(rng.normal(0, 0.01)) for t in ids}
    curves = random_curves(ids, val, test, tol=1.0)
    best = max(ids, key=lambda t: (val[t], -t))
    for b in range(1, 8):
        subsets = list(itertools.combinations(ids, b))
        chosen = [max(s, key=lambda t: (val[t], -t)) for s in subsets]
        regrets = [100 * (test[best] - test[c]) for c in chosen]
        assert curves.p_within[b] == pytest.approx(np.mean([r <= 1.0 + 1e-9 for r in regrets]))
        assert curves.regret[b] == pytest.approx(np.mean(regrets))


def test_readouts_to_reach_interpolates() -> None:
    curve = np.array([0.0, 0.2, 0.4, 1.0])
    assert readouts_to_reach(curve, 0.3) == pytest.approx(1.5)
    assert readouts_to_reach(curve, 0.0) == 0.0 and readouts_to_reach(curve, 1.0) == 3.0
    assert readouts_to_reach(np.array([5.0, 3.0, 1.0, 0.0]), 2.0, increasing=False) == pytest.approx(1.5)


def test_a_perfect_policy_can_pass_the_savings_target() -> None:
    """The floor check: a policy that reads one config and it is always the best must reach savings >= 3 with
    a lower bound above 1 on a 32-config sweep where only the best is within 1 point (p vs random could not)."""
    ids = list(range(32))
    val = {t: 0.5 + 0.01 * t for t in ids}  # 1 point apart: the oracle and its neighbour (exactly 1 point
    test = dict(val)  # below) are within tolerance, the other 30 are not
    curve = random_curves(ids, val, test, tol=1.0)
    reps = 50
    by_p, by_regret = savings_statistics(np.ones(reps), np.zeros(reps), np.ones(reps),
                                         np.tile(curve.p_within, (reps, 1)), np.tile(curve.regret, (reps, 1)))
    assert by_p.value >= 3 and by_p.low > 1 and by_regret.value >= 3
    assert readouts_to_reach(curve.p_within, 1.0) == pytest.approx(31)  # random needs 31 of 32 reads to be sure


def test_binomial_error_and_ties() -> None:
    assert binomial_se_points(0.9, 900) == pytest.approx(1.0)
    ties = top_ties([0, 1, 2], {0: 0.9, 1: 0.9, 2: 0.8}, {0: 0.9, 1: 0.88, 2: 0.8}, val_se_pts=1.0, n_reps=200)
    assert ties.tied == 2 and ties.test_spread_pts == pytest.approx(2.0) and ties.near == 2
    assert 0.2 < ties.p_tie_decides < 0.6  # both drawn in a bootstrap sweep: P = (1 - (2/3)^3)^2-ish


def test_verdict_line_format() -> None:
    line = verdict_line(PolicyVerdict("guided", False, "simclr", 1.234, 0.9, 2.1, 0.71, 6.25, 8.0))
    assert line == "best policy: guided savings 1.23 [0.90, 2.10] P(within 1 pt) 0.71 at 6.2 readouts: target NOT MET"


# ----------------------------------------------------------------------------- the guided reader
def _smooth_sweep(n: int = 40, seed: int = 0, metric_signal: bool = False) -> tuple[pd.DataFrame, dict[int, float]]:
    """Accuracy rises with log lr to a peak at 3e-3 and is flat in weight decay; RankMe is noise unless
    ``metric_signal`` (then it equals accuracy)."""
    rng = np.random.default_rng(seed)
    lr = 10 ** rng.uniform(-4, -2, n)
    acc = 0.85 - 0.04 * (np.log10(lr) - np.log10(3e-3)) ** 2
    rankme = acc * 100 if metric_signal else rng.uniform(10, 100, n)
    trials = pd.DataFrame({"trial": np.arange(n), "method": "simclr", "state": "COMPLETE", "lr": lr,
                           "weight_decay": 10 ** rng.uniform(-6, -2, n), "rankme": rankme})
    return trials, {int(t): float(a) for t, a in zip(trials["trial"], acc, strict=True)}


def test_guided_finds_the_peak_stops_with_the_guarantee_and_predicts_the_rest() -> None:
    trials, acc = _smooth_sweep()
    res = guided(trials, acc.__getitem__, GuidedSettings(metrics=False))
    best = max(acc.values())
    assert 100 * (best - acc[res.chosen_trial]) <= 1.0
    assert res.readouts_used < len(trials) / 2 and "stopped after" in res.detail and "< delta 0.1" in res.detail
    pred = res.predictions
    assert pred is not None and len(pred) == len(trials) and pred["read"].sum() == res.readouts_used
    unread = pred[~pred["read"]]
    truth = unread["trial"].map(acc)
    assert ((truth >= unread["low"] - 0.01) & (truth <= unread["high"] + 0.01)).mean() > 0.8
    assert guided(trials, acc.__getitem__, GuidedSettings(metrics=False), order=list(range(39, -1, -1))).read_trials \
        == res.read_trials  # nothing depends on the visiting order


def test_guided_reads_the_label_free_best_first_and_stops_at_its_budget() -> None:
    trials, acc = _smooth_sweep(metric_signal=True)
    res = guided(trials, acc.__getitem__, GuidedSettings(budget=3, delta=1e-9))
    assert res.read_trials[0] == max(acc, key=lambda t: (acc[t], -t))  # highest RankMe = best config
    assert res.readouts_used == 3 and "budget" in res.detail


def test_guided_settings_are_checked_and_failed_trials_never_read() -> None:
    trials, acc = _smooth_sweep(12)
    for bad, field in [({"delta": 1.5}, "delta"), ({"tol": -1.0}, "tol"), ({"n_init": 0}, "n_init"),
                       ({"surrogate": "svm"}, "surrogate")]:
        with pytest.raises(ValueError, match=field):
            guided(trials, acc.__getitem__, GuidedSettings(**bad))  # type: ignore[arg-type]
    failed = trials.assign(state=["FAIL"] * 3 + ["COMPLETE"] * 9)
    res = guided(failed, acc.__getitem__, GuidedSettings(metrics=False))
    assert not set(res.read_trials) & {0, 1, 2}
    empty = guided(trials.assign(state="FAIL"), acc.__getitem__)
    assert empty.chosen_trial is None and "no usable trial" in empty.note
    assert isinstance(SelectionError("x"), ValueError)


def test_ridge_reader_reads_its_first_configs_in_visiting_order() -> None:
    trials, acc = _smooth_sweep(32)
    order = list(range(31, -1, -1))
    res = ridge_reader(trials, acc.__getitem__, order)
    assert res.read_trials[:3] == (31, 30, 29) and res.readouts_used == 7  # ceil(log2 32) + 2


def test_guided_and_ridge_are_registered_and_take_the_selection_config() -> None:
    assert {"guided", "ridge_reader"} <= set(POLICIES)
    trials, acc = _smooth_sweep(16)
    results = {r.policy: r for r in run_policies(trials, acc.__getitem__, settings=SelectionConfig(guided_budget=2))}
    assert results["guided"].readouts_used == 2 and results["guided"].predictions is not None


def test_loo_coverage_counts_every_config() -> None:
    trials, acc = _smooth_sweep(16)
    covered, total = loo_coverage(trials, acc, GuidedSettings(metrics=False))
    assert total == 16 and covered >= 10


# ----------------------------------------------------------------------------- tasks
def test_select_table_with_a_task_column_selects_within_each_task(tmp_path: Path) -> None:
    a, acc_a = _smooth_sweep(12, seed=1)
    b, acc_b = _smooth_sweep(12, seed=2)
    b = b.assign(trial=b["trial"] + 100)
    frame = pd.concat([a.assign(dataset="easy", val_accuracy=a["trial"].map(acc_a) + 0.1),
                       b.assign(dataset="hard", val_accuracy=(b["trial"] - 100).map(acc_b) - 0.3)])
    frame = frame.assign(test_accuracy=frame["val_accuracy"])
    frame.to_csv(tmp_path / "t.csv", index=False)
    out = tmp_path / "report"
    run = subprocess.run([sys.executable, "-m", "sweep.cli", "select", "--table", str(tmp_path / "t.csv"),
                          "--task-column", "dataset", "--alpha-column", "none", "--out", str(out)],
                         capture_output=True, text=True,
                         timeout=600, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "SWEEP_PROGRESS": "0"})
    assert run.returncode == 0, run.stderr
    assert "task easy:" in run.stdout and "task hard:" in run.stdout and "--task-column dataset" in run.stdout
    assert "2 tasks (easy, hard)" in run.stdout
    for task, ids in (("easy", set(range(12))), ("hard", set(range(100, 112)))):
        policies = pd.read_csv(out / task / "tables" / "policies.csv")
        oracle = policies.set_index("policy").loc["oracle"]
        assert int(oracle["chosen_trial"]) in ids and oracle["readouts_used"] == 12  # never across tasks
        assert (out / task / "tables" / "predictions.csv").is_file()
    index = (out / "report.html").read_text()
    assert "Task easy" in index and "Task hard" in index and 'href="easy/report.html"' in index
    assert re.search(r"guided reader: predicted validation accuracy of the \d+ configs", run.stdout)

"""Evidence statistics with known answers: bootstrap Spearman, repetitions, random-b, p-values, verdicts."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from _selection_tables import make_testbed
from scipy import stats

from sweep.config.schema import SelectionConfig
from sweep.selection import evaluate as ev
from sweep.selection.policies import POLICIES, alpha_band, oracle
from sweep.selection.surrogate import label_free_metrics
from sweep.selection.table import metrics_frames


def _specs(*names: str) -> list[ev.PolicySpec]:
    return [s for s in ev.policy_specs() if s.name in names]


def _maps(readouts: pd.DataFrame) -> tuple[dict[int, float], dict[int, float]]:
    trial = readouts["trial"].astype(int)
    return dict(zip(trial, readouts["val_accuracy"])), dict(zip(trial, readouts["test_accuracy"]))


# ----------------------------------------------------------------------------- Spearman
def test_bootstrap_spearman_of_a_monotone_pair_is_one_with_a_tight_interval() -> None:
    x = np.arange(30.0)
    ci = ev.bootstrap_spearman(x, 0.5 + x**2 / 1e4, n_boot=1000, seed=0)
    assert (ci.rho, ci.low, ci.high, ci.n) == (pytest.approx(1.0), pytest.approx(1.0), pytest.approx(1.0), 30)


def test_bootstrap_spearman_matches_scipy_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=40), rng.normal(size=40)
    y[3] = np.nan  # dropped pairwise
    a, b = ev.bootstrap_spearman(x, y, 500, seed=4), ev.bootstrap_spearman(x, y, 500, seed=4)
    assert a == b and a.n == 39
    assert a.rho == pytest.approx(stats.spearmanr(np.delete(x, 3), np.delete(y, 3)).statistic)
    assert a.low < 0.0 < a.high  # independent: the interval covers 0
    assert math.isnan(ev.bootstrap_spearman([1, 2], [1, 2]).rho)
    assert math.isnan(ev.bootstrap_spearman([1, 1, 1, 1], [1, 2, 3, 4]).rho)


def test_spearman_table_per_method_and_pooled() -> None:
    trials, readouts = metrics_frames(make_testbed(n_configs=6, methods=("simclr", "vicreg"), failed=(1,)))
    frame = trials.merge(readouts, on="trial")
    table = ev.spearman_table(frame, ["rankme", "abs_alpha_minus_1"], n_boot=200).set_index(["metric", "scope"])
    assert list(table.index.get_level_values("scope")[:3]) == ["simclr", "vicreg", "pooled"]
    assert table.loc[("rankme", "simclr"), "n"] == 5 and table.loc[("rankme", "pooled"), "n"] == 11
    assert table.loc[("rankme", "pooled"), ["spearman", "ci_low", "ci_high"]].tolist() == pytest.approx([1, 1, 1])


def test_label_free_metrics_exclude_readouts_ids_hyperparameters_and_cost() -> None:
    trials, _ = metrics_frames(make_testbed(n_configs=3))
    found = label_free_metrics(trials.assign(my_metric=1.0, params_lr=0.1, monitor_rows=100))
    assert found[:3] == ["rankme", "rankme_normalized", "rankme_backbone"]
    assert {"alpha", "alpha_r2", "stable_rank", "silhouette", "ami_checkpoint", "entropy", "loss", "my_metric"} <= set(found)
    for name in ("trial", "config_id", "seed", "repeat", "lr", "out_dim", "temperature", "knn_accuracy",
                 "fewshot_test_accuracy", "val_accuracy_e2", "epochs", "train_s", "params_lr", "monitor_rows"):
        assert name not in found


# ----------------------------------------------------------------------------- repetitions and random-b
def test_repetitions_are_seeded_orders_or_subsamples() -> None:
    reps = ev.repetitions([5, 3, 9, 1], 20, seed=1)
    assert reps == ev.repetitions([5, 3, 9, 1], 20, seed=1)
    assert all(sorted(r.sweep) == [1, 3, 5, 9] and sorted(r.random_order) == [1, 3, 5, 9] for r in reps)
    assert len({r.sweep for r in reps}) > 1
    sub = ev.repetitions(range(10), 50, seed=2, subsample=4)
    assert all(len(set(r.sweep)) == 4 and set(r.random_order) == set(r.sweep) for r in sub)
    assert len(ev.repetitions(range(3), 2, subsample=10)[0].sweep) == 3  # capped at the ids there are
    with pytest.raises(ValueError, match="subsample"):
        ev.repetitions(range(3), 2, subsample=0)


def test_prefix_regrets_by_hand() -> None:
    val = {1: 0.60, 2: 0.90, 3: float("nan"), 4: 0.70}
    test = {1: 0.61, 2: 0.80, 3: 0.99, 4: 0.86}
    # oracle: best val = trial 2, test 0.80. Reading 3 (NaN), 4, 2, 1:
    regrets = ev.prefix_regrets([3, 4, 2, 1], val, test, 0.80)
    assert regrets[0] == math.inf and regrets[1] == math.inf  # nothing finite read yet
    assert regrets[2:] == pytest.approx([100 * (0.80 - 0.86), 0.0, 0.0])


def test_p_vs_random_counts_ties_against_the_policy() -> None:
    assert ev.p_vs_random([0.0, 0.0, 2.0, math.inf], [0.0, 1.0, 3.0, math.inf]) == pytest.approx(0.5)
    assert ev.p_vs_random([1.0], [0.5]) == 1.0 and math.isnan(ev.p_vs_random([], []))


def test_summary_by_hand() -> None:
    raw = pd.DataFrame({
        "rep": range(4), "policy": "p", "label_free": True, "n": 16, "budget": 6, "readouts": [6, 6, 7, 3],
        "chosen": [1, 2, 3, None], "regret_pts": [0.0, 0.5, 0.2, math.inf],
        "random_regret_pts": [1.0, 0.5, 2.0, 0.0], "note": ["", "", "", "p read nothing"],
    })
    row = ev.summarise_policies(raw).iloc[0]
    assert row["p_within_1pt"] == pytest.approx(0.75) and row["p_success"] == pytest.approx(0.5)  # rep 2: 7 > 6
    assert row["regret_mean_pts"] == pytest.approx(0.7 / 3) and row["p_no_choice"] == pytest.approx(0.25)
    assert row["p_vs_random"] == pytest.approx(0.5) and row["random_p_within_1pt"] == pytest.approx(0.75)
    assert not row["target_met"] and row["note"] == "p read nothing (a note in 1 of 4 repetitions)"


# ----------------------------------------------------------------------------- known answers on whole tables
def test_rankme_equal_to_accuracy_regret_zero_and_beats_random_b() -> None:
    # one method, N = 512: rankme_topk reads the top 9 by RankMe, which include the best config; b = 9
    # random readouts contain it with probability 9/512 ~ 0.02, so p is small
    trials, readouts = metrics_frames(make_testbed(n_configs=512, methods=("simclr",)))
    table = ev.evaluate_scopes(trials, readouts, _specs("rankme_topk", "rankme_topk+2", "oracle"), n_reps=300)
    rows = table.set_index("policy")
    top = rows.loc["rankme_topk"]
    assert top["readouts_max"] == 9 and top["regret_mean_pts"] == 0.0 and top["p_within_1pt"] == 1.0
    assert top["p_vs_random"] < 0.05 and top["target_met"]
    assert rows.loc["rankme_topk+2", "readouts_max"] == 11 == rows.loc["rankme_topk+2", "budget"]
    assert not rows.loc["oracle", "target_met"] and rows.loc["oracle", "p_vs_random"] == 1.0
    assert ev.best_policy(table)["policy"] == "rankme_topk"


def test_rankme_independent_of_accuracy_does_not_beat_random_b() -> None:
    trials, readouts = metrics_frames(make_testbed(n_configs=128, methods=("simclr",), exact=False, seed=3))
    table = ev.evaluate_scopes(trials, readouts, _specs("rankme_topk", "oracle"), n_reps=300, seed=1,
                               subsample=32)
    top = table.set_index("policy").loc["rankme_topk"]
    assert top["readouts_max"] == 5 and top["p_vs_random"] > 0.3 and not top["target_met"]


def test_every_policy_runs_per_method_and_pooled_with_orders_only_for_the_window() -> None:
    trials, readouts = metrics_frames(make_testbed(n_configs=12, methods=("simclr", "vicreg"), failed=(0,)))
    table = ev.evaluate_scopes(trials, readouts, ev.policy_specs(SelectionConfig(batch_size=4, top_k=2)), n_reps=40)
    assert set(table["scope"]) == {"simclr", "vicreg", "pooled"}
    assert set(POLICIES) | {"rankme_topk+2", "alpha_rankme+2", "calibrated_rank+2", "guided-metrics"} == set(
        table["policy"])
    rows = table.set_index(["scope", "policy"])
    assert rows.loc[("simclr", "oracle"), "readouts_max"] == 11 and rows.loc[("pooled", "oracle"), "n"] == 23
    assert rows.loc[("pooled", "alpha_rankme+2"), "readouts_max"] == ev.sweep_budget(23) == 7
    val, test = _maps(readouts)
    raw = ev.evaluate_policies(trials, val, test, ev.policy_specs(), ev.repetitions(trials["trial"], 30, seed=5))
    by_policy = raw.groupby("policy")["readouts"].nunique()
    assert by_policy.drop("adaptive_alpha_window").eq(1).all()  # deterministic: one result for every order


def test_random_b_reads_the_policys_own_count_in_the_same_repetition() -> None:
    trials, readouts = metrics_frames(make_testbed(n_configs=20, methods=("simclr",), exact=False, seed=2))
    val, test = _maps(readouts)
    reps = ev.repetitions(trials["trial"], 10, seed=0)
    raw = ev.evaluate_policies(trials, val, test, _specs("alpha_band"), reps)
    best = ev.oracle_choice(sorted(val), val)
    for rep, (_, row) in zip(reps, raw.iterrows(), strict=True):
        expected = ev.prefix_regrets(list(rep.random_order), val, test, test[best])[row["readouts"]]
        assert row["random_regret_pts"] == pytest.approx(expected)


# ----------------------------------------------------------------------------- notes and verdicts
def test_band_and_generic_notes_say_why_nothing_was_chosen() -> None:
    frame = pd.DataFrame({"trial": range(16), "alpha": np.linspace(1.40, 2.03, 16), "state": "COMPLETE"})
    res = alpha_band(frame, lambda t: 0.5)
    assert res.chosen_trial is None
    assert res.note == "alpha_band [0.8, 1.2] read nothing: all 16 usable alphas lie in [1.40, 2.03]"
    assert alpha_band(frame, lambda t: 0.5, band=(1.5, 1.6)).note == ""  # it chose something
    assert oracle(frame, lambda t: math.nan).note == "oracle read 16 config(s), none with a finite readout"
    nothing = alpha_band(frame.assign(state="FAIL"), lambda t: 0.5).note
    assert nothing == "alpha_band [0.8, 1.2] read nothing: no usable trial has a finite alpha"


def test_best_policy_and_verdict_line_format() -> None:
    table = pd.DataFrame({
        "scope": ["a", "a", "a", "a"], "policy": ["oracle", "x", "y", "z"], "label_free": [False, True, True, True],
        "n": 64, "budget": 8, "readouts_mean": [64.0, 6.1, 5.0, 8.0], "p_success": [0.0, 0.93, 0.93, 0.95],
        "p_within_1pt": [1.0, 0.93, 0.93, 0.95], "p_vs_random": [1.0, 0.012, 0.02, 0.2],
        "target_met": [False, True, True, False],
    })
    best = ev.best_policy(table)
    assert best["policy"] == "y"  # both meet the target with the same P: fewer readouts wins
    line = ev.verdict_line(ev.best_policy(table[table["policy"] != "y"]))
    assert line == ("best label-free policy: x (a): P(within 1 pt) = 0.93 with 6.1 readouts "
                    "(budget ceil(log2 N)+2 = 8), p vs random-b = 0.012: target MET")
    assert re.fullmatch(r".*: target NOT MET", ev.verdict_line(table.iloc[3]))

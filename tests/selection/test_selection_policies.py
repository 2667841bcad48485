"""Selection policies on hand-built trial sets with answers worked out by hand (no training)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sweep.selection.policies import (
    POLICIES,
    CountingReadout,
    SelectionError,
    adaptive_alpha_window,
    alpha_band,
    alpha_rankme,
    calibrated_rank,
    combined_order,
    oracle,
    proportional_split,
    rankme_budget,
    rankme_topk,
    run_policies,
    usable_trials,
)


def table(alphas, accs, rankme=None, method=None, state=None) -> tuple[pd.DataFrame, dict[int, float]]:
    n = len(alphas)
    frame = pd.DataFrame({"trial": range(n), "alpha": alphas})
    frame["rankme"] = rankme if rankme is not None else np.arange(n, dtype=float)
    frame["method"] = method if method is not None else ["simclr"] * n
    frame["state"] = state if state is not None else ["COMPLETE"] * n
    return frame, dict(enumerate(accs))


def test_adaptive_window_narrows_and_misses_by_hand() -> None:
    # batch 1 (0,1,2): window open, all read; top-2 = {1: a=1.0, 2: a=2.0}; 2.0 is the max seen -> [1.0, inf)
    # batch 2 (3,4,5): 0.7 skipped; 1.5 and 3.0 read; top-2 = {1: a=1.0, 4: a=1.5};
    #   seen alphas span [0.5, 3.0], so both sides close -> [1.0, 1.5]
    # batch 3 (6,7,8): 1.2 read; 0.9 (the true best, 0.95) and 2.5 skipped.
    alphas = [0.5, 1.0, 2.0, 0.7, 1.5, 3.0, 1.2, 0.9, 2.5]
    accs = [0.60, 0.80, 0.70, 0.50, 0.75, 0.65, 0.85, 0.95, 0.40]
    frame, acc = table(alphas, accs)
    result = adaptive_alpha_window(frame, acc.__getitem__, batch_size=3, top_k=2)
    assert result.read_trials == (0, 1, 2, 4, 5, 6)
    assert result.readouts_used == 6
    assert result.chosen_trial == 6
    assert result.chosen_accuracy == pytest.approx(0.85)
    assert oracle(frame, acc.__getitem__).chosen_trial == 7


def test_adaptive_window_lower_side_stays_open_at_the_extreme() -> None:
    # batch 1: best two have the two smallest alphas (0.3 is the min seen) -> window (-inf, 0.6]
    # batch 2: 0.1 read (below everything), 0.9 skipped
    frame, acc = table([0.3, 0.6, 1.5, 0.1, 0.9], [0.9, 0.8, 0.1, 0.95, 0.99])
    result = adaptive_alpha_window(frame, acc.__getitem__, batch_size=3, top_k=2)
    assert result.read_trials == (0, 1, 2, 3)
    assert result.chosen_trial == 3


def test_adaptive_window_follows_the_visiting_order() -> None:
    frame, acc = table(
        [0.5, 1.0, 2.0, 0.7, 1.5, 3.0, 1.2, 0.9, 2.5], [0.60, 0.80, 0.70, 0.50, 0.75, 0.65, 0.85, 0.95, 0.40]
    )
    # visiting the true best first: it is read in batch 1 and can never be beaten
    result = adaptive_alpha_window(
        frame, acc.__getitem__, order=[7, 0, 1, 2, 3, 4, 5, 6, 8], batch_size=3, top_k=2
    )
    assert result.chosen_trial == 7
    assert result.read_trials[:3] == (7, 0, 1)


def test_adaptive_window_skips_failed_and_nan_alpha() -> None:
    frame, acc = table([1.0, float("nan"), 1.1], [0.5, 0.99, 0.6], state=["COMPLETE", "COMPLETE", "FAIL"])
    result = adaptive_alpha_window(frame, acc.__getitem__, batch_size=10, top_k=5)
    assert result.read_trials == (0,)
    assert result.chosen_trial == 0


def test_alpha_band_reads_inside_inclusive_and_picks_best() -> None:
    frame, acc = table([0.79, 0.8, 1.0, 1.2, 1.21, 1.1], [0.99, 0.5, 0.7, 0.6, 0.98, 0.7])
    result = alpha_band(frame, acc.__getitem__, band=(0.8, 1.2))
    assert result.read_trials == (1, 2, 3, 5)
    assert result.chosen_trial == 2  # 0.7 tie with trial 5 -> smaller id
    assert result.readouts_used == 4


def test_alpha_band_empty_chooses_nothing() -> None:
    frame, acc = table([0.1, 3.0], [0.5, 0.6])
    result = alpha_band(frame, acc.__getitem__)
    assert result.chosen_trial is None and result.readouts_used == 0 and math.isnan(result.chosen_accuracy)


@pytest.mark.parametrize("n,k", [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (16, 4), (17, 5), (64, 6), (256, 8)])
def test_rankme_budget_is_ceil_log2(n: int, k: int) -> None:
    assert rankme_budget(n) == k


def test_rankme_topk_per_method() -> None:
    # simclr: 5 runs -> ceil(log2 5) = 3 by RankMe: trials 2, 4, 0 (3 and 0 tie at 30 -> smaller id 0 first)
    # byol: 3 runs -> 2: trials 6, 5
    rankme = [30.0, 10.0, 50.0, 30.0, 40.0, 90.0, 95.0, 5.0]
    method = ["simclr"] * 5 + ["byol"] * 3
    accs = [0.70, 0.99, 0.60, 0.71, 0.65, 0.80, 0.72, 0.98]
    frame, acc = table([1.0] * 8, accs, rankme=rankme, method=method)
    result = rankme_topk(frame, acc.__getitem__)
    assert set(result.read_trials) == {0, 2, 4, 5, 6}
    assert result.readouts_used == 5
    assert result.chosen_trial == 5


def test_rankme_topk_pooled_without_method_column() -> None:
    frame, acc = table([1.0] * 4, [0.1, 0.2, 0.3, 0.4], rankme=[4.0, 3.0, 2.0, 1.0])
    result = rankme_topk(frame.drop(columns="method"), acc.__getitem__)
    assert result.read_trials == (0, 1)
    assert result.chosen_trial == 1


def test_oracle_never_chooses_failed_or_nan_readout() -> None:
    frame, acc = table([1.0, 1.0, 1.0], [0.5, 0.9, float("nan")], state=["COMPLETE", "FAIL", "COMPLETE"])
    result = oracle(frame, acc.__getitem__)
    assert result.read_trials == (0, 2)
    assert result.readouts_used == 2
    assert result.chosen_trial == 0


def test_counting_readout_counts_distinct_trials_once() -> None:
    calls: list[int] = []
    counter = CountingReadout(lambda t: calls.append(t) or float(t))
    for t in (3, 1, 3, 3, 1):
        counter(t)
    assert calls == [3, 1] and counter.read_trials == (3, 1)
    assert counter.result("x").chosen_trial == 3


def test_errors_name_the_field() -> None:
    frame, acc = table([1.0], [0.5])
    with pytest.raises(SelectionError, match="batch_size"):
        adaptive_alpha_window(frame, acc.__getitem__, batch_size=0)
    with pytest.raises(SelectionError, match="band"):
        alpha_band(frame, acc.__getitem__, band=(1.2, 0.8))
    with pytest.raises(SelectionError, match="rankme"):
        usable_trials(frame.drop(columns="rankme"), ["rankme"])
    with pytest.raises(SelectionError, match="order"):
        adaptive_alpha_window(frame, acc.__getitem__, order=[0, 5])


# ----------------------------------------------------------------------------- adaptive window vs the authors
def authors_adaptive_window(
    alphas: np.ndarray, accs: np.ndarray, order: list[int], batch: int = 10
) -> list[int]:
    """The selection loop of Agrawal et al.'s simulate_model_selection (kumarkrishna/fastssl), rewritten
    from its description: bounds start at [0, 1e4]; after each batch the top batch//2 of everything read
    define the bounds, a side moving only when the top models' extreme is not the extreme of all reads."""
    lo, hi = 0.0, 1e4
    read: list[int] = []
    for start in range(0, len(order), batch):
        read += [t for t in order[start : start + batch] if lo <= alphas[t] <= hi]
        top = sorted(read, key=lambda t: accs[t])[-(batch // 2) :]
        by_alpha = sorted(read, key=lambda t: alphas[t])
        flags = [t in top for t in by_alpha]
        first, last = flags.index(True), len(flags) - 1 - flags[::-1].index(True)
        if first != 0:
            lo = alphas[by_alpha[first]]
        if last != len(flags) - 1:
            hi = alphas[by_alpha[last]]
    return read


@pytest.mark.parametrize("n", [37, 60])
def test_adaptive_window_matches_the_authors_loop_on_random_sweeps(n: int) -> None:
    rng = np.random.default_rng(n)
    for _ in range(60):
        alphas = np.exp(rng.uniform(np.log(0.4), np.log(3.0), n))
        accs = 0.8 - 0.1 * np.log(alphas) ** 2 + rng.normal(0, 0.02, n)  # a peak, so the window narrows
        order = [int(t) for t in rng.permutation(n)]
        frame, acc = table(list(alphas), list(accs))
        ours = adaptive_alpha_window(frame, acc.__getitem__, order=order, batch_size=10, top_k=5)
        expected = authors_adaptive_window(alphas, accs, order)
        assert list(ours.read_trials) == expected
        assert ours.chosen_trial == max(expected, key=lambda t: accs[t])


def test_adaptive_window_top_alpha_equal_to_read_minimum_keeps_that_side() -> None:
    # batch 1 reads all; top-1 is trial 1 (alpha 1.0) which ties the smallest read alpha -> lower side
    # stays open, upper closes at 1.0; batch 2: 0.5 read (open below), 1.4 skipped
    frame, acc = table([1.0, 1.0, 2.0, 0.5, 1.4], [0.5, 0.9, 0.8, 0.6, 0.99])
    result = adaptive_alpha_window(frame, acc.__getitem__, batch_size=3, top_k=1)
    assert result.read_trials == (0, 1, 2, 3)
    assert result.chosen_trial == 1


def test_adaptive_window_stays_open_while_every_readout_is_nan() -> None:
    frame, acc = table([1.0, 3.0, 0.2, 5.0], [float("nan"), float("nan"), 0.4, 0.3])
    result = adaptive_alpha_window(frame, acc.__getitem__, batch_size=2, top_k=1)
    assert result.read_trials == (0, 1, 2, 3)  # no finite readout after batch 1 -> still open
    assert result.chosen_trial == 2


# ----------------------------------------------------------------------------- alpha + RankMe combined
# one method, 8 configs: RankMe ranks 1..8 for trials 0..7; |alpha - 1| = .6 .1 .05 .5 .03 1 .2 2
# -> ranks 6 3 2 5 1 7 4 8; sums 7 5 5 9 6 13 11 16; order 1 (5, RankMe 70), 2 (5, RankMe 60), 4, 0, 3, ...
ONE_ALPHA = [0.4, 0.9, 1.05, 1.5, 0.97, 2.0, 1.2, 3.0]
ONE_RANKME = [80.0, 70.0, 60.0, 50.0, 40.0, 30.0, 20.0, 10.0]
ONE_ACC = [0.60, 0.78, 0.80, 0.70, 0.79, 0.50, 0.75, 0.40]


def test_combined_order_sums_the_two_ranks_by_hand() -> None:
    frame, _ = table(ONE_ALPHA, ONE_ACC, rankme=ONE_RANKME)
    assert combined_order(frame) == [1, 2, 4, 0, 3, 6, 5, 7]


def test_combined_order_ties_share_the_mean_rank() -> None:
    # RankMe ranks 1.5, 1.5, 3; |alpha-1| ranks 3, 1, 2 -> sums 4.5, 2.5, 5
    frame, _ = table([1.3, 1.0, 0.8], [0.0] * 3, rankme=[9.0, 9.0, 1.0])
    assert combined_order(frame) == [1, 0, 2]


def test_alpha_rankme_reads_ceil_log2_n_best_combined() -> None:
    frame, acc = table(ONE_ALPHA, ONE_ACC, rankme=ONE_RANKME)
    result = alpha_rankme(frame, acc.__getitem__)
    assert result.read_trials == (1, 2, 4)  # ceil(log2 8) = 3
    assert result.chosen_trial == 2 and result.chosen_accuracy == pytest.approx(0.80)
    assert rankme_topk(frame, acc.__getitem__).read_trials == (0, 1, 2)  # RankMe alone: the flat trial 0


# two methods of 4: "a" order 0, 1, 2, 3 and "b" order 4, 5, 6, 7 (RankMe falls, alpha = 1 throughout)
TWO_METHOD = ["a"] * 4 + ["b"] * 4
TWO_RANKME = [40.0, 30.0, 20.0, 10.0, 4.0, 3.0, 2.0, 1.0]
TWO_ACC = [0.70, 0.72, 0.60, 0.99, 0.80, 0.85, 0.75, 0.50]


def test_alpha_rankme_adaptive_spends_the_rest_on_the_better_method() -> None:
    frame, acc = table([1.0] * 8, TWO_ACC, rankme=TWO_RANKME, method=TWO_METHOD)
    # budget ceil(log2 8) = 3: top of a (0.70), top of b (0.80), then b is better -> trial 5 (0.85)
    result = alpha_rankme(frame, acc.__getitem__)
    assert result.read_trials == (0, 4, 5) and result.chosen_trial == 5
    # budget 5: after 5 (0.85) b still leads -> 6 (0.75); b's best stays 0.85 -> 7
    assert alpha_rankme(frame, acc.__getitem__, budget=5).read_trials == (0, 4, 5, 6, 7)


def test_alpha_rankme_proportional_split() -> None:
    frame, acc = table([1.0] * 8, TWO_ACC, rankme=TWO_RANKME, method=TWO_METHOD)
    # 3 * 4/8 = 1.5 each -> 1 + 1, the equal remainder goes to the first (same size) method "a"
    result = alpha_rankme(frame, acc.__getitem__, allocation="proportional")
    assert result.read_trials == (0, 1, 4) and result.chosen_trial == 4


def test_alpha_rankme_nan_readout_never_leads_and_budget_caps_at_n() -> None:
    accs = [float("nan"), 0.72, 0.60, 0.99, 0.80, 0.85, 0.75, 0.50]
    frame, acc = table([1.0] * 8, accs, rankme=TWO_RANKME, method=TWO_METHOD)
    assert alpha_rankme(frame, acc.__getitem__).read_trials == (0, 4, 5)  # a's NaN counts as -inf
    everything = alpha_rankme(frame, acc.__getitem__, budget=100)
    assert everything.readouts_used == 8 and everything.chosen_trial == 3


def test_alpha_rankme_skips_failed_and_pools_without_method() -> None:
    state = ["COMPLETE"] * 7 + ["FAIL"]
    frame, acc = table(ONE_ALPHA, ONE_ACC, rankme=ONE_RANKME, state=state)
    frame.loc[1, "rankme"] = float("nan")  # trial 1 unusable too: 6 usable -> budget 3
    result = alpha_rankme(frame.drop(columns="method"), acc.__getitem__)
    assert 1 not in result.read_trials and 7 not in result.read_trials
    assert result.read_trials == (2, 4, 0)  # re-ranked without 1 and 7: sums 2+2, 4+1, 1+5


@pytest.mark.parametrize(
    "sizes,budget,shares",
    [
        ([32, 30], 6, [3, 3]),  # 3.10 + 2.90: floors 3 + 2, the larger remainder (.90) gets the last
        ([4, 4], 3, [2, 1]),  # 1.5 + 1.5: equal remainders -> the earlier group
        ([5, 0], 3, [3, 0]),
        ([1, 1], 5, [1, 1]),  # budget capped at the 2 configs there are
        ([2, 6], 3, [1, 2]),  # 0.75 + 2.25
    ],
)
def test_proportional_split_by_hand(sizes: list[int], budget: int, shares: list[int]) -> None:
    assert proportional_split(sizes, budget) == shares


def test_alpha_rankme_errors_name_the_field() -> None:
    frame, acc = table([1.0], [0.5])
    with pytest.raises(SelectionError, match="allocation"):
        alpha_rankme(frame, acc.__getitem__, allocation="greedy")
    with pytest.raises(SelectionError, match="budget"):
        alpha_rankme(frame, acc.__getitem__, budget=0)


def test_run_policies_includes_every_named_policy() -> None:
    frame, acc = table(ONE_ALPHA, ONE_ACC, rankme=ONE_RANKME)
    label_free = tuple(n for n, p in POLICIES.items() if p.label_free)
    assert tuple(r.policy for r in run_policies(frame, acc.__getitem__)) == (*label_free, "oracle")  # references last
    no_rankme = run_policies(frame.drop(columns="rankme"), acc.__getitem__)
    assert [r.policy for r in no_rankme] == ["adaptive_alpha_window", "alpha_band", "calibrated_rank", "guided",
                                             "ridge_reader", "oracle"]


def test_a_registered_policy_runs_everywhere_policies_run() -> None:
    """docs/ARCHITECTURE.md "add a policy": one function plus ``@register_policy``; run_policies (sweep select,
    the report) and the evaluation's specs pick it up, and it is skipped on a table without its columns."""
    from sweep.selection import CountingReadout, register_policy
    from sweep.selection.evaluate import policy_specs

    @register_policy("lowest_rankme", needs=("rankme",))
    def lowest_rankme(trials, readout, order, settings):  # type: ignore[no-untyped-def]
        counter = CountingReadout(readout)
        good = usable_trials(trials, ["rankme"])
        if not good.empty:
            counter(int(good.sort_values(["rankme", "trial"])["trial"].iloc[0]))
        return counter.result("lowest_rankme")

    try:
        frame, acc = table(ONE_ALPHA, ONE_ACC, rankme=ONE_RANKME)
        results = {r.policy: r for r in run_policies(frame, acc.__getitem__)}
        assert results["lowest_rankme"].readouts_used == 1
        assert "lowest_rankme" in {s.name for s in policy_specs()}
        assert "lowest_rankme" not in {r.policy for r in run_policies(frame.drop(columns="rankme"), acc.__getitem__)}
        with pytest.raises(ValueError, match="registered twice"):
            register_policy("lowest_rankme")(lambda t, r, o, s: lowest_rankme(t, r, o, s))
    finally:
        POLICIES.unregister("lowest_rankme")
    assert "lowest_rankme" not in POLICIES


# ----------------------------------------------------------------------------- calibrated ranking
def _calibration_table() -> tuple[pd.DataFrame, dict[int, float]]:
    """16 configs of one method: accuracy falls with alpha (the opposite of alpha-ReQ's rule for alpha > 1),
    RankMe is unrelated to it."""
    alpha = [1.2 + 0.1 * i for i in range(16)]
    rankme = [5.0, 9.0, 1.0, 14.0, 3.0, 11.0, 7.0, 16.0, 2.0, 13.0, 6.0, 10.0, 4.0, 15.0, 8.0, 12.0]
    frame = pd.DataFrame({"trial": range(16), "state": "COMPLETE", "method": "m", "alpha": alpha,
                          "rankme": rankme})
    acc = {t: 0.9 - 0.01 * t for t in range(16)}
    return frame, acc


def test_calibrated_rank_learns_the_signal_and_its_direction() -> None:
    frame, acc = _calibration_table()
    order = [15, 9, 4, 0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 13, 14]  # calibration reads 15, 9, 4 (k = 3)
    result = calibrated_rank(frame, acc.__getitem__, order=order, budget=5)
    assert result.read_trials[:3] == (15, 9, 4)
    assert result.read_trials[3:] == (0, 1)  # smallest alpha first: alpha was learned with a negative sign
    assert result.chosen_trial == 0 and result.readouts_used == 5


def test_calibrated_rank_falls_back_to_rankme_when_nothing_correlates() -> None:
    frame, _ = _calibration_table()
    flat = {t: 0.5 for t in range(16)}  # constant readouts: no rank correlation is defined
    result = calibrated_rank(frame, flat.__getitem__, order=list(range(16)), budget=5)
    assert result.read_trials == (0, 1, 2, 7, 13)  # then the two highest RankMe (16, 15) not yet read


def test_calibrated_rank_reads_each_method_within_its_own_budget() -> None:
    frame, acc = _calibration_table()
    other = frame.assign(trial=frame["trial"] + 100, method="z")
    both = pd.concat([frame, other], ignore_index=True)
    values = {**acc, **{t + 100: v for t, v in acc.items()}}
    result = calibrated_rank(both, values.__getitem__)
    assert result.readouts_used == 2 * 4  # ceil(log2 16) = 4 per method, 3 of them to calibrate
    assert result.chosen_trial == 0


def test_calibrated_rank_names_missing_signals() -> None:
    frame = pd.DataFrame({"trial": [0, 1], "loss": [1.0, 2.0]})
    with pytest.raises(SelectionError, match="calibrated_rank needs one of the signal columns"):
        calibrated_rank(frame, lambda t: 0.5)


def test_calibration_spearman_matches_scipy_with_ties() -> None:
    from scipy import stats

    from sweep.selection.policies import _spearman

    rng = np.random.default_rng(0)
    for _ in range(100):
        x, y = rng.integers(0, 4, 6).astype(float), rng.integers(0, 3, 6).astype(float)
        expected = stats.spearmanr(x, y)[0]
        got = _spearman(x, y)
        assert (np.isnan(got) and np.isnan(expected)) or abs(got - expected) < 1e-12
    assert np.isnan(_spearman(np.array([1.0, 2.0]), np.array([1.0, 2.0])))  # fewer than 3 pairs

"""Selection policies on hand-built trial sets with answers worked out by hand (no training)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sweep.selection.policies import (
    CountingReadout,
    SelectionError,
    adaptive_alpha_window,
    alpha_band,
    oracle,
    rankme_budget,
    rankme_topk,
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

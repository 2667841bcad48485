"""The guided reader: spend readouts where a model of validation accuracy says they can still change the answer.

Why: on short training budgets no label-free rule ranks configs well enough to read only its top few, yet the
hyperparameters of the configs already read explain much of the accuracy of the others (the learning rate
decides it on the 8-epoch testbed). A reader that learns from each readout, uses the label-free metrics only
as features whose relevance it learns, and stops when the model says no unread config is likely to be better,
reads few configs where the sweep is easy and more where it is not, and says which.

``guided`` (registered policy), per sweep (all methods in one model, the method as a feature):
1. read the config that the label-free ranking puts first (``first``: highest RankMe, compared as a z-score
   within each method; ``-name`` for lowest first; ``none`` or a missing column: the smallest trial id, the
   sweep's first config), so where the metric is right the best config costs one readout. Nothing depends on
   the visiting order: the same sweep gives the same reads;
2. until ``n_init`` finite readouts exist, read the unread config farthest (Euclidean, standardised features)
   from every config read so far: a space-filling start;
3. fit the surrogate (:mod:`sweep.selection.surrogate`) to the readouts; with b the best readout so far, stop
   when P(some unread config's noise-free readout exceeds b's by more than ``tol`` points) < ``delta``
   (joint posterior draws), or when ``budget`` configs were read; else read the unread config with the largest
   expected improvement over the best posterior mean among the read ones, and repeat;
4. choose the best VALIDATION readout (ties: smaller trial id), like every policy; the result carries the
   stopping statement (``detail``) and the final model's prediction, with an ``level`` interval for a new
   readout, of every config (``predictions``).

``ridge_reader`` (registered baseline, no label-free metric at all): read the first ``n_init`` configs in
visiting order, fit a ridge regression (scikit-learn, alpha 1) of validation accuracy on the standardised
hyperparameter features, read the predicted best unread config, refit, until ceil(log2 N) + 2 readouts;
choose by validation.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from sweep.config.schema import SelectionConfig
from sweep.selection.policies import (
    CountingReadout,
    Readout,
    SelectionError,
    SelectionResult,
    _no_usable_note,
    _visiting_order,
    rankme_budget,
    register_policy,
    usable_trials,
)
from sweep.selection.surrogate import (
    SURROGATES,
    Features,
    Prediction,
    config_features,
    expected_improvement,
    label_free_metrics,
    make_surrogate,
    prob_beaten,
)

PREDICTION_COLUMNS = ["trial", "method", "read", "observed", "predicted", "low", "high"]


@dataclass(frozen=True)
class GuidedSettings:
    """The guided reader's knobs; defaults are the pre-registered ones (benchmarks/guided_preregistration.md)."""

    surrogate: str = "gp"
    metrics: bool = True  # the label-free metrics are features too (relevance learnt by the model)
    tol: float = 1.0  # points: an unread config must beat the best read one by more than this to matter
    delta: float = 0.1  # stop when P(such a config exists) falls below this
    budget: Optional[int] = None  # most readouts; None: 2 (ceil(log2 N) + 2)
    first: str = "rankme"  # label-free column read first (highest; "-name": lowest; "none": smallest trial id)
    n_init: int = 3  # finite readouts before the first fit
    level: float = 0.8  # central probability of the prediction intervals

    def check(self) -> None:
        """Raise SelectionError naming the field and its allowed values."""
        SURROGATES.get(self.surrogate)
        if not self.tol >= 0:
            raise SelectionError(f"guided tol must be >= 0 points, got {self.tol!r}")
        if not 0 < self.delta < 1:
            raise SelectionError(f"guided delta must lie in (0, 1), got {self.delta!r}")
        if self.budget is not None and int(self.budget) < 1:
            raise SelectionError(f"guided budget must be an integer >= 1 or None, got {self.budget!r}")
        if int(self.n_init) < 1:
            raise SelectionError(f"guided n_init must be an integer >= 1, got {self.n_init!r}")
        if not 0 < self.level < 1:
            raise SelectionError(f"guided level must lie in (0, 1), got {self.level!r}")


def default_budget(n: int) -> int:
    """2 (ceil(log2 N) + 2): a cap the stopping rule normally ends well before."""
    return 2 * (rankme_budget(n) + 2)


# ----------------------------------------------------------------------------- reading steps
def first_read(good: pd.DataFrame, first: str, method_column: Optional[str]) -> int:
    """The config the label-free ranking puts first (see the module docstring)."""
    name = first.lstrip("-")
    if first.strip().lower() == "none" or name not in good.columns:
        return int(good["trial"].min())
    values = pd.to_numeric(good[name], errors="coerce").to_numpy(float)
    sign = -1.0 if first.startswith("-") else 1.0
    scores = sign * _z_within(values, good[method_column] if method_column in good.columns else None)
    scores = np.where(np.isfinite(scores), scores, -np.inf)
    ids = good["trial"].to_numpy(dtype=np.int64)
    return int(ids[np.lexsort((ids, -scores))][0])


def _z_within(values: np.ndarray, method: Optional[pd.Series]) -> np.ndarray:
    """z-scores within each method (the raw values when a method has one config or no spread)."""
    if method is None:
        groups = [np.ones(len(values), dtype=bool)]
    else:
        labels = method.astype(str).to_numpy()
        groups = [labels == level for level in np.unique(labels)]
    out = values.astype(float).copy()
    for mask in groups:
        finite = values[mask][np.isfinite(values[mask])]
        if len(finite) > 1 and finite.std() > 0:
            out[mask] = (values[mask] - finite.mean()) / finite.std()
    return out


def farthest(features: Features, read: Sequence[int], unread: Sequence[int]) -> int:
    """The unread config whose distance to the nearest read one is largest (ties: smaller trial id)."""
    a, b = features.rows(unread), features.rows(read)
    gaps = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)).min(axis=1)
    ids = np.asarray(unread, dtype=np.int64)
    return int(ids[np.lexsort((ids, -gaps))][0])


def _argmax(values: np.ndarray, ids: Sequence[int]) -> int:
    """The id with the largest value (ties: smaller id)."""
    ids_ = np.asarray(ids, dtype=np.int64)
    return int(ids_[np.lexsort((ids_, -values))][0])


def _fit(features: Features, settings: GuidedSettings, counter: CountingReadout) -> tuple[object, list[int]]:
    """The surrogate fitted to every finite readout so far (accuracy in points)."""
    read = [t for t in counter.read_trials if math.isfinite(counter(t))]
    y = np.array([100.0 * counter(t) for t in read])
    model = make_surrogate(settings.surrogate, features.values.shape[1]).fit(features.rows(read), y)
    return model, read


# ----------------------------------------------------------------------------- the policy
@dataclass
class _Step:
    """The state the loop reports at its end."""

    reason: str = ""
    p_beaten: float = math.nan
    prediction: Optional[Prediction] = None
    predicted_ids: tuple[int, ...] = ()


def guided(
    trials: pd.DataFrame,
    readout: Readout,
    settings: GuidedSettings = GuidedSettings(),
    order: Optional[Sequence[int]] = None,
    metric_columns: Optional[Sequence[str]] = None,
    method_column: Optional[str] = "method",
    policy: str = "guided",
) -> SelectionResult:
    """Run the guided reader (module docstring) on one sweep; ``metric_columns`` default: every label-free
    metric column of the table (used only when ``settings.metrics``). ``order`` is accepted for the policy
    interface and checked, but the reads do not depend on it."""
    settings.check()
    _visiting_order(trials, order)  # a bad order is still an error
    with threadpool_limits(1):  # matrices of a few dozen rows: more BLAS threads only fight other jobs
        return _guided_run(trials, readout, settings, metric_columns, method_column, policy)


def _guided_run(trials: pd.DataFrame, readout: Readout, settings: GuidedSettings,
            metric_columns: Optional[Sequence[str]], method_column: Optional[str], policy: str) -> SelectionResult:
    """:func:`guided` under a one-thread BLAS limit."""
    metrics = list(metric_columns if metric_columns is not None else label_free_metrics(trials)) \
        if settings.metrics else []
    good = usable_trials(trials, metrics)
    counter = CountingReadout(readout)
    if good.empty:
        return counter.result(policy, _no_usable_note(policy, metrics))
    features = config_features(good, metrics, method_column)
    budget = min(len(features.trials), int(settings.budget or default_budget(len(features.trials))))
    counter(first_read(good, settings.first, method_column))
    step = _read_until_stop(features, settings, counter, budget)
    result = counter.result(policy)
    frame = _predictions(good, features, counter, step, settings.level, method_column)
    return dataclasses.replace(result, detail=_detail(step, counter, settings), predictions=frame)


def _read_until_stop(features: Features, settings: GuidedSettings, counter: CountingReadout,
                     budget: int) -> _Step:
    """Steps 2-3 of the module docstring; returns why it stopped and the last model's prediction."""
    while True:
        read = set(counter.read_trials)
        unread = [t for t in features.trials if t not in read]
        finite = [t for t in counter.read_trials if math.isfinite(counter(t))]
        if len(finite) < settings.n_init:
            if not unread or len(read) >= budget:
                return _Step("budget" if unread else "all read")
            counter(farthest(features, counter.read_trials, unread))
            continue
        step = _assess(features, settings, counter, unread)
        if not unread:
            return dataclasses.replace(step, reason="all read")
        if step.p_beaten < settings.delta:
            return dataclasses.replace(step, reason="guarantee")
        if len(read) >= budget:
            return dataclasses.replace(step, reason="budget")
        pred = step.prediction
        assert pred is not None
        n = len(unread)
        incumbent = float(pred.mean[n:].max())
        ei = expected_improvement(pred.mean[:n], pred.std[:n], incumbent)
        counter(_argmax(ei, unread))


def _assess(features: Features, settings: GuidedSettings, counter: CountingReadout,
            unread: Sequence[int]) -> _Step:
    """Fit, predict unread + read configs jointly, and the probability that the best read one is beaten."""
    model, read = _fit(features, settings, counter)
    best, _ = counter.best()
    ordered = [*unread, *read]
    pred = model.predict(features.rows(ordered))  # type: ignore[attr-defined]
    p = prob_beaten(pred, ordered.index(int(best)), settings.tol) if unread else 0.0
    return _Step(p_beaten=p, prediction=pred, predicted_ids=tuple(ordered))


def _detail(step: _Step, counter: CountingReadout, settings: GuidedSettings) -> str:
    """One sentence on how the reader stopped."""
    n = len(counter.read_trials)
    chance = (f"P(an unread config beats the best read one by > {settings.tol:g} pt) = {step.p_beaten:.2f}"
              if math.isfinite(step.p_beaten) else "no model fitted")
    if step.reason == "guarantee":
        return f"stopped after {n} readouts: {chance} < delta {settings.delta:g}"
    if step.reason == "budget":
        return f"stopped at its budget of {n} readouts without the guarantee: {chance} (delta {settings.delta:g})"
    return f"read all {n} configs"


def _predictions(good: pd.DataFrame, features: Features, counter: CountingReadout, step: _Step, level: float,
                 method_column: Optional[str]) -> pd.DataFrame:
    """One row per config: read or not, its readout, the final model's predicted readout and interval
    (fractions); NaN predictions when no model was fitted."""
    methods = (dict(zip(good["trial"].astype(int), good[method_column].astype(str), strict=True))
               if method_column in good.columns else {})
    read = set(counter.read_trials)
    pred, ids = step.prediction, step.predicted_ids
    low = high = None
    if pred is not None:
        low, high = pred.interval(level)
    index = {t: i for i, t in enumerate(ids)}
    rows = []
    for trial in features.trials:
        i = index.get(trial)
        rows.append({"trial": trial, "method": methods.get(trial, ""), "read": trial in read,
                     "observed": counter(trial) if trial in read else math.nan,
                     "predicted": pred.mean[i] / 100.0 if pred is not None and i is not None else math.nan,
                     "low": low[i] / 100.0 if low is not None and i is not None else math.nan,
                     "high": high[i] / 100.0 if high is not None and i is not None else math.nan})
    return pd.DataFrame(rows, columns=PREDICTION_COLUMNS)


# ----------------------------------------------------------------------------- the ridge baseline
def ridge_reader(
    trials: pd.DataFrame,
    readout: Readout,
    order: Optional[Sequence[int]] = None,
    budget: Optional[int] = None,
    n_init: int = 3,
    method_column: Optional[str] = "method",
    policy: str = "ridge_reader",
) -> SelectionResult:
    """The plain sequential ridge reader of the module docstring (no label-free metric)."""
    from sklearn.linear_model import Ridge

    good = usable_trials(trials)
    counter = CountingReadout(readout)
    if good.empty:
        return counter.result(policy, _no_usable_note(policy, []))
    features = config_features(good, (), method_column)
    ids = set(features.trials)
    visit = [t for t in _visiting_order(trials, order) if t in ids]
    total = min(len(ids), int(budget or rankme_budget(len(ids)) + 2))
    for trial in visit[: min(n_init, total)]:
        counter(trial)
    while len(counter.read_trials) < total:
        finite = [t for t in counter.read_trials if math.isfinite(counter(t))]
        read = set(counter.read_trials)
        unread = [t for t in visit if t not in read]
        if len(finite) < 2:
            counter(unread[0])
            continue
        x_read, x_unread = features.rows(finite), features.rows(unread)
        if not x_read.shape[1]:  # no hyperparameter varies: nothing to learn, read on in visiting order
            counter(unread[0])
            continue
        model = Ridge(alpha=1.0).fit(x_read, [100.0 * counter(t) for t in finite])
        counter(_argmax(model.predict(x_unread), unread))
    return counter.result(policy)


# ----------------------------------------------------------------------------- registration
def guided_settings(s: SelectionConfig, metrics: Optional[bool] = None) -> GuidedSettings:
    """The guided reader's settings from a SelectionConfig (``metrics`` overrides the switch)."""
    return GuidedSettings(surrogate=s.guided_surrogate,
                          metrics=s.guided_metrics if metrics is None else metrics,
                          tol=s.guided_tol, delta=s.guided_delta, budget=s.guided_budget, first=s.guided_first,
                          n_init=s.guided_init, level=s.prediction_level)


@register_policy("guided")
def _guided(trials: pd.DataFrame, readout: Readout, order: Optional[Sequence[int]],
            s: SelectionConfig) -> SelectionResult:
    return guided(trials, readout, guided_settings(s), order)


@register_policy("ridge_reader", order_dependent=True)
def _ridge_reader(trials: pd.DataFrame, readout: Readout, order: Optional[Sequence[int]],
                  s: SelectionConfig) -> SelectionResult:
    return ridge_reader(trials, readout, order)


# ----------------------------------------------------------------------------- calibration
def loo_coverage(trials: pd.DataFrame, values: dict[int, float], settings: GuidedSettings = GuidedSettings(),
                 method_column: Optional[str] = "method") -> tuple[int, int]:
    """(covered, total): leave each config with a finite readout out in turn, fit the guided reader's
    surrogate to all the others (same features), and count how often its ``settings.level`` interval for a
    new readout holds the left-out readout. The sweep's own configs, every readout but one: the question
    "are the intervals honest" asked where the model has the most data."""
    metrics = label_free_metrics(trials) if settings.metrics else []
    good = usable_trials(trials, metrics)
    features = config_features(good, metrics, method_column)
    known = [t for t in features.trials if math.isfinite(values.get(t, math.nan))]
    covered = 0
    with threadpool_limits(1):
        for left in known:
            covered += _covered(features, values, known, left, settings)
    return covered, len(known)


def _covered(features: Features, values: dict[int, float], known: Sequence[int], left: int,
             settings: GuidedSettings) -> int:
    """1 when the interval fitted without ``left`` holds its readout."""
    rest = [t for t in known if t != left]
    y = np.array([100.0 * values[t] for t in rest])
    model = make_surrogate(settings.surrogate, features.values.shape[1]).fit(features.rows(rest), y)
    low, high = model.predict(features.rows([left])).interval(settings.level)
    return int(low[0] <= 100.0 * values[left] <= high[0])

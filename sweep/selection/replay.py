"""Replay Optuna pruners on stored per-epoch curves: what pruning would have saved and what it costs in selection.

Pruning is label-free (the pruner sees only the objective's per-epoch values), so its effect can be measured
offline on a finished testbed: for a random visiting order of the trials, an in-memory study with the pruner under
test asks a trial, reports the objective at every stored epoch (step = epoch) exactly as the train job does
(``TrialReporter.report_metrics``: a NaN value is not reported), stops when ``should_prune()`` says so and tells
PRUNED, else tells COMPLETE with the last epoch's value (FAIL when that value is not finite or the trial failed).

Costs and quality:
- trial-epochs: a pruned trial ran up to and including the epoch at which it was pruned; without pruning every
  trial runs to its last stored epoch (a failed trial's curve stops early). ``saved = 1 - run / without``;
- selection: the label-free rules (``argmax`` of the objective, and the package's ``rankme_topk`` /
  ``alpha_rankme`` policies reading out ``val_accuracy``) applied to the surviving (COMPLETE) trials only vs to all
  trials; regret (points) = 100 * (test accuracy of the oracle - test accuracy of the chosen trial), the oracle being
  the trial with the best validation accuracy among ALL trials of the group, reported on test.

Simplifications (both make pruning look at least as good as it would be in a sweep): trials run one after another
(a sweep with n_jobs > 1 prunes against fewer finished trials), and the visiting order is random rather than the
sampler's (TPE would propose configs near the good ones, which are harder to prune).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from sweep.errors import SweepError
from sweep.selection.policies import (
    CountingReadout,
    SelectionResult,
    alpha_rankme,
    oracle,
    rankme_topk,
    usable_trials,
)
from sweep.selection.evaluate import oracle_choice
from sweep.study.objectives import Objective

PrunerFactory = Callable[[], optuna.pruners.BasePruner]
SELECTION_RULES = ("argmax", "rankme_topk", "alpha_rankme", "oracle")  # oracle: reads every survivor
ALL_METHODS = "all"  # the group that pools every method (epochs summed, selection over the union of survivors)
WITHIN_POINTS = 1.0  # "within 1 point" of the oracle
COMPLETE, PRUNED, FAIL = TrialState.COMPLETE.name, TrialState.PRUNED.name, TrialState.FAIL.name


class ReplayError(SweepError, ValueError):
    """Curves, tables or orders the replay cannot use; the message names the column or the ids."""


@dataclass(frozen=True)
class Curve:
    """One trial's objective values at its stored epochs (ascending, 1-based; NaN where not computable)."""

    epochs: np.ndarray
    values: np.ndarray

    @property
    def last_epoch(self) -> int:
        return int(self.epochs[-1]) if len(self.epochs) else 0


Curves = Mapping[int, Curve]


@dataclass(frozen=True)
class ReplayResult:
    """One replay: the state each trial ended in and how many epochs it ran."""

    order: tuple[int, ...]
    direction: str
    states: Mapping[int, str]  # COMPLETE | PRUNED | FAIL
    epochs_run: Mapping[int, int]
    epochs_full: Mapping[int, int]
    values: Mapping[int, float]  # final objective value of the COMPLETE trials

    @property
    def completed(self) -> tuple[int, ...]:
        return tuple(t for t in self.order if self.states[t] == COMPLETE)

    @property
    def pruned(self) -> tuple[int, ...]:
        return tuple(t for t in self.order if self.states[t] == PRUNED)

    @property
    def trial_epochs_run(self) -> int:
        return int(sum(self.epochs_run.values()))

    @property
    def trial_epochs_full(self) -> int:
        return int(sum(self.epochs_full.values()))

    @property
    def ratio(self) -> float:
        """Trial-epochs run / trial-epochs without pruning (1.0 for an empty replay)."""
        full = self.trial_epochs_full
        return self.trial_epochs_run / full if full else 1.0

    @property
    def saved(self) -> float:
        return 1.0 - self.ratio

    def best_trial(self) -> Optional[int]:
        """Optuna's best trial: the best final value among the COMPLETE trials, ties to the smaller id."""
        if not self.values:
            return None
        sign = -1.0 if self.direction == "maximize" else 1.0
        return min(self.values, key=lambda t: (sign * self.values[t], t))


# ----------------------------------------------------------------------------- curves
def objective_curves(curves: pd.DataFrame, objective: Objective) -> dict[int, Curve]:
    """Per trial, the objective (|metric - target| with a target) at every stored epoch of ``curves``.

    ``curves`` has one row per (trial, epoch) with ``trial``, ``epoch`` (1-based) and the objective's metric.
    """
    missing = [c for c in ("trial", "epoch", objective.metric) if c not in curves.columns]
    if missing:
        raise ReplayError(f"curves lack column(s) {missing}; present: {sorted(curves.columns)}")
    frame = curves[["trial", "epoch", objective.metric]]
    if frame.duplicated(["trial", "epoch"]).any():
        dup = frame.loc[frame.duplicated(["trial", "epoch"]), ["trial", "epoch"]].head(3).values.tolist()
        raise ReplayError(f"curves: duplicate (trial, epoch) rows, e.g. {dup}; one row per trial and epoch")
    if (frame["epoch"] < 1).any():
        raise ReplayError(f"curves.epoch: must be 1-based (>= 1), got min {int(frame['epoch'].min())}")
    raw = pd.to_numeric(frame[objective.metric], errors="coerce").astype(float).to_numpy()
    values = objective.score(raw)
    frame = frame.assign(_value=values).sort_values(["trial", "epoch"], kind="stable")
    return {int(trial): Curve(group["epoch"].to_numpy(dtype=int), group["_value"].to_numpy(dtype=float))
            for trial, group in frame.groupby("trial", sort=True)}


def _check_order(order: Sequence[int], curves: Curves) -> tuple[int, ...]:
    out = tuple(int(t) for t in order)
    if len(set(out)) != len(out):
        raise ReplayError("order must not repeat a trial id")
    unknown = sorted(set(out) - set(curves))
    if unknown:
        raise ReplayError(f"order names trial ids {unknown[:5]} that have no curve")
    return out


# ----------------------------------------------------------------------------- the replay
def replay_pruner(curves: Union[pd.DataFrame, Curves], objective: Objective, pruner_factory: PrunerFactory,
                  order: Sequence[int], failed: Iterable[int] = ()) -> ReplayResult:
    """Run the trials of ``order`` one after another through a fresh in-memory study with the pruner.

    ``failed``: trials whose run failed (the table's state): they are told FAIL unless pruned first.
    """
    table = objective_curves(curves, objective) if isinstance(curves, pd.DataFrame) else curves
    visit = _check_order(order, table)
    failed_ids = {int(t) for t in failed}
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one INFO line per tell would drown the output
    try:
        study = optuna.create_study(direction=objective.direction, pruner=pruner_factory(),
                                    sampler=optuna.samplers.RandomSampler(seed=0))
        outcomes = [_run_trial(study, table[t], t in failed_ids) for t in visit]
    finally:
        optuna.logging.set_verbosity(previous)
    return ReplayResult(
        order=visit, direction=objective.direction,
        states={t: o[0] for t, o in zip(visit, outcomes)},
        epochs_run={t: o[1] for t, o in zip(visit, outcomes)},
        epochs_full={t: table[t].last_epoch for t in visit},
        values={t: o[2] for t, o in zip(visit, outcomes) if o[0] == COMPLETE},
    )


def _run_trial(study: optuna.Study, curve: Curve, failed: bool) -> tuple[str, int, float]:
    """(state, epochs run, final value) of one trial replayed against the study so far."""
    trial = study.ask()
    for epoch, value in zip(curve.epochs, curve.values):
        if not math.isfinite(value):
            continue  # the train job does not report a non-finite objective (nor ask the pruner)
        trial.report(float(value), int(epoch))
        if trial.should_prune():
            study.tell(trial, state=TrialState.PRUNED)
            return PRUNED, int(epoch), math.nan
    final = float(curve.values[-1]) if len(curve.values) else math.nan
    if failed or not math.isfinite(final):
        study.tell(trial, state=TrialState.FAIL)
        return FAIL, curve.last_epoch, math.nan
    study.tell(trial, final)
    return COMPLETE, curve.last_epoch, final


# ----------------------------------------------------------------------------- selection on a set of trials
@dataclass(frozen=True)
class SelectionColumns:
    """Which table columns the label-free rules and the regret read."""

    rankme: str = "rankme_normalized"
    alpha: str = "alpha"
    method: str = "method"
    val: str = "val_accuracy"
    test: str = "test_accuracy"


def objective_argmax(table: pd.DataFrame, objective: Objective, cols: SelectionColumns) -> SelectionResult:
    """The best final objective within each method (what Optuna's best trial is in a per-method study); with
    several methods, each method's best is read out on ``cols.val`` and the best readout is chosen."""
    good = usable_trials(table, [objective.metric])
    raw = good[objective.metric].astype(float)
    score = objective.score(raw)
    key = -score if objective.direction == "maximize" else score
    ranked = good.assign(_key=key).sort_values(["_key", "trial"], kind="stable")
    by_method = cols.method in ranked.columns
    best = ranked.groupby(cols.method, sort=True, dropna=False).head(1) if by_method else ranked.head(1)
    counter = CountingReadout(_readout(table, cols.val))
    for trial in best["trial"].astype(int):
        counter(trial)
    return counter.result("argmax")


def choose(table: pd.DataFrame, rule: str, objective: Objective, cols: SelectionColumns) -> SelectionResult:
    """Apply one label-free rule of SELECTION_RULES to the trials in ``table``."""
    readout = _readout(table, cols.val)
    if rule == "argmax":
        return objective_argmax(table, objective, cols)
    if rule == "rankme_topk":
        return rankme_topk(table, readout, rankme_column=cols.rankme, method_column=cols.method)
    if rule == "alpha_rankme":
        return alpha_rankme(table, readout, rankme_column=cols.rankme, alpha_column=cols.alpha,
                            method_column=cols.method)
    if rule == "oracle":  # label-based: did pruning throw away the configs worth choosing?
        return oracle(table, readout)
    raise ReplayError(f"selection rule {rule!r}: allowed values are {list(SELECTION_RULES)}")


def _readout(table: pd.DataFrame, column: str) -> Callable[[int], float]:
    values = dict(zip(table["trial"].astype(int), pd.to_numeric(table[column], errors="coerce").astype(float)))
    return lambda trial: values[int(trial)]


def oracle_test(table: pd.DataFrame, cols: SelectionColumns) -> float:
    """Test accuracy of the trial with the best validation accuracy among all usable trials (ties: smaller id)."""
    good = usable_trials(table, [cols.val, cols.test])
    val = dict(zip(good["trial"].astype(int), good[cols.val].astype(float), strict=True))
    chosen = oracle_choice(list(val), val)
    return math.nan if chosen is None else float(good.loc[good["trial"].astype(int) == chosen, cols.test].iloc[0])


def regret_points(table: pd.DataFrame, chosen: Optional[int], oracle: float, cols: SelectionColumns) -> float:
    """100 * (oracle test accuracy - chosen test accuracy); NaN when nothing was chosen."""
    if chosen is None:
        return math.nan
    test = table.loc[table["trial"].astype(int) == int(chosen), cols.test]
    return 100.0 * (oracle - float(test.iloc[0]))


# ----------------------------------------------------------------------------- the measurement
@dataclass(frozen=True)
class ReplaySetup:
    """Everything a measurement needs besides the data."""

    objective: Objective
    pruners: Mapping[str, PrunerFactory]
    n_orders: int = 100
    seed: int = 0
    rules: tuple[str, ...] = SELECTION_RULES
    cols: SelectionColumns = SelectionColumns()
    pooled: bool = False  # one study over every method instead of one per method


def check_inputs(table: pd.DataFrame, curves: pd.DataFrame, setup: ReplaySetup) -> None:
    """Fail early, naming the missing columns, rather than in the middle of a long replay."""
    cols, rules = setup.cols, setup.rules
    need = {"trial", "state", cols.method, cols.val, cols.test}
    if "argmax" in rules:
        need.add(setup.objective.metric)
    if any(r in ("rankme_topk", "alpha_rankme") for r in rules):
        need.add(cols.rankme)
    if "alpha_rankme" in rules:
        need.add(cols.alpha)
    missing = sorted(need - set(table.columns))
    if missing:
        raise ReplayError(f"table lacks column(s) {missing}; present: {sorted(table.columns)}")
    bad_rules = [r for r in rules if r not in SELECTION_RULES]
    if bad_rules:
        raise ReplayError(f"selection rules {bad_rules}: allowed values are {list(SELECTION_RULES)}")
    if setup.n_orders < 1:
        raise ReplayError(f"n_orders must be >= 1, got {setup.n_orders}")
    if table["trial"].duplicated().any():
        raise ReplayError("table: one row per trial expected; filter repeats first (e.g. repeat == 0)")
    objective_curves(curves.head(0), setup.objective)  # column check only


def method_groups(table: pd.DataFrame, curves: pd.DataFrame, cols: SelectionColumns
                  ) -> dict[str, tuple[pd.DataFrame, list[int]]]:
    """Per method: its table rows that have a curve, and their trial ids (sorted)."""
    have = set(pd.to_numeric(curves["trial"]).astype(int))
    rows = table[table["trial"].astype(int).isin(have)]
    return {str(method): (group, sorted(group["trial"].astype(int)))
            for method, group in rows.groupby(cols.method, sort=True)}


def orders_for(trials: Sequence[int], n_orders: int, seed: int, method_index: int) -> list[list[int]]:
    """Seeded random visiting orders, the same for every pruner (paired comparison)."""
    return [[int(t) for t in np.random.default_rng([seed, r, method_index]).permutation(trials)]
            for r in range(n_orders)]


def baseline_rows(frames: Mapping[str, pd.DataFrame], setup: ReplaySetup) -> dict[tuple[str, str], tuple[int, float]]:
    """(method or ALL_METHODS, rule) -> (readouts, regret in points) of the selection on ALL trials."""
    out = {}
    for name, frame in frames.items():
        oracle = oracle_test(frame, setup.cols)
        for rule in setup.rules:
            res = choose(frame, rule, setup.objective, setup.cols)
            out[(name, rule)] = (res.readouts_used, regret_points(frame, res.chosen_trial, oracle, setup.cols))
    return out


def _union(groups: Mapping[str, tuple[pd.DataFrame, list[int]]]) -> pd.DataFrame:
    return pd.concat([g for g, _ in groups.values()], ignore_index=True)


def replay_all(table: pd.DataFrame, curves: pd.DataFrame, setup: ReplaySetup,
               progress: Optional[Callable[[int], None]] = None) -> pd.DataFrame:
    """One row per (pruner, order, method or ALL_METHODS, rule): epochs run / without pruning, trials pruned,
    readouts and regret with pruning (survivors only) and without (all trials).

    Each method is replayed as its own study, or all methods in one study with ``setup.pooled`` (what a sweep
    with ``method`` in its search space does). ``progress(n)`` is called after each batch of n replays.
    """
    check_inputs(table, curves, setup)
    groups = method_groups(table, curves, setup.cols)
    if not groups:
        raise ReplayError("no trial of the table has a curve: check that the trial ids of --table and --curves match")
    failed = set(table.loc[table["state"].astype(str).str.upper() != COMPLETE, "trial"].astype(int))
    units = replay_units(groups, setup.pooled)
    unit_curves = {u: objective_curves(curves[curves["trial"].isin(ids)], setup.objective) for u, ids in units.items()}
    orders = {u: orders_for(ids, setup.n_orders, setup.seed, i) for i, (u, ids) in enumerate(units.items())}
    frames = {**{m: g for m, (g, _) in groups.items()}, ALL_METHODS: _union(groups)}
    oracles = {name: oracle_test(frame, setup.cols) for name, frame in frames.items()}
    baseline = baseline_rows(frames, setup)
    rows = []
    for pruner_name, factory in setup.pruners.items():
        for r in range(setup.n_orders):
            results = [replay_pruner(unit_curves[u], setup.objective, factory, orders[u][r], failed) for u in units]
            if progress is not None:
                progress(len(results))
            state = {t: res.states[t] for res in results for t in res.order}
            run = {t: res.epochs_run[t] for res in results for t in res.order}
            full = {t: res.epochs_full[t] for res in results for t in res.order}
            for name, frame in frames.items():
                ids = [int(t) for t in frame["trial"]]
                survivors = frame[[state[t] == COMPLETE for t in ids]]
                base = {"pruner": pruner_name, "order": r, "method": name, "trials": len(ids),
                        "pruned": sum(state[t] == PRUNED for t in ids), "epochs_run": sum(run[t] for t in ids),
                        "epochs_full": sum(full[t] for t in ids)}
                for rule in setup.rules:
                    res = choose(survivors, rule, setup.objective, setup.cols)
                    readouts0, regret0 = baseline[(name, rule)]
                    rows.append({**base, "rule": rule, "readouts": res.readouts_used,
                                 "regret_pts": regret_points(frame, res.chosen_trial, oracles[name], setup.cols),
                                 "readouts_unpruned": readouts0, "regret_unpruned_pts": regret0})
    return pd.DataFrame(rows)


def replay_units(groups: Mapping[str, tuple[pd.DataFrame, list[int]]], pooled: bool) -> dict[str, list[int]]:
    """The studies replayed: one per method, or one over every method (``pooled``)."""
    if pooled:
        return {"pooled": sorted(t for _, ids in groups.values() for t in ids)}
    return {m: ids for m, (_, ids) in groups.items()}


def summarise(raw: pd.DataFrame) -> pd.DataFrame:
    """Per (pruner, method, rule): share of trial-epochs saved, trials pruned, readouts, mean regret and
    P(within 1 point) with pruning and without (NaN regret - nothing chosen - counts as not within)."""
    raw = raw.assign(within=raw["regret_pts"] <= WITHIN_POINTS,
                     within_unpruned=raw["regret_unpruned_pts"] <= WITHIN_POINTS)
    out = (raw.groupby(["pruner", "method", "rule"], sort=False)
           .agg(trials=("trials", "first"), orders=("order", "nunique"), epochs_full=("epochs_full", "first"),
                epochs_run_mean=("epochs_run", "mean"), pruned_mean=("pruned", "mean"),
                readouts_mean=("readouts", "mean"), readouts_unpruned=("readouts_unpruned", "first"),
                regret_mean_pts=("regret_pts", "mean"), regret_unpruned_pts=("regret_unpruned_pts", "mean"),
                p_within_1pt=("within", "mean"), p_within_1pt_unpruned=("within_unpruned", "mean"))
           .reset_index())
    out.insert(5, "saved", 1.0 - out["epochs_run_mean"] / out["epochs_full"].where(out["epochs_full"] > 0))
    return out


# ----------------------------------------------------------------------------- the target
TARGET_SAVED = 0.40  # share of trial-epochs pruning must save ...
TARGET_REGRET_SLACK_PTS = 0.25  # ... at "equal quality": mean regret at most this many points above no pruning


def target_met(saved: float, regret: float, regret_unpruned: float) -> bool:
    """``saved >= 40%`` at equal quality: mean regret with pruning <= mean regret without + 0.25 points."""
    return bool(saved >= TARGET_SAVED and regret <= regret_unpruned + TARGET_REGRET_SLACK_PTS)


def verdict(summary: pd.DataFrame, pruner: str, rule: str = "alpha_rankme", method: str = ALL_METHODS) -> str:
    """The one-line answer for a pruner, judged on ``method`` (default: all methods summed) with ``rule``."""
    rows = summary[(summary["pruner"] == pruner) & (summary["method"] == method) & (summary["rule"] == rule)]
    if rows.empty:
        raise ReplayError(f"no summary row for pruner={pruner!r}, method={method!r}, rule={rule!r}")
    row = rows.iloc[0]
    met = target_met(float(row["saved"]), float(row["regret_mean_pts"]), float(row["regret_unpruned_pts"]))
    return (f"pruning ({pruner}): saves {row['saved']:.0%} of trial-epochs; {rule} selection regret "
            f"{row['regret_mean_pts']:.2f} pts vs {row['regret_unpruned_pts']:.2f} pts without pruning "
            f"(P(within 1 pt) {row['p_within_1pt']:.2f} vs {row['p_within_1pt_unpruned']:.2f}); target "
            f"(>= {TARGET_SAVED:.0%} saved at equal quality, regret no more than {TARGET_REGRET_SLACK_PTS} pts "
            f"worse): {'MET' if met else 'NOT MET'}")

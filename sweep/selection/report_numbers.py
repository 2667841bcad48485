"""The report's numbers: pure functions from trials and readouts to tables (no figure, no HTML).

Policies choose by the validation readout; everything reported (accuracy, regret) is on the test split,
so no number is measured on the split that chose it. Regret = oracle's test accuracy - chosen test
accuracy (it can be negative when the validation choice of the oracle is not the test-best config).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
from scipy import stats

from sweep.config.schema import SelectionConfig
from sweep.selection.evaluate import (
    evaluate_scopes,
    oracle_choice,
    policy_specs,
    prefix_choices,
    spearman_table,
)
from sweep.selection.policies import POLICIES, SelectionResult, run_policies, usable_trials
from sweep.selection.readout_jobs import TableReadout
from sweep.selection.savings import random_curves
from sweep.selection.surrogate import param_columns

METRIC_CANDIDATES = (
    "rankme",
    "rankme_normalized",
    "rankme_backbone",
    "alpha",
    "alpha_projector",
    "abs_alpha_minus_1",
    "alpha_r2",
    "stable_rank",
    "participation_ratio",
    "nesum",
    "lidar",
    "silhouette",
    "ami",
    "ami_checkpoint",
    "entropy",
    "loss",
)
POOLED = "pooled"
# sweep.selection.risk_jobs's COMPONENTS / TABLE_COLUMNS, restated so the report does not import torch
RISK_COMPONENTS = ("approximation", "usability", "probe_generalization", "encoder_generalization")
RISK_COLUMNS = ["trial", "method", *RISK_COMPONENTS, "total"]
METHOD_LABELS = {"simclr": "SimCLR", "barlow_twins": "Barlow Twins", "vicreg": "VICReg", "simsiam": "SimSiam",
                 "mocov2": "MoCo-v2", "moco_v2": "MoCo-v2", "byol": "BYOL"}
SMALL_N = 10  # a rank correlation over fewer configs is flagged: its interval spans most of [-1, 1]


# ----------------------------------------------------------------------------- tables
def merged_table(trials: pd.DataFrame, readouts: pd.DataFrame) -> pd.DataFrame:
    """Trials joined with their readouts (suffix-free readout columns), plus |alpha - 1|."""
    keep = [c for c in readouts.columns if c == "trial" or c not in trials.columns]
    merged = trials.merge(readouts[keep], on="trial", how="left")
    if "alpha" in merged.columns:
        merged["abs_alpha_minus_1"] = (pd.to_numeric(merged["alpha"], errors="coerce") - 1.0).abs()
    return merged.sort_values("trial", kind="stable").reset_index(drop=True)


def available_metrics(frame: pd.DataFrame) -> list[str]:
    """Candidate metric columns present with at least one finite value."""
    out = []
    for name in METRIC_CANDIDATES:
        if name in frame.columns and np.isfinite(pd.to_numeric(frame[name], errors="coerce")).any():
            out.append(name)
    return out


def _correlation_row(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    row = {
        "n": int(ok.sum()),
        "spearman": math.nan,
        "spearman_p": math.nan,
        "kendall": math.nan,
        "kendall_p": math.nan,
    }
    if len(x) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
        rho = stats.spearmanr(x, y)
        tau = stats.kendalltau(x, y)
        row.update(
            spearman=float(rho.statistic),
            spearman_p=float(rho.pvalue),
            kendall=float(tau.statistic),
            kendall_p=float(tau.pvalue),
        )
    return row


def metric_correlations(
    trials: pd.DataFrame, readouts: pd.DataFrame, accuracy: str = "test_accuracy"
) -> pd.DataFrame:
    """Spearman and Kendall of each available metric with probe accuracy, per method and pooled."""
    frame = usable_trials(merged_table(trials, readouts))
    groups: list[tuple[str, pd.DataFrame]] = []
    if "method" in frame.columns:
        groups += [(str(m), g) for m, g in frame.groupby("method", sort=True)]
    groups.append((POOLED, frame))
    rows = []
    y_all = {name: pd.to_numeric(g[accuracy], errors="coerce").to_numpy(float) for name, g in groups}
    for metric in available_metrics(frame):
        for name, group in groups:
            x = pd.to_numeric(group[metric], errors="coerce").to_numpy(float)
            rows.append({"metric": metric, "method": name, **_correlation_row(x, y_all[name])})
    return pd.DataFrame(
        rows, columns=["metric", "method", "n", "spearman", "spearman_p", "kendall", "kendall_p"]
    )


def _missing(value: Any) -> bool:
    """None, pandas' NA or a float NaN (e.g. a parameter that does not apply to the trial's method)."""
    if value is None or value is pd.NA:
        return True
    return isinstance(value, (float, np.floating)) and math.isnan(float(value))


def format_value(value: Any) -> str:
    """A number as a reader wants it: integers whole, other numbers to 3 significant digits."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return str(value)
    number = float(value)
    if number.is_integer() and abs(number) < 1e6:
        return str(int(number))
    return f"{number:.3g}"


def method_label(method: Any) -> str:
    """The method's name as papers write it (SimCLR, Barlow Twins); unknown names unchanged."""
    return METHOD_LABELS.get(str(method), str(method))


def describe_config(trials: pd.DataFrame, trial: Any) -> str:
    """'SimCLR, lr 0.00044, out_dim 32': the method and only the hyperparameters that apply to the trial (a
    NaN parameter belongs to another method), rounded to 3 significant digits; '' for no trial."""
    if _missing(trial) or "trial" not in trials.columns:
        return ""
    rows = trials.loc[trials["trial"] == int(trial)]
    if rows.empty:
        return ""
    row = rows.iloc[0]
    has_method = "method" in trials.columns and not _missing(row["method"])
    parts = [method_label(row["method"])] if has_method else []
    for column, label in param_columns(trials).items():
        if not _missing(row[column]):
            parts.append(f"{label} {format_value(row[column])}")
    return ", ".join(parts)


def random_orders(trial_ids: Sequence[int], n_orders: int, seed: int) -> list[list[int]]:
    """Seeded random visiting orders (permutations of the trial ids)."""
    rng = np.random.default_rng(seed)
    ids = np.asarray(sorted(int(t) for t in trial_ids))
    return [[int(t) for t in rng.permutation(ids)] for _ in range(n_orders)]


def _order_stats(
    trials: pd.DataFrame, readouts: pd.DataFrame, cfg: SelectionConfig, best: float,
    results: Sequence[SelectionResult] = (),
) -> pd.DataFrame:
    """Per policy, over cfg.n_orders random visiting orders: P(test acc >= best - tol), mean readouts. A policy
    whose reads cannot depend on the order (``Policy.order_dependent`` False) runs once, or not at all when
    ``results`` (any one order's) already holds it."""
    val = TableReadout(readouts, cfg.selection_column)
    test = TableReadout(readouts, cfg.report_column)
    rows = []
    once: dict[str, SelectionResult] = {r.policy: r for r in results}
    for order in random_orders(trials["trial"], cfg.n_orders, cfg.seed):
        for name, policy in POLICIES.items():
            if not policy.applies(trials.columns):
                continue
            if policy.order_dependent or name not in once:
                once[name] = policy.run(trials, val, order, cfg)
            res = once[name]
            acc = test(res.chosen_trial) if res.chosen_trial is not None else math.nan
            rows.append({"policy": res.policy, "within": bool(acc >= best - cfg.tolerance - 1e-12),
                         "readouts": res.readouts_used})
    frame = pd.DataFrame(rows, columns=["policy", "within", "readouts"])
    return frame.groupby("policy", sort=False).agg(
        p_within=("within", "mean"), mean_readouts=("readouts", "mean")
    )


def random_b_regrets(
    usable: Sequence[int], val: Mapping[int, float], test: Mapping[int, float], best: float
) -> np.ndarray:
    """Exact expected regret (a fraction) of reading b of the N usable configs drawn at random (without
    replacement) and choosing by validation, b = 1..N: the baseline a label-free policy must beat at its own
    readout count (:func:`sweep.selection.savings.random_curves`, whose regret is in points). Draws that read
    no finite validation readout choose nothing and are left out (so are chosen configs without a test
    readout); NaN when every draw chooses nothing."""
    curves = random_curves([int(t) for t in usable], val, test, oracle_test=best)
    return curves.regret[1:] / 100.0


def _random_b_at(curve: np.ndarray, readouts: int) -> float:
    """The random-b regret (points) at ``readouts`` reads; NaN for 0 reads or beyond the curve."""
    return 100.0 * float(curve[readouts - 1]) if 1 <= readouts <= len(curve) else math.nan


@dataclass(frozen=True)
class PolicyTable:
    """One selection's policy table (:func:`policy_table`) with the policies' predicted readouts (policy ->
    frame, the guided reader's), computed once: the pipeline prints it, the report lays it out and writes it."""

    table: pd.DataFrame
    predictions: dict[str, pd.DataFrame] = field(default_factory=dict)


def compute_policy_table(trials: pd.DataFrame, readouts: pd.DataFrame,
                         cfg: Optional[SelectionConfig] = None) -> PolicyTable:
    """:func:`policy_table` and the predictions it collects, as one value to hand down."""
    predictions: dict[str, pd.DataFrame] = {}
    return PolicyTable(policy_table(trials, readouts, cfg, predictions), predictions)


def policy_table(
    trials: pd.DataFrame, readouts: pd.DataFrame, cfg: Optional[SelectionConfig] = None,
    predictions_out: Optional[dict[str, pd.DataFrame]] = None,
) -> pd.DataFrame:
    """One row per policy (``predictions_out`` receives policy -> predicted readouts, for the guided reader):
    readouts used, chosen config (integer id, readable parameters), its accuracies,
    regret vs the oracle (``regret`` a fraction, ``regret_pts`` in points), the exact expected regret of as
    many random readouts, and the probability over random visiting orders of landing within
    ``cfg.tolerance`` of the oracle."""
    cfg = cfg or SelectionConfig()
    val = TableReadout(readouts, cfg.selection_column)
    test = TableReadout(readouts, cfg.report_column)
    results = run_policies(trials, val, None, cfg)
    oracle_trial = next(r for r in results if r.policy == "oracle").chosen_trial
    best = test(oracle_trial) if oracle_trial is not None else math.nan
    order_stats = _order_stats(trials, readouts, cfg, best, results)
    usable = [int(t) for t in usable_trials(trials)["trial"]]
    random_curve = random_b_regrets(usable, val.values, test.values, best)
    rows = []
    predictions: dict[str, pd.DataFrame] = {}
    for res in results:
        acc = test(res.chosen_trial) if res.chosen_trial is not None else math.nan
        rows.append(
            {
                "policy": res.policy,
                "readouts_used": res.readouts_used,
                "chosen_trial": res.chosen_trial,
                "chosen_params": describe_config(trials, res.chosen_trial),
                cfg.selection_column: res.chosen_accuracy,
                cfg.report_column: acc,
                "regret": best - acc,
                "regret_pts": 100.0 * (best - acc),
                "random_b_regret_pts": _random_b_at(random_curve, res.readouts_used),
                "p_within_tol": float(order_stats.loc[res.policy, "p_within"]),
                "mean_readouts_over_orders": float(order_stats.loc[res.policy, "mean_readouts"]),
                "note": res.note,
                "detail": res.detail,
            }
        )
        if res.predictions is not None:
            predictions[res.policy] = res.predictions
    table = pd.DataFrame(rows)
    if predictions_out is not None:
        predictions_out.update(predictions)
    table["chosen_trial"] = table["chosen_trial"].astype("Int64")  # ids print as 15, not 15.0000
    return table


def policy_notes(policies: pd.DataFrame) -> list[str]:
    """The notes of policies that read or chose nothing (why), in table order."""
    if "note" not in policies.columns:
        return []
    return [str(n) for n in policies["note"] if isinstance(n, str) and n]


def _number(row: Mapping[str, Any], column: str) -> float:
    """A row's numeric value (NaN when absent or blank): frames read back from CSV lack some columns."""
    value = row.get(column, math.nan)
    return math.nan if _missing(value) or value == "" else float(value)


def _regret_words(regret_pts: float, explain: bool = True) -> str:
    """'1.4 points below the oracle' / 'as good as the oracle' / '0.3 points above the oracle (why)'."""
    if round(regret_pts, 1) == 0:
        return "as good as the oracle"
    if regret_pts > 0:
        return f"{regret_pts:.1f} points below the oracle"
    why = " (it chose by validation; on test another config can win)" if explain else ""
    return f"{-regret_pts:.1f} points above the oracle{why}"


def policy_headline(row: Mapping[str, Any], n_configs: Optional[int] = None) -> str:
    """One sentence per policy: what it chose, after how many readouts, how far from the oracle in points,
    and what as many random readouts would give; or why it chose nothing. Works on a policies table read
    back from CSV (ids as floats, columns missing)."""
    name, count = str(row.get("policy", "?")), _number(row, "readouts_used")
    reads = int(count) if math.isfinite(count) else 0
    of = f" of {n_configs}" if n_configs else ""
    trial = _number(row, "chosen_trial")
    if math.isnan(trial):
        note = row.get("note")
        why = f"; note: {note}" if isinstance(note, str) and note else ""
        return f"{name} chose nothing after {reads}{of} readouts{why}"
    params = row.get("chosen_params")
    config = f" ({params})" if isinstance(params, str) and params else ""
    acc, regret = _number(row, "test_accuracy"), _number(row, "regret_pts")
    if math.isnan(regret):
        regret = 100.0 * _number(row, "regret")
    text = f"{name} chose trial {int(trial)}{config} after {reads}{of} readouts"
    if math.isfinite(acc):
        text += f": test accuracy {100 * acc:.1f}%"
    if name == "oracle":
        return text + " (the reference: reads every config, chooses by validation)"
    if math.isfinite(regret):
        text += f", {_regret_words(regret)}"
    random_b = _number(row, "random_b_regret_pts")
    if math.isfinite(random_b):
        text += f"; {reads} random readouts: {_regret_words(random_b, explain=False)} on average"
    detail = row.get("detail")
    if isinstance(detail, str) and detail:
        text += f" ({detail})"
    return text


def policy_headlines(policies: pd.DataFrame) -> list[str]:
    """:func:`policy_headline` of every row; N = the oracle's readouts (it reads every usable config)."""
    records = policies.to_dict("records")
    oracle = [r for r in records if r.get("policy") == "oracle"]
    n_configs = int(_number(oracle[0], "readouts_used")) if oracle and "readouts_used" in oracle[0] else None
    return [policy_headline(r, n_configs) for r in records]


REGRET_LINE = ("regret = the oracle's test accuracy - the chosen config's, in points (1 point = 1% "
               "accuracy); the oracle reads every config and chooses by validation accuracy")


def policy_summary(policies: pd.DataFrame) -> str:
    """The report's headline for stdout: one line per policy in words (what it chose, at what readout cost,
    how far from the oracle and from random readouts; why it chose nothing), then what regret means."""
    lines = [f"  {line}" for line in policy_headlines(policies)]
    return "\n".join(["What each policy chose:", *lines, REGRET_LINE])


def _budget_orders(frame: pd.DataFrame) -> dict[str, list[int]]:
    """Deterministic read orders for the budget curve: RankMe (round-robin over methods, best first)
    and |alpha - 1| (closest first); ties by trial id."""
    orders: dict[str, list[int]] = {}
    if "rankme" in frame.columns:
        by = frame["method"] if "method" in frame.columns else pd.Series(0, index=frame.index)
        rank = frame.assign(_r=-frame["rankme"].astype(float)).groupby(by)["_r"].rank(method="first")
        orders["rankme"] = [int(t) for t in frame.assign(_k=rank).sort_values(["_k", "trial"])["trial"]]
    if "abs_alpha_minus_1" in frame.columns:
        orders["abs_alpha_minus_1"] = [
            int(t) for t in frame.sort_values(["abs_alpha_minus_1", "trial"])["trial"]
        ]
    return orders


def _regret_at_budgets(
    order: Sequence[int], val: dict[int, float], test: dict[int, float], best: float
) -> np.ndarray:
    """Regret (a fraction) after reading the first b configs of ``order`` (chosen by validation),
    b = 1..len(order); NaN while nothing finite was read."""
    regrets = np.full(len(order), math.nan)
    for i, trial in enumerate(prefix_choices(order, val)):
        if trial is not None:
            regrets[i] = best - test.get(trial, math.nan)
    return regrets


def budget_curve(
    trials: pd.DataFrame, readouts: pd.DataFrame, cfg: Optional[SelectionConfig] = None
) -> pd.DataFrame:
    """Regret (a fraction) vs readout budget b: read the b best by RankMe or by |alpha-1| and choose by
    validation, or b at random (the exact expectation, :func:`random_b_regrets`)."""
    cfg = cfg or SelectionConfig()
    frame = usable_trials(merged_table(trials, readouts))
    val = TableReadout(readouts, cfg.selection_column).values
    test = TableReadout(readouts, cfg.report_column).values
    oracle_trial = oracle_choice(frame["trial"].astype(int), val)
    best = test.get(oracle_trial, math.nan) if oracle_trial is not None else math.nan
    curves = {name: _regret_at_budgets(o, val, test, best) for name, o in _budget_orders(frame).items()}
    curves["random"] = random_b_regrets([int(t) for t in frame["trial"]], val, test, best)
    rows = [
        {"strategy": name, "budget": b + 1, "regret": float(r)}
        for name, c in curves.items()
        for b, r in enumerate(c)
    ]
    return pd.DataFrame(rows, columns=["strategy", "budget", "regret"])


# ----------------------------------------------------------------------------- monitoring
def load_monitoring(trials: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch monitoring rows of every trial: ``<run_dir>/monitor.csv``, else ``record['monitor']``."""
    parts = []
    for _, row in trials.iterrows():
        data = _monitor_of(row)
        if data is not None and len(data):
            data = data.assign(trial=int(row["trial"]), method=row.get("method", ""))
            parts.append(data)
    return (
        pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["trial", "method", "epoch"])
    )


def _monitor_of(row: pd.Series) -> Optional[pd.DataFrame]:
    run_dir = row.get("run_dir")
    if isinstance(run_dir, str) and (Path(run_dir) / "monitor.csv").is_file():
        return pd.read_csv(Path(run_dir) / "monitor.csv")
    record = row.get("record_path")
    if isinstance(record, str) and Path(record).is_file():
        monitor = json.loads(Path(record).read_text()).get("monitor")
        return pd.DataFrame(monitor) if monitor else None
    return None



def flag_small_n(frame: pd.DataFrame, column: str = "n") -> pd.DataFrame:
    """A ``warning`` column: rank correlations over fewer than SMALL_N configs are noise-dominated."""
    warn = [f"n = {int(n)} < {SMALL_N}: unreliable" if int(n) < SMALL_N else "" for n in frame[column]]
    return frame.assign(warning=warn)



def failures_table(trials: pd.DataFrame, readouts: pd.DataFrame) -> pd.DataFrame:
    """Failed (not COMPLETE) trials, completed trials with a NaN or missing value in a metric a policy needs,
    and failed readouts, one row each, with the reason recorded."""
    rows = []
    if "state" in trials.columns:
        reason_col = next((c for c in ("failure_reason", "error", "note") if c in trials.columns), None)
        for row in trials[trials["state"].astype(str).str.upper() != "COMPLETE"].to_dict("records"):
            rows.append({"trial": int(row["trial"]), "what": "trial", "state": str(row["state"]),
                         "reason": _reason(row.get(reason_col) if reason_col else None)})
    rows += _nan_metric_rows(trials)
    if "status" in readouts.columns:
        for row in readouts[readouts["status"].astype(str) != "completed"].to_dict("records"):
            rows.append({"trial": int(row["trial"]), "what": "readout", "state": str(row["status"]),
                         "reason": _reason(row.get("error"))})
    frame = pd.DataFrame(rows, columns=["trial", "what", "state", "reason"])
    return frame.sort_values(["trial", "what"], kind="stable").reset_index(drop=True)


def _nan_metric_rows(trials: pd.DataFrame) -> list[dict[str, Any]]:
    """One row per completed trial whose policy metrics (the columns registered policies need) are not finite:
    the policies that need them never see it, which must not pass without a word."""
    needed = sorted({c for _, p in POLICIES.items() for c in (*p.needs, *p.needs_any)} & set(trials.columns))
    complete = trials if "state" not in trials.columns else trials[trials["state"].astype(str).str.upper() == "COMPLETE"]
    rows = []
    for row in complete.to_dict("records"):
        bad = [c for c in needed if not np.isfinite(pd.to_numeric(pd.Series([row[c]]), errors="coerce").iloc[0])]
        if bad:
            rows.append({"trial": int(row["trial"]), "what": "metric", "state": "NaN",
                         "reason": f"{', '.join(bad)} NaN or missing: policies that need it skip this trial"})
    return rows


def _reason(value: Any) -> str:
    return "no reason recorded" if _missing(value) or str(value).strip() == "" else str(value)



def nan_metric_lines(tables: Path) -> list[str]:
    """Console lines for completed trials that a NaN metric hides from some policies (from failures.csv)."""
    path = Path(tables) / "failures.csv"
    if not path.is_file():
        return []
    frame = pd.read_csv(path)
    rows = frame[frame["what"] == "metric"] if "what" in frame.columns else frame.iloc[0:0]
    return [f"trial {int(r.trial)}: {r.reason} ({path})" for r in rows.itertuples(index=False)]



def evidence_tables(
    trials: pd.DataFrame, readouts: pd.DataFrame, cfg: SelectionConfig, n_boot: int = 1000
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(Spearman with bootstrap intervals, policies vs random-b per scope) with the settings of ``cfg``."""
    merged = merged_table(trials, readouts)
    usable = usable_trials(merged)
    spearman = spearman_table(usable, available_metrics(usable), cfg.report_column, n_boot, cfg.seed)
    specs = policy_specs(settings=cfg)
    evidence = evaluate_scopes(trials, readouts, specs, cfg.n_orders, cfg.seed, None, cfg.selection_column,
                               cfg.report_column, 100.0 * cfg.tolerance)
    return spearman, evidence



def predictions_table(trials: pd.DataFrame, predictions: Optional[pd.DataFrame]) -> pd.DataFrame:
    """The guided reader's predictions with readable configs, unread ones first, best predicted first."""
    if predictions is None or predictions.empty:
        return pd.DataFrame(columns=["trial", "method", "read", "observed", "predicted", "low", "high", "config"])
    frame = predictions.assign(config=[describe_config(trials, t) for t in predictions["trial"]])
    return frame.sort_values(["read", "predicted"], ascending=[True, False], kind="stable").reset_index(drop=True)


def prediction_lines(predictions: pd.DataFrame, limit: int = 10) -> list[str]:
    """'trial 12 (SimCLR, lr 0.003): predicted 84.1% [82.0, 86.2]' for the best-predicted unread configs."""
    unread = predictions[~predictions["read"].astype(bool)] if len(predictions) else predictions
    lines = []
    for row in unread.head(limit).itertuples(index=False):
        if math.isfinite(float(row.predicted)):
            lines.append(f"trial {int(row.trial)} ({row.config}): predicted {100 * row.predicted:.1f}% "
                         f"[{100 * row.low:.1f}, {100 * row.high:.1f}]")
    return lines


def predictions_summary(tables: Path, limit: int = 3) -> str:
    """Console lines on the guided reader's predictions written under ``tables`` (or why there are none)."""
    path = Path(tables) / "predictions.csv"
    if not path.is_file():
        return "guided reader: no predictions (it did not run: no usable config)"
    frame = pd.read_csv(path)
    unread = int((~frame["read"].astype(bool)).sum())
    lines = [f"guided reader: predicted validation accuracy of the {unread} configs it never read: {path}"]
    lines += [f"  {line}" for line in prediction_lines(frame, limit)]
    return "\n".join(lines)



def merge_correlations(correlations: pd.DataFrame, spearman_ci: pd.DataFrame) -> pd.DataFrame:
    """One correlation table: Spearman (with its bootstrap 95% interval) and Kendall per metric and scope
    (a method, or all methods pooled); the two computations' Spearman agree (both on the usable configs)."""
    ci = spearman_ci.rename(columns={"scope": "method"})[["metric", "method", "ci_low", "ci_high"]]
    merged = correlations.merge(ci, on=["metric", "method"], how="left")
    return merged[["metric", "method", "n", "spearman", "ci_low", "ci_high", "spearman_p", "kendall", "kendall_p"]]


def policy_metrics(objective_columns: Sequence[str] = ()) -> list[str]:
    """The label-free metrics the registered policies read (their needed columns, calibrated_rank's signals
    and the guided reader's first pick), then the sweep's objective columns: the scatter's first grid."""
    needed = {c for _, p in POLICIES.items() for c in (*p.needs, *p.needs_any)}
    first = ["rankme", "rankme_normalized", "alpha"]  # guided's first pick, calibrated_rank's signals, alpha-ReQ
    return list(dict.fromkeys([*first, *sorted(needed - set(first)), *objective_columns]))


def scatter_metrics(frame: pd.DataFrame, objective: Any = None) -> tuple[list[str], list[str]]:
    """(metrics the policies use, the other available metrics), each present with a finite value; the
    objective's columns count as used (``objective``: :class:`sweep.selection.answer.Objective`)."""
    columns = tuple(getattr(objective, "columns", ()) or ())
    present = available_metrics(frame)
    extra = [c for c in columns if c in frame.columns and c not in present
             and np.isfinite(pd.to_numeric(frame[c], errors="coerce")).any()]
    used = [m for m in policy_metrics(columns) if m in present or m in extra]
    return used, [m for m in present if m not in used and m != "abs_alpha_minus_1"]


def panel_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman of the finite pairs (NaN under 3 pairs or a constant side): the rho a scatter panel shows."""
    a = pd.to_numeric(pd.Series(list(x)), errors="coerce").to_numpy(float)
    b = pd.to_numeric(pd.Series(list(y)), errors="coerce").to_numpy(float)
    return _correlation_row(a, b)["spearman"]

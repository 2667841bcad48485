"""Comparison report: policies vs the label-based oracle, metric/accuracy correlations, plots.

Policies choose by the validation readout; everything reported (accuracy, regret) is on the test split,
so no number is measured on the split that chose it. Regret = oracle's test accuracy - chosen test
accuracy (it can be negative when the validation choice of the oracle is not the test-best config).
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from sweep.config.schema import SelectionConfig  # noqa: E402
from sweep.progress_bar import progress  # noqa: E402
from sweep.selection.evaluate import (  # noqa: E402
    evaluate_scopes,
    oracle_choice,
    policy_specs,
    prefix_choices,
    spearman_table,
)
from sweep.selection.pipeline import TableReadout  # noqa: E402
from sweep.selection.policies import POLICIES, SelectionResult, run_policies, usable_trials  # noqa: E402
from sweep.selection.savings import random_curves  # noqa: E402
from sweep.selection.surrogate import param_columns  # noqa: E402

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
# sweep.selection.risk's COMPONENTS / TABLE_COLUMNS, restated so the report does not import torch
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


def _run(
    trials: pd.DataFrame, val: TableReadout, cfg: SelectionConfig, order: Optional[Sequence[int]]
) -> list[SelectionResult]:
    """Every policy with the settings of ``cfg``."""
    return run_policies(trials, val, order, settings=cfg)


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
    results = _run(trials, val, cfg, None)
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


# ----------------------------------------------------------------------------- figures
def _method_colors(methods: Sequence[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10")
    return {m: cmap(i % 10) for i, m in enumerate(sorted(set(methods)))}


def _method_series(frame: pd.DataFrame) -> pd.Series:
    """The method of every row ('all' without a method column)."""
    if "method" in frame.columns:
        return frame["method"].astype(str)
    return pd.Series("all", index=frame.index)


def chosen_by(policies: pd.DataFrame) -> dict[int, list[str]]:
    """Trial id -> the policies that chose it (for marking chosen configs in the figures)."""
    out: dict[int, list[str]] = {}
    for row in policies.to_dict("records"):
        trial = _number(row, "chosen_trial")
        if math.isfinite(trial):
            out.setdefault(int(trial), []).append(str(row["policy"]))
    return out


def _mark_chosen(ax: Any, sub: pd.DataFrame, x: str, y: str, chosen: Mapping[int, list[str]]) -> None:
    """Ring the configs a label-free policy chose, star the oracle's, and write the trial id beside."""
    for _, row in sub[sub["trial"].astype(int).isin(list(chosen))].iterrows():
        names = chosen[int(row["trial"])]
        px, py = float(row[x]), 100.0 * float(row[y])
        if any(n != "oracle" for n in names):
            ax.scatter([px], [py], s=90, facecolors="none", edgecolors="k", linewidths=1.2, zorder=4)
        if "oracle" in names:
            ax.scatter([px], [py], s=130, marker="*", color="red", edgecolors="k", linewidths=0.5, zorder=5)
        ax.annotate(str(int(row["trial"])), (px, py), xytext=(4, 3), textcoords="offset points", fontsize=7)


def plot_scatter(
    frame: pd.DataFrame, metrics: Sequence[str], accuracy: str, path: Path,
    chosen: Optional[Mapping[int, list[str]]] = None,
) -> Path:
    """Metric vs test accuracy, one panel per (metric, method) with its own x-scale (methods' metrics live on
    different scales): a row per metric and a column per method, or 3 columns when there is one method;
    chosen configs marked."""
    chosen = chosen or {}
    methods = _method_series(frame)
    names = sorted(set(methods)) or ["all"]
    colors = _method_colors(names)
    panels = [(metric, method) for metric in (metrics or ["trial"]) for method in names]
    cols = len(names) if len(names) > 1 else min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols + 0.4, 2.3 * rows + 0.6), squeeze=False,
                             sharey=True, layout="constrained")
    for ax, (metric, method) in zip(axes.flat, panels, strict=False):
        sub = frame[methods == method]
        accuracy_pct = 100.0 * pd.to_numeric(sub[accuracy], errors="coerce")
        ax.scatter(sub[metric], accuracy_pct, s=12, color=colors[method])
        _mark_chosen(ax, sub, metric, accuracy, chosen)
        ax.margins(x=0.08)  # room for the trial ids beside the rightmost points
        ax.set_title(f"{method_label(method)}: {metric}", fontsize=8)
        ax.set_xlabel(metric, fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy (%)", fontsize=7)
    if frame.empty:
        axes[0, 0].text(0.5, 0.5, "no usable configs", ha="center", transform=axes[0, 0].transAxes)
    handles = [plt.Line2D([], [], ls="", marker="o", mfc="none", mec="k", ms=8, label="chosen by a policy"),
               plt.Line2D([], [], ls="", marker="*", color="red", mec="k", ms=10, label="oracle's choice")]
    fig.legend(handles=handles, loc="outside lower center", fontsize=8, ncol=2)
    fig.suptitle("Label-free metric vs test accuracy, per method (one point per config)", fontsize=10)
    return _save(fig, path)


STRATEGY_LABELS = {"rankme": "top-b by RankMe (round robin over methods)",
                   "abs_alpha_minus_1": "top-b by |alpha - 1|",
                   "random": "b random readouts (exact expectation)"}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">")


def _budget_axis(ax: Any, n: int) -> None:
    """Readouts on a log axis for large sweeps (with plain 1, 10, 100 labels), linear integers for small."""
    if n <= 20:
        ax.set_xlabel("readouts b")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        return
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("readouts b (log scale)")


def plot_budget(curve: pd.DataFrame, policies: pd.DataFrame, path: Path) -> Path:
    """Regret (points) vs readout budget for the ranking strategies and the random-readout baseline, each
    policy a marker named in the legend (no labels on the plot to overprint)."""
    fig, ax = plt.subplots(figsize=(9.5, 4.2))
    for name, sub in curve.groupby("strategy", sort=False):
        style = {"color": "k", "ls": "--"} if name == "random" else {"drawstyle": "steps-post"}
        ax.plot(sub["budget"], 100.0 * sub["regret"], lw=1.4, label=STRATEGY_LABELS.get(str(name), str(name)),
                **style)
    cmap = plt.get_cmap("tab10")
    for i, row in enumerate(policies.to_dict("records")):
        regret = 100.0 * _number(row, "regret")
        if math.isfinite(regret) and int(row["readouts_used"]) > 0:
            ax.scatter([row["readouts_used"]], [regret], marker=MARKERS[i % len(MARKERS)], s=60, zorder=4,
                       color=cmap((i + 3) % 10), edgecolors="k", linewidths=0.5,
                       label=f"{row['policy']}: {int(row['readouts_used'])} reads, {regret:.1f} pts")
    ax.axhline(0.0, color="grey", lw=0.8)
    _budget_axis(ax, int(curve["budget"].max()) if len(curve) else 1)
    ax.set_ylabel("regret vs oracle (points of test accuracy)")
    ax.set_title("Regret vs readout budget (lower is better; under the dashed line beats random)",
                 fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def plot_monitoring(
    monitor: pd.DataFrame, path: Path, metrics: Sequence[str] = ("loss", "rankme", "alpha", "silhouette")
) -> Path:
    """Monitoring curves over epochs, one row per method and one panel per logged metric, each panel with its
    own scale (Barlow Twins' loss would flatten SimCLR's on a shared one); one line per trial."""
    present = [m for m in metrics if m in monitor.columns] or ["epoch"]
    methods = sorted(set(_method_series(monitor))) or ["all"]
    size = (3.6 * len(present), 2.5 * len(methods) + 0.5)
    fig, axes = plt.subplots(len(methods), len(present), figsize=size, squeeze=False, layout="constrained")
    colors = _method_colors(methods)
    by_method = _method_series(monitor)
    for i, method in enumerate(methods):
        for j, metric in enumerate(present):
            ax = axes[i, j]
            for _, sub in monitor[by_method == method].groupby("trial"):
                ax.plot(sub["epoch"], sub[metric], lw=0.8, marker="o", markersize=2, color=colors[method])
            ax.set_title(f"{method_label(method)}: {metric}", fontsize=8)
            ax.set_xlabel("epoch", fontsize=7)
            ax.tick_params(labelsize=7)
    if monitor.empty:
        axes[0, 0].text(0.5, 0.5, "no monitoring data", ha="center", transform=axes[0, 0].transAxes)
    fig.suptitle("Monitoring curves per method (one line per trial; each panel has its own scale)",
                 fontsize=10)
    return _save(fig, path)


def plot_risk(risk: pd.DataFrame, path: Path) -> Path:
    """One stacked bar per trial: positive components stack up from 0, negative ones (estimates of
    differences can be) down from 0, so each segment's length is its value; a black tick marks the total."""
    fig, ax = plt.subplots(figsize=(max(5.5, 0.6 * len(risk) + 3.5), 3.6))
    x = np.arange(len(risk))
    up, down = np.zeros(len(risk)), np.zeros(len(risk))
    cmap = plt.get_cmap("tab10")
    for i, name in enumerate(RISK_COMPONENTS):
        values = pd.to_numeric(risk[name], errors="coerce").fillna(0.0).to_numpy(float)
        base = np.where(values >= 0, up, down)
        ax.bar(x, values, bottom=base, color=cmap(i), label=name)
        up, down = np.where(values >= 0, up + values, up), np.where(values < 0, down + values, down)
    ax.scatter(x, pd.to_numeric(risk["total"], errors="coerce"), marker="_", s=300, color="k", zorder=3,
               label="total")
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_xticks(x, [str(int(t)) for t in risk["trial"]])
    ax.set_xlabel("trial")
    ax.set_ylabel("risk component")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def completed_risks(risk: Optional[pd.DataFrame]) -> pd.DataFrame:
    """Completed risk records, sorted by trial (empty when none)."""
    if risk is None or risk.empty:
        return pd.DataFrame(columns=RISK_COLUMNS)
    ok = risk[risk["status"].astype(str) == "completed"] if "status" in risk.columns else risk
    return ok.sort_values("trial", kind="stable").reset_index(drop=True)


def _risk_section(risk: pd.DataFrame, out: Path, fmt: dict[str, Any]) -> tuple[str, str]:
    """The report section: what the components mean, the table and the stacked bars."""
    done = completed_risks(risk)
    extra = [c for c in ("reference_train_accuracy", "l2", "loss", "status", "error") if c in risk.columns]
    intro = (
        "<p>Dubois et al. (ICML 2023): the test error of the linear probe fitted on <code>train</code> "
        "splits into approximation (a supervised encoder of the same architecture, probed on all "
        "pretraining data), usability (the SSL features vs that encoder), probe generalisation "
        "(<code>val</code>, seen in pretraining but not by the probe) and encoder generalisation "
        "(<code>test</code>, seen by neither). Components sum to the total; small samples can make one "
        "negative. A reference train accuracy below 1 inflates the approximation error (raise "
        "<code>--reference-epochs</code>).</p>"
    )
    table = risk.sort_values("trial", kind="stable")[[c for c in RISK_COLUMNS + extra if c in risk.columns]]
    figure = _img_tag(plot_risk(done, out / "figures" / "risk_decomposition.png")) if len(done) else ""
    return "Risk decomposition (Dubois et al.)", intro + table.to_html(**fmt) + figure


def _save(fig: Any, path: Path) -> Path:
    if fig.get_layout_engine() is None:  # constrained figures place their own suptitle and legend
        fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")  # keeps legends placed outside the axes
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- output
def _write_table(frame: pd.DataFrame, folder: Path, name: str) -> None:
    frame.to_csv(folder / f"{name}.csv", index=False)
    safe = frame.copy()
    for col in safe.columns:
        if safe[col].dtype == object:
            safe[col] = safe[col].map(
                lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
            )
    safe.to_parquet(folder / f"{name}.parquet", index=False)


def _img_tag(path: Path, title: str = "", caption: str = "") -> str:
    """The PNG embedded (the report opens offline) under a title, with a caption that says what to look
    at; ``caption`` is HTML."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    heading = f"<h3>{html.escape(title)}</h3>" if title else ""
    return (
        f'<figure>{heading}<img alt="{html.escape(title or path.name)}" data-file="{path.name}" '
        f'src="data:image/png;base64,{data}">'
        f"<figcaption>{caption or html.escape(path.name)}</figcaption></figure>"
    )


_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1250px;line-height:1.4}"
    "table{border-collapse:collapse;font-size:12px;margin:0.5em 0}"
    "td,th{border:1px solid #ccc;padding:2px 6px;vertical-align:top}td:last-child{min-width:16em}"
    "th{background:#f3f3f3}img{max-width:100%}figure{margin:1.5em 0}figcaption{font-size:13px;color:#333;"
    "max-width:70em}ol.headline li{margin:0.3em 0;font-size:15px}"
    "dl.defs dt{font-weight:bold;margin-top:0.4em}"
    "dl.defs dd{margin-left:1.5em}.warn{color:#a40000;font-weight:bold}.scroll{overflow-x:auto}"
)


def _html(title: str, sections: list[tuple[str, str]]) -> str:
    body = "\n".join(f"<h2>{html.escape(h)}</h2>\n{content}" for h, content in sections)
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )


# ----------------------------------------------------------------------------- sections
def _headline_html(policies: pd.DataFrame, usable: int, total: int, caveats: str) -> str:
    """The answer first: one sentence per policy, in words and points; ``caveats`` (plain text) says what
    failed or was left out."""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in policy_headlines(policies))
    return (f"<p>{usable} usable configs of {total} trials{html.escape(caveats)}. Each line: what the policy "
            "chose, after how many readouts, and how far its test accuracy is from the oracle's (definitions "
            f'below).</p><ol class="headline">{items}</ol>')


def _failure_counts(failures: pd.DataFrame) -> str:
    """'; 1 trial and 2 readouts failed (listed below)' or '' when nothing failed."""
    if failures.empty:
        return ""
    counts = failures["what"].value_counts()
    parts = [f"{int(counts[w])} {w}{'s' if counts[w] > 1 else ''}"
             for w in ("trial", "readout") if w in counts]
    text = f"; {' and '.join(parts)} failed" if parts else ""
    if "metric" in counts:
        n = int(counts["metric"])
        text += f"; {n} completed trial{'s' if n > 1 else ''} with a NaN metric"
    return text + " (listed below)"


def nan_metric_lines(tables: Path) -> list[str]:
    """Console lines for completed trials that a NaN metric hides from some policies (from failures.csv)."""
    path = Path(tables) / "failures.csv"
    if not path.is_file():
        return []
    frame = pd.read_csv(path)
    rows = frame[frame["what"] == "metric"] if "what" in frame.columns else frame.iloc[0:0]
    return [f"trial {int(r.trial)}: {r.reason} ({path})" for r in rows.itertuples(index=False)]


DEFINITIONS = (
    ("readout", "a labelled linear probe fitted on one trained config's features: the expensive, "
                "label-using step a label-free policy tries to spend little of. A policy chooses, among the "
                "configs it read, the best by <code>{selection}</code>."),
    ("oracle", "the label-based reference: reads every usable config and chooses the best validation "
               "readout; its <code>{report}</code> is what the policies are measured against."),
    ("regret (points)", "the oracle's test accuracy minus the chosen config's, in accuracy points "
                        "(1 point = 1% = 0.01; the CSV keeps <code>regret</code> as a fraction too). It can "
                        "be negative: the oracle chooses by validation, and on test another config can be "
                        "better."),
    ("random-b baseline", "the expected regret of reading b configs drawn at random and choosing by "
                          "validation, computed exactly (b = the policy's own readouts). A policy worth its "
                          "label-free metric has a lower regret than random-b."),
    ("p_within_tol", "the fraction of {n_orders} random visiting orders in which the policy's choice is "
                     "within {tol} point(s) of the oracle on test (only the adaptive, order-dependent "
                     "policies vary over orders; for the others it is 0 or 1)."),
    ("mean_readouts_over_orders", "the policy's readouts averaged over the same visiting orders."),
)


def _definitions_html(cfg: SelectionConfig) -> str:
    """What the report's words and columns mean, with this report's settings filled in."""
    values = {"selection": cfg.selection_column, "report": cfg.report_column, "n_orders": cfg.n_orders,
              "tol": format_value(100.0 * cfg.tolerance)}
    items = "".join(f"<dt>{html.escape(t)}</dt><dd>{d.format(**values)}</dd>" for t, d in DEFINITIONS)
    return f'<dl class="defs">{items}</dl>'


def _pct(value: Any) -> str:
    return "-" if _missing(value) else f"{100.0 * float(value):.1f}%"


def _pts(value: Any) -> str:
    return "-" if _missing(value) else f"{float(value):.1f}"


def policies_display(policies: pd.DataFrame, cfg: SelectionConfig) -> pd.DataFrame:
    """The policies table as a reader wants it: integer ids, accuracies in %, regrets in points."""
    out = pd.DataFrame({
        "policy": policies["policy"],
        "readouts": policies["readouts_used"],
        "chosen trial": ["-" if _missing(t) else str(int(t)) for t in policies["chosen_trial"]],
        "chosen config": policies["chosen_params"],
        "val accuracy": policies[cfg.selection_column].map(_pct),
        "test accuracy": policies[cfg.report_column].map(_pct),
        "regret (pts)": policies["regret_pts"].map(_pts),
        "random-b regret (pts)": policies["random_b_regret_pts"].map(_pts),
        "p_within_tol": policies["p_within_tol"].map(lambda v: f"{v:.2f}"),
        "mean readouts over orders": policies["mean_readouts_over_orders"].map(lambda v: f"{v:.1f}"),
        "why nothing was chosen": policies["note"].fillna(""),
    })
    return out


def flag_small_n(frame: pd.DataFrame, column: str = "n") -> pd.DataFrame:
    """A ``warning`` column: rank correlations over fewer than SMALL_N configs are noise-dominated."""
    warn = [f"n = {int(n)} < {SMALL_N}: unreliable" if int(n) < SMALL_N else "" for n in frame[column]]
    return frame.assign(warning=warn)


def _small_n_note(frame: pd.DataFrame) -> str:
    """'<p class="warn">12 of 36 rows ...</p>' above a correlation table with flagged rows; '' without."""
    flagged = int(frame["warning"].astype(bool).sum()) if "warning" in frame.columns else 0
    if not flagged:
        return ""
    return (f'<p class="warn">{flagged} of {len(frame)} rows are over fewer than {SMALL_N} configs: read '
            "their correlations as noise.</p>")


def _table_html(frame: pd.DataFrame) -> str:
    """A table with 3 significant digits, '-' for missing values, and warnings in red."""
    text = frame.to_html(index=False, na_rep="-", float_format=format_value, escape=True)
    return '<div class="scroll">' + text.replace("<td>n = ", '<td class="warn">n = ') + "</div>"


def _settings_html(cfg: SelectionConfig, usable: int, total: int, n_readouts: int, left_out: str) -> str:
    """The selection settings as a readable table, with what each setting does."""
    help_text = {
        "batch_size": "adaptive alpha window: configs visited per batch before the window is updated",
        "top_k": "adaptive alpha window: the window spans the alphas of the top-k read-out configs",
        "alpha_band": "alpha_band policy: the fixed alpha interval it reads (inclusive)",
        "n_orders": "random visiting orders behind p_within_tol and the per-method evaluation",
        "tolerance": "within-tolerance margin, as a fraction of accuracy (0.01 = 1 point)",
        "seed": "seeds the visiting orders and the bootstrap",
        "selection_column": "readout the policies maximise (never the test split)",
        "report_column": "readout reported for the chosen config",
        "combined_budget": "alpha_rankme: total readouts (None = ceil(log2 N usable))",
        "combined_allocation": "alpha_rankme: how the budget is split over methods",
    }
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(_setting_text(v))}</td>"
        f"<td>{html.escape(help_text.get(k, ''))}</td></tr>"
        for k, v in asdict(cfg).items()
    )
    return (f"<p>{usable} usable of {total} trials; {n_readouts} readouts{html.escape(left_out)}.</p>"
            f"<table><tr><th>setting</th><th>value</th><th>meaning</th></tr>{rows}</table>")


def _setting_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return "None" if value is None else format_value(value)


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


def _failures_html(failures: pd.DataFrame) -> str:
    if failures.empty:
        return "<p>No trial and no readout failed.</p>"
    return ("<p>Failed trials are never read nor chosen; a failed readout hides its config from every "
            "policy, the oracle included; a NaN metric hides it from the policies that need that metric.</p>"
            + _table_html(failures))


TABLE_HELP = {
    "policies": "one row per policy: choice, readouts, accuracies, regret",
    "correlations": "Spearman and Kendall of each metric with test accuracy, per method and pooled",
    "spearman_ci": "Spearman with bootstrap 95% intervals",
    "evidence": "policies vs random-b over visiting orders, per method and pooled",
    "budget_curve": "regret (fraction) vs readouts for the ranking strategies and random-b",
    "trials": "every trial with its readouts",
    "failures": "failed trials and failed readouts with reasons",
    "risk": "risk decomposition records",
    "readout_problems": "usable trials without a good readout",
    "predictions": "the guided reader's predicted validation accuracy of every config, with intervals",
}


def _tables_html(names: Sequence[str]) -> str:
    """Links to every table, CSV and parquet, relative to the report."""
    items = "".join(
        f'<li><a href="tables/{n}.csv">{n}.csv</a> / <a href="tables/{n}.parquet">{n}.parquet</a>'
        f" &mdash; {html.escape(TABLE_HELP.get(n, ''))}</li>"
        for n in names
    )
    return f"<ul>{items}</ul>"


SCATTER_CAPTION = (
    "One point per usable config: x = a label-free metric, y = test accuracy; one column per method, each "
    "with its own x-scale. Black rings: configs a label-free policy chose; red star: the oracle's choice; "
    "the number beside is the trial id. Look for a monotone trend within a method: a metric worth selecting "
    "by puts the best configs at one end. A cloud without a trend means reading its top configs is no "
    "better than random."
)
BUDGET_CAPTION = (
    "Regret (points of test accuracy) after reading b configs and choosing by validation: the b best by "
    "RankMe (round robin over methods), the b closest to alpha = 1, or b at random (dashed: the exact "
    "expected regret). Markers: each policy at its own readout count (legend: readouts, regret). A policy "
    "or curve under the dashed line beats random readouts at that budget. A curve can go below 0: the "
    "oracle chooses by validation, so a config read early can have a better test accuracy than the "
    "oracle's (regret is measured on test)."
)
MONITOR_CAPTION = (
    "Label-free metrics over training epochs, one row per method (each panel has its own scale, so one "
    "method's loss does not flatten another's); one line per trial. Look for runs whose RankMe collapses or "
    "whose loss diverges: their metrics at the last epoch are what the policies ranked."
)
CORRELATION_INTRO = (
    "<p>Spearman and Kendall rank correlations of each label-free metric with test accuracy over usable "
    "configs, per method and pooled. A positive value: higher metric, higher accuracy. Rows over fewer than "
    f"{SMALL_N} configs are flagged: with so few points the sign itself is uncertain.</p>"
)


@contextmanager
def _progress(total: int) -> Iterator[Any]:
    """A bar over the report's steps (the evidence tables and figures take seconds to a minute), on a
    terminal only: the project's rule in :mod:`sweep.progress_bar`."""
    bar = progress(total=total, desc="report", unit="step", leave=False)
    try:
        yield bar
    finally:
        bar.close()


_SPEARMAN_INTRO = (
    "<p>Spearman of each label-free metric with the test accuracy of usable configs, per method and pooled; "
    "95% percentile interval over {n_boot} bootstrap resamples of configs (seeded).</p>"
)
_EVIDENCE_INTRO = (
    "<p>Each policy run on each method's configs alone and on all together, over {n} random visiting orders. "
    "Regret in points against the oracle (best validation readout, reported on test). random-b reads b "
    "configs in an independent random order (b = the policy's own readouts in that order) and chooses by "
    "validation; p_vs_random = P(random-b regret &lt;= policy regret) over matched orders (one-sided; ties "
    "count against the policy; about b/N at best when the policy finds the oracle's config). Target: "
    "P(within 1 point with &lt;= ceil(log2 N)+2 readouts) &gt;= 0.9 and p_vs_random &lt; 0.05. See "
    "<code>sweep.selection.evaluate</code>.</p>"
)


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


_PROBLEMS_INTRO = ("<p>These usable trials have no good readout, so every policy (and the oracle) is blind to "
                   "them; the next <code>sweep select</code> reads them out again.</p>")


def _left_out_text(problems: pd.DataFrame) -> str:
    """'; 2 left out of the selection (1 failed, 1 unreadable)' or '' when every usable trial was read."""
    if problems.empty:
        return ""
    kinds = problems["kind"].value_counts() if "kind" in problems.columns else pd.Series(dtype=int)
    detail = ", ".join(f"{n} {k}" for k, n in kinds.items())
    return f"; {len(problems)} left out of the selection ({detail})" if detail else f"; {len(problems)} left out"


def _figures_html(
    usable: pd.DataFrame, curve: pd.DataFrame, policies: pd.DataFrame, monitor: pd.DataFrame, folder: Path,
    accuracy: str,
) -> str:
    """The figures, titled and captioned, most telling first: regret vs budget, metric scatter, training
    curves (a sentence instead when there are none, e.g. for a metrics table)."""
    figures = [
        _img_tag(plot_budget(curve, policies, folder / "regret_vs_budget.png"),
                 "Regret vs readout budget, against random readouts", html.escape(BUDGET_CAPTION)),
        _img_tag(plot_scatter(usable, available_metrics(usable) or ["trial"], accuracy,
                              folder / "scatter.png", chosen_by(policies)),
                 "Which configs each metric ranks high", html.escape(SCATTER_CAPTION)),
    ]
    if monitor.empty:
        figures.append("<h3>Training curves per method</h3><p>No monitoring curves: the trials have no "
                       "<code>run_dir/monitor.csv</code> or recorded monitor rows.</p>")
    else:
        figures.append(_img_tag(plot_monitoring(monitor, folder / "monitoring.png"),
                                "Training curves per method", html.escape(MONITOR_CAPTION)))
    return "\n".join(figures)


PREDICTIONS_INTRO = (
    "<p>The guided reader's model of validation accuracy (a Gaussian process over the hyperparameters and "
    "the label-free metrics, fitted to the configs it read) predicts the readout of every config it did not "
    "read, with a central {level:.0%} interval for a new readout. Its stopping rule read out until no unread "
    "config was likely to beat the best read one by more than the tolerance. The intervals' coverage is "
    "measured on the stored tables in the README's Evidence section (leave-one-out and at the stop); treat "
    "them as a guide, not a guarantee.</p>")


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


def _predictions_html(predictions: pd.DataFrame, level: float) -> str:
    unread = int((~predictions["read"].astype(bool)).sum()) if len(predictions) else 0
    if not unread:
        return "<p>The guided reader read every config: nothing to predict.</p>"
    items = "".join(f"<li>{html.escape(line)}</li>" for line in prediction_lines(predictions))
    return (PREDICTIONS_INTRO.format(level=level) + f"<p>Configs never read out ({unread}), best predicted "
            f"first (all in <code>tables/predictions.csv</code>):</p><ol>{items}</ol>")


def build_report(
    trials: pd.DataFrame,
    readouts: pd.DataFrame,
    out_dir: str | Path,
    cfg: Optional[SelectionConfig] = None,
    monitoring: Optional[pd.DataFrame] = None,
    title: str = "Label-free selection report",
    risk: Optional[pd.DataFrame] = None,
    n_boot: int = 1000,
    readout_problems: Optional[pd.DataFrame] = None,
) -> Path:
    """Write ``report.html`` (figures embedded, opens offline) plus CSV/parquet tables and PNGs under
    ``out_dir``; returns the HTML path. ``risk`` (``sweep.selection.risk.load_risks``) adds the risk
    decomposition section when it has rows; ``readout_problems``
    (``sweep.selection.pipeline.readout_problems``: trial, kind, file, reason) lists the usable trials that no
    policy could see because their readout is missing, unreadable, mismatched or failed."""
    cfg = cfg or SelectionConfig()
    out = Path(out_dir)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    problems = readout_problems if readout_problems is not None else pd.DataFrame()
    with _progress(total=6) as bar:
        merged = merged_table(trials, readouts)
        usable = usable_trials(merged)
        predicted_by: dict[str, pd.DataFrame] = {}
        policies = policy_table(trials, readouts, cfg, predicted_by)
        bar.update()
        correlations = flag_small_n(metric_correlations(trials, readouts, cfg.report_column))
        curve = budget_curve(trials, readouts, cfg)
        monitor = monitoring if monitoring is not None else load_monitoring(trials)
        bar.update()
        spearman_ci, evidence = evidence_tables(trials, readouts, cfg, n_boot)
        spearman_ci = flag_small_n(spearman_ci)
        bar.update()
        failures = failures_table(trials, readouts)
        predicted = predictions_table(trials, predicted_by.get("guided"))
        tables = {"policies": policies, "correlations": correlations, "spearman_ci": spearman_ci,
                  "evidence": evidence, "budget_curve": curve, "trials": merged, "failures": failures}
        if len(predicted):
            tables["predictions"] = predicted
        if risk is not None and not risk.empty:
            tables["risk"] = risk
        if not problems.empty:
            tables["readout_problems"] = problems
        for name, frame in tables.items():
            _write_table(frame, out / "tables", name)
        bar.update()
        figures = _figures_html(usable, curve, policies, monitor, out / "figures", cfg.report_column)
        bar.update()
        fmt = {"float_format": format_value, "index": False, "na_rep": "-"}
        left_out = _left_out_text(problems)
        caveats = _failure_counts(failures) + left_out
        sections = [
            ("What each policy chose", _headline_html(policies, len(usable), len(trials), caveats)),
            ("Definitions", _definitions_html(cfg)),
            ("Policies vs oracle", _table_html(policies_display(policies, cfg))),
            *([("Predicted accuracy of the configs never read out", _predictions_html(predicted,
                                                                                      cfg.prediction_level))]
              if len(predicted) else []),
            ("Figures", figures),
            *([("Readouts left out of the selection", _PROBLEMS_INTRO + problems.to_html(**fmt))]
              if not problems.empty else []),
            ("Failed trials and readouts", _failures_html(failures)),
            ("Metric vs accuracy correlations",
             CORRELATION_INTRO + _small_n_note(correlations) + _table_html(correlations)),
            ("Spearman with bootstrap 95% intervals", _SPEARMAN_INTRO.format(n_boot=n_boot)
             + _small_n_note(spearman_ci) + _table_html(spearman_ci)),
            ("Policies vs random-b, per method and pooled", _EVIDENCE_INTRO.format(n=cfg.n_orders)
             + _table_html(evidence)),
            *([_risk_section(risk, out, fmt)] if "risk" in tables else []),
            ("Settings", _settings_html(cfg, len(usable), len(trials), int(readouts.shape[0]), left_out)),
            ("Tables", _tables_html(list(tables))),
        ]
        bar.update()
    path = out / "report.html"
    path.write_text(_html(title, sections))
    return path

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
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from sweep.config.schema import SelectionConfig  # noqa: E402
from sweep.selection.evaluate import (  # noqa: E402
    evaluate_scopes,
    oracle_choice,
    policy_specs,
    prefix_choices,
    spearman_table,
)
from sweep.selection.pipeline import TableReadout  # noqa: E402
from sweep.selection.policies import SelectionResult, run_policies, usable_trials  # noqa: E402

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


def _params_of(trials: pd.DataFrame, trial: Optional[int]) -> str:
    if trial is None:
        return ""
    row = trials.loc[trials["trial"] == trial].iloc[0]
    params = {c.removeprefix("params_"): row[c] for c in trials.columns if c.startswith("params_")}
    if "method" in trials.columns:
        params = {"method": row["method"], **params}
    return json.dumps(params, default=str)


def random_orders(trial_ids: Sequence[int], n_orders: int, seed: int) -> list[list[int]]:
    """Seeded random visiting orders (permutations of the trial ids)."""
    rng = np.random.default_rng(seed)
    ids = np.asarray(sorted(int(t) for t in trial_ids))
    return [[int(t) for t in rng.permutation(ids)] for _ in range(n_orders)]


def _run(
    trials: pd.DataFrame, val: TableReadout, cfg: SelectionConfig, order: Optional[Sequence[int]]
) -> list[SelectionResult]:
    """Every policy with the settings of ``cfg``."""
    band = tuple(cfg.alpha_band)
    return run_policies(
        trials, val, order, cfg.batch_size, cfg.top_k, band, cfg.combined_budget, cfg.combined_allocation
    )


def _order_stats(
    trials: pd.DataFrame, readouts: pd.DataFrame, cfg: SelectionConfig, best: float
) -> pd.DataFrame:
    """Per policy, over cfg.n_orders random visiting orders: P(test acc >= best - tol), mean readouts."""
    val = TableReadout(readouts, cfg.selection_column)
    test = TableReadout(readouts, cfg.report_column)
    rows = []
    for order in random_orders(trials["trial"], cfg.n_orders, cfg.seed):
        for res in _run(trials, val, cfg, order):
            acc = test(res.chosen_trial) if res.chosen_trial is not None else math.nan
            rows.append(
                {
                    "policy": res.policy,
                    "within": bool(acc >= best - cfg.tolerance - 1e-12),
                    "readouts": res.readouts_used,
                }
            )
    frame = pd.DataFrame(rows, columns=["policy", "within", "readouts"])
    return frame.groupby("policy", sort=False).agg(
        p_within=("within", "mean"), mean_readouts=("readouts", "mean")
    )


def policy_table(
    trials: pd.DataFrame, readouts: pd.DataFrame, cfg: Optional[SelectionConfig] = None
) -> pd.DataFrame:
    """One row per policy: readouts used, chosen config, its test accuracy, regret vs the oracle, and the
    probability over random visiting orders of landing within ``cfg.tolerance`` of the oracle."""
    cfg = cfg or SelectionConfig()
    val = TableReadout(readouts, cfg.selection_column)
    test = TableReadout(readouts, cfg.report_column)
    results = _run(trials, val, cfg, None)
    oracle_trial = next(r for r in results if r.policy == "oracle").chosen_trial
    best = test(oracle_trial) if oracle_trial is not None else math.nan
    order_stats = _order_stats(trials, readouts, cfg, best)
    rows = []
    for res in results:
        acc = test(res.chosen_trial) if res.chosen_trial is not None else math.nan
        rows.append(
            {
                "policy": res.policy,
                "readouts_used": res.readouts_used,
                "chosen_trial": res.chosen_trial,
                "chosen_params": _params_of(trials, res.chosen_trial),
                cfg.selection_column: res.chosen_accuracy,
                cfg.report_column: acc,
                "regret": best - acc,
                "p_within_tol": float(order_stats.loc[res.policy, "p_within"]),
                "mean_readouts_over_orders": float(order_stats.loc[res.policy, "mean_readouts"]),
                "note": res.note,
            }
        )
    return pd.DataFrame(rows)


def policy_notes(policies: pd.DataFrame) -> list[str]:
    """The notes of policies that read or chose nothing (why), in table order."""
    if "note" not in policies.columns:
        return []
    return [str(n) for n in policies["note"] if isinstance(n, str) and n]


def policy_summary(policies: pd.DataFrame) -> str:
    """The headline table for stdout (what each policy chose, at what cost and regret), then the notes."""
    wanted = ("policy", "readouts_used", "chosen_trial", "test_accuracy", "regret", "p_within_tol",
              "mean_readouts_over_orders")
    columns = [c for c in wanted if c in policies.columns]
    display = ("display.width", 160, "display.max_columns", 20, "display.float_format", "{:.4f}".format)
    with pd.option_context(*display):
        text = policies[columns].to_string(index=False)
    return "\n".join([text, *(f"note: {n}" for n in policy_notes(policies))])


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
    """Regret vs readout budget b: read the b best by RankMe or by |alpha-1|, or b at random (mean over
    orders)."""
    cfg = cfg or SelectionConfig()
    frame = usable_trials(merged_table(trials, readouts))
    val = TableReadout(readouts, cfg.selection_column).values
    test = TableReadout(readouts, cfg.report_column).values
    oracle_trial = oracle_choice(frame["trial"].astype(int), val)
    best = test.get(oracle_trial, math.nan) if oracle_trial is not None else math.nan
    curves = {name: _regret_at_budgets(o, val, test, best) for name, o in _budget_orders(frame).items()}
    randoms = [
        _regret_at_budgets(o, val, test, best) for o in random_orders(frame["trial"], cfg.n_orders, cfg.seed)
    ]
    if randoms:
        curves["random"] = np.nanmean(np.vstack(randoms), axis=0) if len(frame) else np.array([])
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


def plot_scatter(frame: pd.DataFrame, metrics: Sequence[str], accuracy: str, path: Path) -> Path:
    """Metric vs probe accuracy, one panel per metric, colour = method."""
    cols = min(3, max(1, len(metrics)))
    rows = max(1, math.ceil(len(metrics) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    methods = (
        frame["method"].astype(str) if "method" in frame.columns else pd.Series("all", index=frame.index)
    )
    colors = _method_colors(list(methods))
    for ax, metric in zip(axes.flat, metrics, strict=False):
        for method, color in colors.items():
            sub = frame[methods == method]
            ax.scatter(sub[metric], sub[accuracy], s=14, color=color, label=method)
        ax.set_xlabel(metric)
        ax.set_ylabel(accuracy)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    if axes.flat[0].get_legend_handles_labels()[0]:
        axes.flat[0].legend(fontsize=7)
    return _save(fig, path)


def plot_budget(curve: pd.DataFrame, policies: pd.DataFrame, path: Path) -> Path:
    """Regret vs readout budget for the ranking strategies, with each policy as a point."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, sub in curve.groupby("strategy", sort=False):
        ax.plot(sub["budget"], sub["regret"], label=f"top-b by {name}" if name != "random" else "random b")
    for _, row in policies.iterrows():
        if np.isfinite(row["regret"]):
            ax.scatter([row["readouts_used"]], [row["regret"]], marker="x", zorder=3)
            ax.annotate(row["policy"], (row["readouts_used"], row["regret"]), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("readouts (budget)")
    ax.set_ylabel("regret vs oracle (test accuracy)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_monitoring(
    monitor: pd.DataFrame, path: Path, metrics: Sequence[str] = ("loss", "rankme", "alpha", "silhouette")
) -> Path:
    """Monitoring curves over epochs, one line per trial, one panel per metric that was logged."""
    present = [m for m in metrics if m in monitor.columns] or ["epoch"]
    fig, axes = plt.subplots(1, len(present), figsize=(4 * len(present), 3.2), squeeze=False)
    colors = _method_colors(list(monitor.get("method", pd.Series(dtype=str)).astype(str)))
    for ax, metric in zip(axes.flat, present, strict=False):
        for _, sub in monitor.groupby("trial"):
            color = colors.get(str(sub["method"].iloc[0]), "k")
            ax.plot(sub["epoch"], sub[metric], lw=0.8, marker="o", markersize=3, color=color)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
    handles = [plt.Line2D([], [], color=c, marker="o", markersize=3, lw=0.8, label=m) for m, c in colors.items()]
    if handles:
        axes.flat[0].legend(handles=handles, fontsize=7)
    if monitor.empty:
        axes.flat[0].text(0.5, 0.5, "no monitoring data", ha="center", transform=axes.flat[0].transAxes)
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
    fig.tight_layout()
    fig.savefig(path, dpi=90)
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


def _img_tag(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{path.name}" data-file="{path.name}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(path.name)}</figcaption></figure>"
    )


def _html(title: str, sections: list[tuple[str, str]]) -> str:
    body = "\n".join(f"<h2>{html.escape(h)}</h2>\n{content}" for h, content in sections)
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )


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
    specs = policy_specs(cfg.batch_size, cfg.top_k, tuple(cfg.alpha_band), cfg.combined_budget,
                         cfg.combined_allocation)
    evidence = evaluate_scopes(trials, readouts, specs, cfg.n_orders, cfg.seed, None, cfg.selection_column,
                               cfg.report_column, 100.0 * cfg.tolerance)
    return spearman, evidence


def _notes_html(policies: pd.DataFrame) -> str:
    notes = policy_notes(policies)
    return "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>" if notes else ""


_PROBLEMS_INTRO = ("<p>These usable trials have no good readout, so every policy (and the oracle) is blind to "
                   "them; the next <code>sweep select</code> reads them out again.</p>")


def _left_out_text(problems: pd.DataFrame) -> str:
    """'; 2 left out of the selection (1 failed, 1 unreadable)' or '' when every usable trial was read."""
    if problems.empty:
        return ""
    kinds = problems["kind"].value_counts() if "kind" in problems.columns else pd.Series(dtype=int)
    detail = ", ".join(f"{n} {k}" for k, n in kinds.items())
    return f"; {len(problems)} left out of the selection ({detail})" if detail else f"; {len(problems)} left out"


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
    merged = merged_table(trials, readouts)
    policies = policy_table(trials, readouts, cfg)
    correlations = metric_correlations(trials, readouts, cfg.report_column)
    curve = budget_curve(trials, readouts, cfg)
    monitor = monitoring if monitoring is not None else load_monitoring(trials)
    spearman_ci, evidence = evidence_tables(trials, readouts, cfg, n_boot)
    tables = {"policies": policies, "correlations": correlations, "spearman_ci": spearman_ci,
              "evidence": evidence, "budget_curve": curve, "trials": merged}
    if risk is not None and not risk.empty:
        tables["risk"] = risk
    problems = readout_problems if readout_problems is not None else pd.DataFrame()
    if not problems.empty:
        tables["readout_problems"] = problems
    for name, frame in tables.items():
        _write_table(frame, out / "tables", name)
    usable = usable_trials(merged)
    figures = [
        plot_scatter(
            usable, available_metrics(usable) or ["trial"], cfg.report_column, out / "figures" / "scatter.png"
        ),
        plot_budget(curve, policies, out / "figures" / "regret_vs_budget.png"),
        plot_monitoring(monitor, out / "figures" / "monitoring.png"),
    ]
    fmt = {"float_format": lambda v: f"{v:.4f}", "index": False, "na_rep": "-"}
    sections = [
        (
            "Settings",
            f"<pre>{html.escape(json.dumps(asdict(cfg), indent=1))}</pre>"
            f"<p>{len(usable)} usable of {len(trials)} trials; {int(readouts.shape[0])} readouts"
            f"{_left_out_text(problems)}.</p>",
        ),
        *([("Readouts left out of the selection", _PROBLEMS_INTRO + problems.to_html(**fmt))]
          if not problems.empty else []),
        ("Policies vs oracle", policies.to_html(**fmt) + _notes_html(policies)),
        ("Metric vs accuracy correlations", correlations.to_html(**fmt)),
        ("Spearman with bootstrap 95% intervals", _SPEARMAN_INTRO.format(n_boot=n_boot)
         + spearman_ci.to_html(**fmt)),
        ("Policies vs random-b, per method and pooled", _EVIDENCE_INTRO.format(n=cfg.n_orders)
         + evidence.to_html(**fmt)),
        *([_risk_section(risk, out, fmt)] if "risk" in tables else []),
        ("Figures", "\n".join(_img_tag(p) for p in figures)),
        (
            "Tables",
            "<ul>" + "".join(f"<li>tables/{n}.csv, tables/{n}.parquet</li>" for n in tables) + "</ul>",
        ),
    ]
    path = out / "report.html"
    path.write_text(_html(title, sections))
    return path

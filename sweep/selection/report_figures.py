"""The report's figures: matplotlib (Agg) plots of the numbers in :mod:`sweep.selection.report_numbers`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from sweep.selection.report_numbers import (  # noqa: E402
    RISK_COLUMNS,
    RISK_COMPONENTS,
    _number,
    method_label,
    panel_rho,
)

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


MARKER_AREA = 16.0  # scatter marker area (points^2): its diameter is sqrt(area) points
SCATTER_DPI = 90  # the figure is laid out at the dpi it is saved at, so pixel distances hold in the PNG
CONFIGS_GID = "configs"  # the gid of each panel's point collection (the test of non-overlap finds it so)


def marker_diameter_px(area: float = MARKER_AREA, dpi: float = SCATTER_DPI) -> float:
    """A scatter marker's diameter in pixels: sqrt(area) points at ``dpi`` (72 points per inch)."""
    return math.sqrt(area) * dpi / 72.0


def spread_points(xy: np.ndarray, min_dist: float, max_iter: int = 500) -> np.ndarray:
    """Nudge points (pixel coordinates, shape (n, 2)) apart until every pair is at least ``min_dist`` apart,
    each move as small as the overlap it removes: markers never hide each other and stay close to their
    values. Coincident points are separated along a fixed, index-dependent direction (deterministic)."""
    p = np.asarray(xy, float).reshape(-1, 2).copy()
    n = len(p)
    if n < 2:
        return p
    angles = np.arange(n) * 2.399963  # the golden angle: distinct directions for coincident points
    fallback = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    goal = min_dist * 1.02
    for _ in range(max_iter):
        diff = p[:, None, :] - p[None, :, :]
        dist = np.hypot(diff[..., 0], diff[..., 1])
        np.fill_diagonal(dist, np.inf)
        close = dist < goal
        if not close.any():
            break
        unit = np.where(dist[..., None] > 1e-9, diff / np.maximum(dist, 1e-9)[..., None],
                        fallback[:, None, :] - fallback[None, :, :])
        push = np.where(close, (goal - np.minimum(dist, goal)) / 2.0, 0.0)
        p += (unit * push[..., None]).sum(axis=1) / np.maximum(close.sum(axis=1), 1)[:, None]
    return p


def _place_points(ax: Any, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Data coordinates of the points after :func:`spread_points` in this axes' pixel space (limits frozen
    first, so the transform does not change afterwards)."""
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return x, y
    to_px = ax.transData
    pixels = to_px.transform(np.column_stack([x[ok], y[ok]]))
    moved = to_px.inverted().transform(spread_points(pixels, marker_diameter_px()))
    nx, ny = x.copy(), y.copy()
    nx[ok], ny[ok] = moved[:, 0], moved[:, 1]
    return nx, ny


def _mark_chosen(ax: Any, x: np.ndarray, y: np.ndarray, trials: np.ndarray,
                 chosen: Mapping[int, list[str]]) -> None:
    """Ring the configs a label-free policy chose, star the oracle's, and write the trial id beside."""
    for px, py, trial in zip(x, y, trials, strict=True):
        names = chosen.get(int(trial))
        if not names or not (math.isfinite(px) and math.isfinite(py)):
            continue
        if any(n != "oracle" for n in names):
            ax.scatter([px], [py], s=70, facecolors="none", edgecolors="k", linewidths=1.0, zorder=4)
        if "oracle" in names:
            ax.scatter([px], [py], s=110, marker="*", facecolors="none", edgecolors="red", linewidths=1.0,
                       zorder=5)
        ax.annotate(str(int(trial)), (px, py), xytext=(4, 3), textcoords="offset points", fontsize=7)


def _limits(values: np.ndarray, margin: float = 0.12) -> tuple[float, float]:
    """The finite values' range widened by ``margin`` on each side ((0, 1) without any, +-1 for one value)."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    pad = margin * (high - low) if high > low else max(1.0, abs(low) * 0.05)
    return low - pad, high + pad


def _panel(ax: Any, sub: pd.DataFrame, metric: str, accuracy: str, color: Any,
           chosen: Mapping[int, list[str]], ylim: tuple[float, float]) -> None:
    """One (metric, method) panel: limits fixed from the true values (y shared by every panel, set before
    any point is placed, so no panel's transform changes afterwards), then the points spread apart."""
    x = pd.to_numeric(sub[metric], errors="coerce").to_numpy(float)
    y = 100.0 * pd.to_numeric(sub[accuracy], errors="coerce").to_numpy(float)
    ax.set_xlim(*_limits(x))
    ax.set_ylim(*ylim)
    px, py = _place_points(ax, x, y)
    ax.scatter(px, py, s=MARKER_AREA, color=color, alpha=0.8, linewidths=0, gid=CONFIGS_GID, clip_on=False)
    _mark_chosen(ax, px, py, sub["trial"].to_numpy(), chosen)


def scatter_figure(
    frame: pd.DataFrame, metrics: Sequence[str], accuracy: str,
    chosen: Optional[Mapping[int, list[str]]] = None, labels: Optional[Mapping[str, str]] = None,
) -> Any:
    """Metric vs test accuracy, one panel per (metric, method) with its own x-scale, titled with its Spearman
    rho: a row per metric and a column per method (3 columns for one method). The layout is fixed before the
    points are placed (no layout engine moves the axes later), so the spreading holds in the saved PNG."""
    chosen, labels = chosen or {}, labels or {}
    methods = _method_series(frame)
    names = sorted(set(methods)) or ["all"]
    colors = _method_colors(names)
    panels = [(metric, method) for metric in (metrics or ["trial"]) for method in names]
    cols = len(names) if len(names) > 1 else min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    height = 2.5 * rows + 1.2  # inches: 2.5 per row of panels, 0.75 above for the titles, 0.45 below
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols + 0.4, height), squeeze=False, sharey=True,
                             dpi=SCATTER_DPI)
    fig.subplots_adjust(left=0.08, right=0.97, bottom=0.75 / height, top=1.0 - 0.75 / height, hspace=0.65,
                        wspace=0.25)
    ylim = _limits(100.0 * pd.to_numeric(frame[accuracy], errors="coerce").to_numpy(float)) \
        if accuracy in frame.columns else (0.0, 1.0)
    for ax, (metric, method) in zip(axes.flat, panels, strict=False):
        sub = frame[methods == method]
        _panel(ax, sub, metric, accuracy, colors[method], chosen, ylim)
        rho = panel_rho(sub[metric], sub[accuracy])
        label = labels.get(metric, metric)
        ax.set_title(f"{method_label(method)}: {label}\nrho = {_rho_text(rho)} (n = {len(sub)})", fontsize=8)
        ax.set_xlabel(label, fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy (%)", fontsize=7)
    if frame.empty:
        axes[0, 0].text(0.5, 0.5, "no usable configs", ha="center", transform=axes[0, 0].transAxes)
    handles = [plt.Line2D([], [], ls="", marker="o", mfc="none", mec="k", ms=8, label="chosen by a policy"),
               plt.Line2D([], [], ls="", marker="*", mfc="none", mec="red", ms=10, label="oracle's choice")]
    fig.legend(handles=handles, loc="lower center", fontsize=8, ncol=2, frameon=False)
    fig.suptitle("Label-free metric vs test accuracy, per method (one point per config; rho = Spearman)",
                 fontsize=10, y=1.0 - 0.08 / height, va="top")
    return fig


def _rho_text(rho: float) -> str:
    return "-" if not math.isfinite(rho) else f"{rho:+.2f}"


def plot_scatter(
    frame: pd.DataFrame, metrics: Sequence[str], accuracy: str, path: Path,
    chosen: Optional[Mapping[int, list[str]]] = None, labels: Optional[Mapping[str, str]] = None,
) -> Path:
    """:func:`scatter_figure` saved at its own dpi (markers nudged apart so none hides another)."""
    fig = scatter_figure(frame, metrics, accuracy, chosen, labels)
    fig.savefig(path, dpi=SCATTER_DPI, bbox_inches="tight")
    plt.close(fig)
    return path


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



def _save(fig: Any, path: Path) -> Path:
    if fig.get_layout_engine() is None:  # constrained figures place their own suptitle and legend
        fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")  # keeps legends placed outside the axes
    plt.close(fig)
    return path


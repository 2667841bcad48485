"""The report's tables as a reader sees them: percentages, points, a metric x scope grid of Spearman intervals,
the evidence table's essential columns (the CSV files keep every column, unformatted)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sweep.config.schema import SelectionConfig
from sweep.selection.report_numbers import POOLED, SMALL_N, _missing, method_label


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



EVIDENCE_SHOWN = {"scope": "scope", "policy": "policy", "target_met": "target met", "configs": "N",
                  "budget": "budget", "readouts_mean": "mean readouts", "regret_mean_pts": "mean regret (pts)",
                  "p_within_1pt": "P(within 1 pt)", "p_success": "P(success)", "savings": "savings",
                  "p_vs_random": "p vs random-b"}


def evidence_display(evidence: pd.DataFrame) -> pd.DataFrame:
    """The evidence table with the columns a reader needs, target_met second from the left (the CSV has
    them all)."""
    shown = evidence[[c for c in EVIDENCE_SHOWN if c in evidence.columns]].rename(columns=EVIDENCE_SHOWN)
    if "target met" in shown.columns:
        shown["target met"] = shown["target met"].map(lambda v: "yes" if bool(v) else "no")
    return shown


def _rho_cell(row: Any) -> str:
    if _missing(row.spearman):
        return "-"
    interval = "" if _missing(row.ci_low) else f" [{row.ci_low:+.2f}, {row.ci_high:+.2f}]"
    return f"{row.spearman:+.2f}{interval}"


def correlation_grid(correlations: pd.DataFrame, first: Sequence[str] = ()) -> pd.DataFrame:
    """One row per metric, one column per scope ('SimCLR (n = 15)'): Spearman [95% interval]; the metrics the
    policies use first, then by |pooled Spearman|; a scope over fewer than SMALL_N configs is marked."""
    if correlations.empty:
        return pd.DataFrame(columns=["metric"])
    frame = correlations.assign(cell=[_rho_cell(r) for r in correlations.itertuples(index=False)])
    sizes = frame.groupby("method", sort=False)["n"].max()
    names = {m: f"{'all methods' if m == POOLED else method_label(m)} (n = {int(n)})"
             + (" unreliable" if int(n) < SMALL_N else "") for m, n in sizes.items()}
    grid = frame.pivot(index="metric", columns="method", values="cell")[list(sizes.index)].rename(columns=names)
    strength = frame.groupby("metric")["spearman"].apply(lambda s: float(np.nanmax(np.abs(s))) if s.notna().any()
                                                         else 0.0)
    key = {m: (0, list(first).index(m)) if m in first else (1, -strength.get(m, 0.0)) for m in grid.index}
    grid = grid.loc[sorted(grid.index, key=key.__getitem__)].reset_index()
    grid.columns.name = None
    return grid

"""Comparison report: policies vs the label-based oracle, metric/accuracy correlations, plots, as one HTML page.

The numbers live in :mod:`sweep.selection.report_numbers`, the figures in :mod:`sweep.selection.report_figures`
and the answer (which config, how far to trust it) in :mod:`sweep.selection.answer`; this module lays them out
and re-exports the names callers import from here.
"""

from __future__ import annotations

import base64
import html
import math
import shlex
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from sweep.config.schema import SelectionConfig
from sweep.progress_bar import progress
from sweep.selection.answer import (
    ANSWER_STYLE,
    Answer,
    Objective,
    answer_html,
    build_answer,
    default_objective,
    objective_labels,
    readme_href,
    write_answer,
)
from sweep.selection.policies import usable_trials
from sweep.selection.report_display import (  # noqa: F401  (re-exported)
    correlation_grid,
    evidence_display,
    policies_display,
)
from sweep.selection.report_figures import (  # noqa: F401  (re-exported)
    chosen_by,
    completed_risks,
    plot_budget,
    plot_monitoring,
    plot_risk,
    plot_scatter,
)
from sweep.selection.report_numbers import (  # noqa: F401  (re-exported)
    METHOD_LABELS,
    METRIC_CANDIDATES,
    POOLED,
    PolicyTable,
    RISK_COLUMNS,
    RISK_COMPONENTS,
    SMALL_N,
    _missing,
    available_metrics,
    budget_curve,
    compute_policy_table,
    describe_config,
    evidence_tables,
    failures_table,
    flag_small_n,
    format_value,
    load_monitoring,
    merge_correlations,
    merged_table,
    method_label,
    metric_correlations,
    nan_metric_lines,
    policy_headline,
    policy_headlines,
    policy_notes,
    policy_summary,
    policy_table,
    prediction_lines,
    predictions_summary,
    predictions_table,
    random_b_regrets,
    random_orders,
    scatter_metrics,
)

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
    "td,th{border:1px solid #ccc;padding:2px 6px;vertical-align:top;overflow-wrap:anywhere}"
    "th{text-align:left}td.num{text-align:right}details{margin:1em 0}summary{cursor:pointer}"
    "th{background:#f3f3f3}img{max-width:100%}figure{margin:1.5em 0}figcaption{font-size:13px;color:#333;"
    "max-width:70em}ol.headline li{margin:0.3em 0;font-size:15px}"
    "dl.defs dt{font-weight:bold;margin-top:0.4em}"
    "dl.defs dd{margin-left:1.5em}.warn{color:#a40000;font-weight:bold}.scroll{overflow-x:auto;max-width:100%}"
    + ANSWER_STYLE
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


def _small_n_note(frame: pd.DataFrame) -> str:
    """'<p class="warn">12 of 36 rows ...</p>' above a correlation table with flagged rows; '' without."""
    flagged = int(frame["warning"].astype(bool).sum()) if "warning" in frame.columns else 0
    if not flagged:
        return ""
    return (f'<p class="warn">{flagged} of {len(frame)} correlations are over fewer than {SMALL_N} configs: '
            "read them as noise.</p>")


def _scroll(table: str) -> str:
    """A table inside a container that scrolls sideways, so a wide table never widens the page."""
    return f'<div class="scroll">{table}</div>'


def _table_html(frame: pd.DataFrame) -> str:
    """A table with 3 significant digits, '-' for missing values, and warnings in red."""
    text = frame.to_html(index=False, na_rep="-", float_format=format_value, escape=True)
    return _scroll(text.replace("<td>n = ", '<td class="warn">n = ').replace(' style="text-align: right;"', ""))


REGRET_NOTE = (
    "<p>Regret is this sweep's; p_within_tol is a probability over {n} random visiting orders. An "
    "order-dependent policy (e.g. {names}) can have regret 0.0 in the order shown here (trial id order) and "
    "still miss the oracle's config in other orders, hence p_within_tol &lt; 1.</p>")


def _policies_html(policies: pd.DataFrame, cfg: SelectionConfig) -> str:
    """The policies table (the 'why nothing was chosen' column only when a policy chose nothing), with a note
    when a regret of 0 sits beside p_within_tol < 1."""
    shown = policies_display(policies, cfg)
    if not shown["why nothing was chosen"].astype(bool).any():
        shown = shown.drop(columns="why nothing was chosen")
    regret = pd.to_numeric(policies["regret_pts"], errors="coerce").round(1)
    odd = policies.loc[(regret.abs() == 0) & (policies["p_within_tol"] < 1), "policy"].astype(str).tolist()
    note = REGRET_NOTE.format(n=cfg.n_orders, names=", ".join(odd)) if odd else ""
    return _table_html(shown) + note


def _correlations_html(correlations: pd.DataFrame, first: Sequence[str]) -> str:
    grid = correlation_grid(correlations, first)
    text = _scroll(grid.to_html(index=False, na_rep="-", escape=True).replace(' style="text-align: right;"', ""))
    return CORRELATION_INTRO + _small_n_note(correlations) + text.replace("unreliable</th>",
                                                                           '<span class="warn">unreliable</span></th>')



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
    answer = ('<li><a href="tables/answer.json">answer.json</a> &mdash; the answer above: the recommended '
              "config with exact values and paths, the evidence, the other policies' choices "
              "(<code>sweep best</code> reads it)</li>")
    return f"<ul>{items}{answer}</ul>"


SCATTER_CAPTION = (
    "One point per usable config: x = a label-free metric, y = test accuracy; one column per method, each "
    "with its own x-scale, titled with the Spearman rho of the panel. Points that would hide each other are "
    "nudged apart by the least that separates them (a few pixels; the tables hold the exact values). Black "
    "rings: configs a label-free policy chose; red star: the oracle's choice; "
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
    "<p>Spearman rank correlation of each label-free metric with test accuracy over the usable configs, per "
    "method and all methods pooled, with a 95% bootstrap interval (Kendall and p-values are in "
    "<code>tables/correlations.csv</code>). A positive value: higher metric, higher accuracy. The metrics the "
    f"policies read come first. Scopes over fewer than {SMALL_N} configs are marked unreliable: with so few "
    "points the sign itself is uncertain.</p>"
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


_EVIDENCE_INTRO = (
    "<p>Each policy run on each method's configs alone and on all together, over {n} random visiting orders. "
    "Regret in points against the oracle (best validation readout, reported on test). random-b reads b "
    "configs in an independent random order (b = the policy's own readouts in that order) and chooses by "
    "validation; p_vs_random = P(random-b regret &lt;= policy regret) over matched orders (one-sided; ties "
    "count against the policy; about b/N at best when the policy finds the oracle's config). Target: "
    "P(within 1 point with &lt;= ceil(log2 N)+2 readouts) &gt;= 0.9 and p_vs_random &lt; 0.05. See "
    "<code>sweep.selection.evaluate</code>.</p>"
)



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
    accuracy: str, metrics: tuple[list[str], list[str]], labels: Optional[dict[str, str]] = None,
) -> str:
    """The figures, titled and captioned, most telling first: regret vs budget, the scatter of the metrics
    the policies use (the other metrics behind a toggle), training curves (a sentence instead when there are
    none, e.g. for a metrics table)."""
    used, rest = metrics
    chosen = chosen_by(policies)
    figures = [
        _img_tag(plot_budget(curve, policies, folder / "regret_vs_budget.png"),
                 "Regret vs readout budget, against random readouts", html.escape(BUDGET_CAPTION)),
        _img_tag(plot_scatter(usable, used or rest[:3] or ["trial"], accuracy, folder / "scatter.png", chosen,
                              labels),
                 "Which configs the policies' metrics rank high", html.escape(SCATTER_CAPTION)),
    ]
    if used and rest:
        more = _img_tag(plot_scatter(usable, rest, accuracy, folder / "scatter_other_metrics.png", chosen),
                        "The other label-free metrics (no policy reads them)", html.escape(SCATTER_CAPTION))
        figures.append(f"<details><summary>{len(rest)} other label-free metrics vs accuracy (no policy reads "
                       f"them): {html.escape(', '.join(rest))}</summary>{more}</details>")
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



def _predictions_html(predictions: pd.DataFrame, level: float) -> str:
    unread = int((~predictions["read"].astype(bool)).sum()) if len(predictions) else 0
    if not unread:
        return "<p>The guided reader read every config: nothing to predict.</p>"
    items = "".join(f"<li>{html.escape(line)}</li>" for line in prediction_lines(predictions))
    return (PREDICTIONS_INTRO.format(level=level) + f"<p>Configs never read out ({unread}), best predicted "
            f"first (all in <code>tables/predictions.csv</code>):</p><ol>{items}</ol>")


@dataclass
class _Tables:
    """Every table the report shows or writes, computed once (see :func:`_compute_tables`)."""

    merged: pd.DataFrame
    usable: pd.DataFrame
    policies: pd.DataFrame
    correlations: pd.DataFrame
    spearman_ci: pd.DataFrame
    evidence: pd.DataFrame
    curve: pd.DataFrame
    monitor: pd.DataFrame
    failures: pd.DataFrame
    predicted: pd.DataFrame
    answer: Answer

    def files(self, risk: Optional[pd.DataFrame], problems: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """The tables written under ``tables/`` (CSV and parquet), by name."""
        out = {"policies": self.policies, "correlations": self.correlations, "spearman_ci": self.spearman_ci,
               "evidence": self.evidence, "budget_curve": self.curve, "trials": self.merged,
               "failures": self.failures}
        if len(self.predicted):
            out["predictions"] = self.predicted
        if risk is not None and not risk.empty:
            out["risk"] = risk
        if not problems.empty:
            out["readout_problems"] = problems
        return out


def _compute_tables(trials: pd.DataFrame, readouts: pd.DataFrame, cfg: SelectionConfig, n_boot: int,
                    monitoring: Optional[pd.DataFrame], objective: Optional[Objective], bar: Any,
                    computed: Optional[PolicyTable] = None) -> _Tables:
    """Every table once; the policy table is ``computed`` when the caller already has it (it printed it)."""
    merged = merged_table(trials, readouts)
    usable = usable_trials(merged)
    computed = computed if computed is not None else compute_policy_table(trials, readouts, cfg)
    policies, predicted_by = computed.table, computed.predictions
    bar.update()
    curve = budget_curve(trials, readouts, cfg)
    monitor = monitoring if monitoring is not None else load_monitoring(trials)
    bar.update()
    spearman_ci, evidence = evidence_tables(trials, readouts, cfg, n_boot)
    correlations = flag_small_n(merge_correlations(metric_correlations(trials, readouts, cfg.report_column),
                                                   spearman_ci))
    bar.update()
    answer = build_answer(usable, policies, objective, cfg.selection_column, cfg.report_column, evidence,
                          n_boot, cfg.seed, 100.0 * cfg.tolerance)
    return _Tables(merged, usable, policies, correlations, flag_small_n(spearman_ci), evidence, curve, monitor,
                   failures_table(trials, readouts), predictions_table(trials, predicted_by.get("guided")),
                   answer)


def _sections(t: _Tables, cfg: SelectionConfig, out: Path, n_trials: int, n_readouts: int, figures: str,
              problems: pd.DataFrame, risk_section: Optional[tuple[str, str]], table_names: Sequence[str],
              policy_metrics: Sequence[str]) -> list[tuple[str, str]]:
    """The report's sections, the answer first; a section with nothing to say is left out."""
    fmt = {"float_format": format_value, "index": False, "na_rep": "-"}
    left_out = _left_out_text(problems)
    caveats = _failure_counts(t.failures) + left_out
    return [
        ("The answer", answer_html(t.answer, readme_href(), f"sweep best {shlex.quote(str(out.resolve()))}")),
        ("What each policy chose", _headline_html(t.policies, len(t.usable), n_trials, caveats)),
        ("Definitions", _definitions_html(cfg)),
        ("Policies vs oracle", _policies_html(t.policies, cfg)),
        *([("Predicted accuracy of the configs never read out", _predictions_html(t.predicted,
                                                                                  cfg.prediction_level))]
          if len(t.predicted) else []),
        ("Figures", figures),
        *([("Readouts left out of the selection", _PROBLEMS_INTRO + _scroll(problems.to_html(**fmt)))]
          if not problems.empty else []),
        *([("Failed trials and readouts", _failures_html(t.failures))] if not t.failures.empty else []),
        ("Metric vs accuracy correlations", _correlations_html(t.correlations, policy_metrics)),
        ("Policies vs random-b, per method and pooled", _EVIDENCE_INTRO.format(n=cfg.n_orders)
         + _table_html(evidence_display(t.evidence))),
        *([risk_section] if risk_section else []),
        ("Settings", _settings_html(cfg, len(t.usable), n_trials, n_readouts, left_out)),
        ("Tables", _tables_html(list(table_names))),
    ]


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
    objective: Optional[Objective] = None,
    policies: Optional[PolicyTable] = None,
) -> Path:
    """Write ``report.html`` (figures embedded, opens offline) plus CSV/parquet tables, ``tables/answer.json``
    and PNGs under ``out_dir``; returns the HTML path. ``risk`` (``sweep.selection.risk_jobs.load_risks``) adds the
    risk decomposition section when it has rows; ``readout_problems``
    (``sweep.selection.readout_jobs.readout_problems``: trial, kind, file, reason) lists the usable trials that no
    policy could see because their readout is missing, unreadable, mismatched or failed; ``objective`` is the
    sweep's label-free objective (default: RankMe, maximised, when the table has it); ``policies``
    (``compute_policy_table`` of the same trials, readouts and ``cfg``) is the policy table the caller already
    computed, so it is not computed twice."""
    cfg = cfg or SelectionConfig()
    out = Path(out_dir)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    problems = readout_problems if readout_problems is not None else pd.DataFrame()
    objective = objective if objective is not None else default_objective(trials)
    with _progress(total=5) as bar:
        t = _compute_tables(trials, readouts, cfg, n_boot, monitoring, objective, bar, policies)
        files = t.files(risk, problems)
        for name, frame in files.items():
            _write_table(frame, out / "tables", name)
        write_answer(t.answer, out / "tables" / "answer.json")
        bar.update()
        metrics = scatter_metrics(t.usable, objective)
        figures = _figures_html(t.usable, t.curve, t.policies, t.monitor, out / "figures", cfg.report_column,
                                metrics, objective_labels(objective))
        bar.update()
        risk_section = _risk_section(risk, out, {"float_format": format_value, "index": False, "na_rep": "-"}) \
            if "risk" in files else None
        sections = _sections(t, cfg, out, len(trials), int(readouts.shape[0]), figures, problems, risk_section,
                             list(files), metrics[0])
    path = out / "report.html"
    path.write_text(_html(title, sections))
    return path

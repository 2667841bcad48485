"""The answer a researcher came for: which config to use, how far to trust it, and what the label-free
objective alone would have picked.

Why: a comparison of policies does not say "use trial 5"; a reader needs the recommended config with exact
values (so it can be run again), where its checkpoint and features are, one sentence on trust with the
evidence behind it (this sweep's rank correlation of the label-free objective with accuracy, with an interval;
the readouts spent; the README's Evidence section), and how the label-free optimum did. The numbers here are
pure functions of the report's tables; :func:`answer_lines` and :func:`answer_html` only lay them out.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from sweep.selection.evaluate import bootstrap_spearman
from sweep.selection.surrogate import HYPERPARAMETERS

# the policy whose choice is recommended first, then the fall-backs when it chose nothing (README: the guided
# reader is the one to use; ridge_reader is its metric-free baseline)
RECOMMENDED_ORDER = ("guided", "ridge_reader", "calibrated_rank", "adaptive_alpha_window", "alpha_rankme",
                     "rankme_topk", "alpha_band")
EVIDENCE_ANCHOR = "evidence-where-label-free-selection-works-and-where-it-does-not"
EVIDENCE_SUMMARY = (
    "on the 8-epoch MNIST testbed and the digits table, no policy that reads the label-free metrics alone beats "
    "random reading; the guided reader saves 1.5-6x readouts against random at equal quality and lands within "
    "1 point of the best in 64-100% of bootstrap sweeps, short of the target (savings >= 3x everywhere); "
    "trained to a plateau over the papers' axes (the converged grids), RankMe's top-k rule within one method "
    "landed within 1 point of the best with 4-5x fewer readouts than random reading, the guided reader with 2.8-4.4x")


@dataclass(frozen=True)
class Objective:
    """The label-free objective(s) a sweep optimised: display names, their columns in the trials table, and
    whether each is maximised (a study's ``objective_<i>``; for a metrics table, RankMe)."""

    names: tuple[str, ...]
    columns: tuple[str, ...]
    maximize: tuple[bool, ...]


def default_objective(trials: pd.DataFrame) -> Optional[Objective]:
    """RankMe (maximised) when the table has it: the label-free optimum a metrics table implies."""
    if "rankme" in trials.columns:
        return Objective(("rankme",), ("rankme",), (True,))
    return None


@dataclass(frozen=True)
class Pick:
    """One policy's chosen config with what it takes to use it again."""

    policy: str
    trial: int
    readouts: int
    val_accuracy: float
    test_accuracy: float
    rank: int  # by test accuracy among the read-out configs, 1 = best
    params: dict[str, Any]
    run_dir: Optional[str] = None
    checkpoint: Optional[str] = None
    features: Optional[str] = None
    detail: str = ""


@dataclass(frozen=True)
class Correlation:
    """Spearman of an objective with test accuracy, oriented so that + means "its optimum is the accurate
    end" (sign flipped for a minimised objective), with a bootstrap 95% interval."""

    name: str
    rho: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class Answer:
    """Everything the answer block says (serialised to ``tables/answer.json`` for ``sweep best``)."""

    n_configs: int  # usable configs
    n_read: int  # configs with a test readout (the ranks are among these)
    recommended: Optional[Pick]
    others: list[Pick] = field(default_factory=list)
    correlations: list[Correlation] = field(default_factory=list)
    optimum: list[Pick] = field(default_factory=list)  # the label-free optimum (the Pareto front if several)
    target_met: Optional[bool] = None
    target_text: str = ""
    tolerance_pts: float = 1.0
    oracle_test: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (picks and correlations as dicts)."""
        return asdict(self)


# ----------------------------------------------------------------------------- exact values
def exact_value(value: Any) -> str:
    """A parameter as Hydra reads it back unchanged: floats by repr (never rounded), whole floats as ints
    (an int column with a NaN elsewhere is stored as float), everything else as str."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return str(int(number)) if number.is_integer() and abs(number) < 2**53 else repr(number)
    return str(value)


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, (float, np.floating)) and math.isnan(float(value))


def exact_params(row: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's searched hyperparameters by their full name (``params_optim.lr`` -> ``optim.lr``; a metrics
    table's known hyperparameter columns as they are), NaN ones (another method's) left out."""
    study = {k.removeprefix("params_"): v for k, v in row.items() if isinstance(k, str) and k.startswith("params_")}
    chosen = study or {**({"method": row["method"]} if "method" in row else {}),
                       **{k: row[k] for k in HYPERPARAMETERS if k in row}}  # a metrics table: method too
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in chosen.items() if not _missing(v)}


def params_text(params: Mapping[str, Any]) -> str:
    """'method=simclr optim.lr=0.0004397123456789123': Hydra override syntax, exact values."""
    return " ".join(f"{k}={exact_value(v)}" for k, v in params.items())


# ----------------------------------------------------------------------------- numbers
def pareto_front(values: np.ndarray, maximize: Sequence[bool]) -> list[int]:
    """Row indices not dominated by any other row (finite rows only); one column: the best row(s)."""
    signs = np.where(np.asarray(maximize, bool), 1.0, -1.0)
    scores = np.asarray(values, float).reshape(len(values), -1) * signs
    finite = np.isfinite(scores).all(axis=1)
    front = []
    for i in np.flatnonzero(finite):
        others = scores[finite]
        dominated = ((others >= scores[i]).all(axis=1) & (others > scores[i]).any(axis=1)).any()
        if not dominated:
            front.append(int(i))
    return front


def accuracy_rank(test: Mapping[int, float], trial: int) -> int:
    """1 + the number of read-out configs with a strictly better test accuracy (0 when not read out)."""
    mine = test.get(int(trial), math.nan)
    if not math.isfinite(mine):
        return 0
    return 1 + sum(1 for v in test.values() if math.isfinite(v) and v > mine)


def objective_correlations(frame: pd.DataFrame, objective: Optional[Objective], accuracy: str,
                           n_boot: int, seed: int) -> list[Correlation]:
    """Oriented Spearman of each objective with ``accuracy`` over the usable configs, bootstrap interval."""
    if objective is None or accuracy not in frame.columns:
        return []
    y = pd.to_numeric(frame[accuracy], errors="coerce").to_numpy(float)
    out = []
    for name, column, up in zip(objective.names, objective.columns, objective.maximize, strict=True):
        if column not in frame.columns:
            continue
        x = pd.to_numeric(frame[column], errors="coerce").to_numpy(float) * (1.0 if up else -1.0)
        ci = bootstrap_spearman(x, y, n_boot, seed)
        out.append(Correlation(name if up else f"-{name}", ci.rho, ci.low, ci.high, ci.n))
    return out


def _checkpoint(run_dir: Optional[str]) -> Optional[str]:
    if not run_dir:
        return None
    path = Path(run_dir) / "checkpoints" / "last.pt"
    return str(path) if path.is_file() else None


def make_pick(policy: str, row: Mapping[str, Any], frame_row: Mapping[str, Any], test: Mapping[int, float],
              val_column: str, test_column: str) -> Pick:
    """A policy's row of the policies table plus its trial's row of the merged trials table -> a Pick."""
    trial = int(row["chosen_trial"])
    run_dir = frame_row.get("run_dir")
    run_dir = str(run_dir) if isinstance(run_dir, str) and run_dir else None
    features = frame_row.get("features")
    return Pick(policy=policy, trial=trial, readouts=int(row.get("readouts_used", 0) or 0),
                val_accuracy=float(frame_row.get(val_column, math.nan)),
                test_accuracy=float(frame_row.get(test_column, math.nan)), rank=accuracy_rank(test, trial),
                params=exact_params(frame_row), run_dir=run_dir, checkpoint=_checkpoint(run_dir),
                features=str(features) if isinstance(features, str) and features else None,
                detail=str(row.get("detail") or "") if isinstance(row.get("detail"), str) else "")


def _picks(policies: pd.DataFrame, rows: Mapping[int, Mapping[str, Any]], test: Mapping[int, float],
           val_column: str, test_column: str) -> dict[str, Pick]:
    out = {}
    for row in policies.to_dict("records"):
        if not _missing(row.get("chosen_trial")) and int(row["chosen_trial"]) in rows:
            trial = int(row["chosen_trial"])
            out[str(row["policy"])] = make_pick(str(row["policy"]), row, rows[trial], test, val_column,
                                                test_column)
    return out


def _optimum(frame: pd.DataFrame, objective: Optional[Objective], test: Mapping[int, float],
             val_column: str, test_column: str) -> list[Pick]:
    """The label-free optimum (the Pareto front of several objectives) as picks of policy 'objective'."""
    if objective is None or not set(objective.columns) <= set(frame.columns) or frame.empty:
        return []
    values = frame[list(objective.columns)].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    picks = []
    for i in pareto_front(values, objective.maximize):
        row = frame.iloc[i].to_dict()
        picks.append(make_pick("objective", {"chosen_trial": row["trial"], "readouts_used": 0}, row, test,
                               val_column, test_column))
    return sorted(picks, key=lambda p: p.trial)


def _target(evidence: Optional[pd.DataFrame], policy: Optional[str]) -> tuple[Optional[bool], str]:
    """The recommended policy's pooled row of the evidence table: target met, and the numbers behind it."""
    if evidence is None or evidence.empty or policy is None or "target_met" not in evidence.columns:
        return None, ""
    rows = evidence[evidence["policy"].astype(str) == policy]
    if rows.empty:
        return None, ""
    pooled = rows[rows["scope"].astype(str) == "pooled"]
    row = pooled.iloc[0] if len(pooled) else rows.iloc[-1]  # one method: its scope is the pooled one
    text = (f"P(within 1 pt with <= {int(row['budget'])} readouts) = {float(row['p_success']):.2f} (target 0.9), "
            f"p vs random-b = {float(row['p_vs_random']):.3f} (target < 0.05) over visiting orders of this sweep")
    return bool(row["target_met"]), text


def accuracies(frame: pd.DataFrame, column: str) -> dict[int, float]:
    """trial -> finite accuracy (empty when the column is absent: a running study without readouts)."""
    if column not in frame.columns or frame.empty:
        return {}
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(float)
    return {int(t): float(v) for t, v in zip(frame["trial"], values, strict=True) if math.isfinite(v)}


def build_answer(merged: pd.DataFrame, policies: pd.DataFrame, objective: Optional[Objective],
                 val_column: str = "val_accuracy", test_column: str = "test_accuracy",
                 evidence: Optional[pd.DataFrame] = None, n_boot: int = 1000, seed: int = 0,
                 tolerance_pts: float = 1.0) -> Answer:
    """The answer from the report's tables: ``merged`` = usable trials joined with their readouts."""
    test = accuracies(merged, test_column)
    rows = {int(r["trial"]): r for r in merged.to_dict("records")}
    picks = _picks(policies, rows, test, val_column, test_column)
    name = next((p for p in RECOMMENDED_ORDER if p in picks), None)
    others = [p for n, p in picks.items() if n != name]
    met, text = _target(evidence, name)
    oracle = picks.get("oracle")
    return Answer(n_configs=len(merged), n_read=len(test), recommended=picks.get(name) if name else None,
                  others=others, correlations=objective_correlations(merged, objective, test_column, n_boot, seed),
                  optimum=_optimum(merged, objective, test, val_column, test_column), target_met=met,
                  target_text=text, tolerance_pts=tolerance_pts,
                  oracle_test=oracle.test_accuracy if oracle else math.nan)


# ----------------------------------------------------------------------------- words
def _signal(c: Correlation) -> str:
    if not math.isfinite(c.low):
        return "cannot be judged (too few configs)"
    if c.low > 0:
        return "agrees with test accuracy"
    if c.high < 0:
        return "points away from test accuracy"
    return "shows no reliable relation with test accuracy"


def _interval(c: Correlation) -> str:
    """' [-0.61, +0.43]', or '' when the bootstrap gave none."""
    return f" [{c.low:+.2f}, {c.high:+.2f}]" if math.isfinite(c.low) else ""


def correlation_text(c: Correlation) -> str:
    """'rankme_normalized: Spearman with test accuracy -0.12 [-0.61, +0.43], n = 16'."""
    if not math.isfinite(c.rho):
        return f"{c.name}: Spearman with test accuracy undefined (n = {c.n})"
    return f"{c.name}: Spearman with test accuracy {c.rho:+.2f}{_interval(c)}, n = {c.n}"


def _optimum_words(answer: Answer) -> str:
    """'its optimum, trial 13, ranks 16 of 16 (65.2%)' / 'its optima (Pareto front) ...'."""
    if not answer.optimum:
        return "there is no label-free objective to compare"
    parts = [f"trial {p.trial} ranks {p.rank} of {answer.n_read} ({100 * p.test_accuracy:.1f}% test)" if p.rank
             else f"trial {p.trial} has no test readout" for p in answer.optimum]
    if len(parts) == 1:
        return f"its optimum, {parts[0].replace(' ranks', ', ranks', 1)}"
    return f"its optima (the Pareto front): {'; '.join(parts)}"


def optimum_within(answer: Answer) -> bool:
    """Every label-free optimum is within the tolerance of the oracle's test accuracy."""
    return bool(answer.optimum) and all(
        100 * (answer.oracle_test - p.test_accuracy) <= answer.tolerance_pts + 1e-9 for p in answer.optimum)


def verdict(answer: Answer) -> str:
    """One sentence: what to use and whether the label-free choice alone can be trusted, with its evidence."""
    pick = answer.recommended
    if pick is None:
        return "Nothing to recommend: no policy chose a config (each says why below)."
    use = (f"Use trial {pick.trial} ({pick.policy}, validated by {pick.readouts} readouts of "
           f"{answer.n_configs} configs)")
    if not answer.correlations:
        return use + "; this sweep has no label-free objective to judge."
    c = answer.correlations[0]
    trusted = math.isfinite(c.low) and c.low > 0 and optimum_within(answer)
    alone = "the label-free objective alone could be trusted here" if trusted else \
        "do not trust the label-free objective alone"
    if not math.isfinite(c.rho):
        return f"{use}; {alone}: {c.name} cannot be judged on {c.n} configs, and {_optimum_words(answer)}."
    return f"{use}; {alone}: {c.name} {_signal(c)} (Spearman {c.rho:+.2f}{_interval(c)}) and {_optimum_words(answer)}."


def features_text(pick: Pick) -> str:
    """'backbone: <run_dir>/features/{train,val,test}_backbone.npy' (the files the linear probe read)."""
    if not pick.features:
        return "-"
    if not pick.run_dir:
        return pick.features
    return f"{pick.features}: {Path(pick.run_dir) / 'features'}/{{train,val,test}}_{pick.features}.npy"


def _pick_line(p: Pick) -> str:
    return (f"{p.policy}: trial {p.trial}, {p.readouts} readouts, val {100 * p.val_accuracy:.1f}%, "
            f"test {100 * p.test_accuracy:.1f}%")


def _readme_pointer() -> str:
    readme = Path(__file__).resolve().parents[2] / "README.md"
    where = str(readme) if readme.is_file() else "README.md"
    return f"{where}, section 'Evidence: where label-free selection works and where it does not'"


def answer_lines(answer: Answer, best_command: str = "") -> list[str]:
    """The console answer: recommendation with exact values and paths, verdict, evidence, the others."""
    pick = answer.recommended
    lines = ["The answer:", f"  {verdict(answer)}"]
    if pick is not None:
        lines += [f"  recommended ({pick.policy}): trial {pick.trial}: val {100 * pick.val_accuracy:.1f}%, test "
                  f"{100 * pick.test_accuracy:.1f}% (rank {pick.rank} of {answer.n_read} read out)",
                  f"    config:     {params_text(pick.params) or '(no searched hyperparameters recorded)'}",
                  f"    run dir:    {pick.run_dir or '-'}",
                  f"    checkpoint: {pick.checkpoint or '-'}",
                  f"    features:   {features_text(pick)}"]
    lines += [f"  evidence: {correlation_text(c)}" for c in answer.correlations]
    if pick is not None and pick.detail:
        lines.append(f"  evidence: {pick.policy} {pick.detail}")
    if answer.target_met is not None:
        lines.append(f"  target met: {'yes' if answer.target_met else 'no'}: {answer.target_text}")
    lines.append(f"  evidence elsewhere: {_readme_pointer()}: {EVIDENCE_SUMMARY}")
    lines += [f"  label-free optimum alone: {_optimum_words(answer)}"] if answer.optimum else []
    lines += ["  other policies: " + "; ".join(_pick_line(p) for p in answer.others)] if answer.others else []
    if best_command and pick is not None and pick.run_dir:  # a metrics table's runs were trained elsewhere
        lines.append(f"  retrain it: {best_command}")
    return lines


ANSWER_STYLE = (".answer{border:2px solid #2a6;background:#f4fbf6;padding:0.6em 1em;margin:1em 0}"
                ".answer .verdict{font-size:16px;font-weight:bold}.answer code{word-break:break-all}"
                ".answer ul{margin:0.3em 0}")


def answer_html(answer: Answer, readme_href: str = "", best_command: str = "") -> str:
    """The answer block at the top of the report (``readme_href``: where the README's Evidence section is;
    ``best_command``: the ``sweep best`` line that writes the config to retrain the recommended trial)."""
    pick, esc = answer.recommended, html.escape
    parts = [f'<div class="answer" id="answer"><p class="verdict">{esc(verdict(answer))}</p>']
    if pick is not None:
        rows = [("config", f"<code>{esc(params_text(pick.params))}</code>"),
                ("accuracy", esc(f"val {100 * pick.val_accuracy:.1f}%, test {100 * pick.test_accuracy:.1f}% "
                                 f"(rank {pick.rank} of {answer.n_read} read out)")),
                ("run dir", f"<code>{esc(pick.run_dir or '-')}</code>"),
                ("checkpoint", f"<code>{esc(pick.checkpoint or '-')}</code>"),
                ("features read out", f"<code>{esc(features_text(pick))}</code>")]
        if best_command and pick.run_dir:
            rows.append(("retrain it", f"<code>{esc(best_command)}</code> (prints the overrides and writes a "
                                       "config for <code>sweep train</code>)"))
        parts.append(f"<p>Recommended: trial {pick.trial}, chosen by <b>{esc(pick.policy)}</b>.</p><ul>"
                     + "".join(f"<li>{k}: {v}</li>" for k, v in rows) + "</ul>")
    evidence = [esc(correlation_text(c)) + " (this sweep)" for c in answer.correlations]
    if pick is not None and pick.detail:
        evidence.append(esc(f"{pick.policy}: {pick.detail}"))
    if answer.target_met is not None:
        evidence.append(f"<b>target met: {'yes' if answer.target_met else 'no'}</b>: {esc(answer.target_text)}")
    link = f'<a href="{esc(readme_href)}">README, Evidence</a>' if readme_href else "README, Evidence section"
    evidence.append(f"{link}: {esc(EVIDENCE_SUMMARY)}")
    if answer.optimum:
        evidence.append(esc(f"label-free optimum alone: {_optimum_words(answer)}"))
    parts.append("<p>Evidence:</p><ul>" + "".join(f"<li>{e}</li>" for e in evidence) + "</ul>")
    if answer.others:
        parts.append("<p>Other policies: " + esc("; ".join(_pick_line(p) for p in answer.others)) + ".</p>")
    return "".join(parts) + "</div>"


def readme_href() -> str:
    """A file link to the checkout's README Evidence section, or '' when the package runs without it."""
    readme = Path(__file__).resolve().parents[2] / "README.md"
    return f"{readme.as_uri()}#{EVIDENCE_ANCHOR}" if readme.is_file() else ""


def write_answer(answer: Answer, path: Path) -> Path:
    """``tables/answer.json``: what ``sweep best`` reads back (NaN written as null)."""
    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    path.write_text(json.dumps(clean(answer.to_dict()), indent=1))
    return path


def objective_labels(objective: Optional[Objective]) -> dict[str, str]:
    """Column -> display name of the objectives stored under another column name (``objective_0``)."""
    if objective is None:
        return {}
    return {c: n for c, n in zip(objective.columns, objective.names, strict=True) if c != n}


def _pick_from(data: Optional[Mapping[str, Any]]) -> Optional[Pick]:
    if not data:
        return None
    values = {k: (math.nan if v is None and k.endswith("accuracy") else v) for k, v in data.items()}
    return Pick(**values)


def read_answer(path: Path) -> Answer:
    """``tables/answer.json`` back as an :class:`Answer` (nulls back to NaN)."""
    data = json.loads(Path(path).read_text())
    return Answer(
        n_configs=int(data["n_configs"]), n_read=int(data["n_read"]), recommended=_pick_from(data["recommended"]),
        others=[p for p in map(_pick_from, data["others"]) if p is not None],
        correlations=[Correlation(**{k: (math.nan if v is None else v) for k, v in c.items()})
                      for c in data["correlations"]],
        optimum=[p for p in map(_pick_from, data["optimum"]) if p is not None],
        target_met=data.get("target_met"), target_text=data.get("target_text", ""),
        tolerance_pts=float(data.get("tolerance_pts", 1.0)),
        oracle_test=math.nan if data.get("oracle_test") is None else float(data["oracle_test"]))

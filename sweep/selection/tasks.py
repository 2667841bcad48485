"""Several tasks in one metrics table (one sweep per dataset): one report per task and an index over them.

Why: pooling two datasets as if they were methods of one task makes the "oracle" the easiest dataset and every
regret meaningless; a task is its own sweep, selected and judged alone.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Optional

import pandas as pd

from sweep.config.schema import SelectionConfig
from sweep.selection.report import _html, build_report, compute_policy_table, policy_headlines


def task_folder(task: str) -> str:
    """A folder name for a task: letters, digits, '-', '_' and '.' kept, the rest '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(task)).strip("._") or "task"


def task_frames(trials: pd.DataFrame, readouts: pd.DataFrame) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """(task, trials, readouts) per value of the ``task`` column, sorted by task."""
    out = []
    for task, rows in trials.groupby("task", sort=True):
        out.append((str(task), rows.reset_index(drop=True), readouts[readouts["trial"].isin(rows["trial"])]))
    return out


def build_task_reports(trials: pd.DataFrame, readouts: pd.DataFrame, out_dir: str | Path,
                       cfg: Optional[SelectionConfig] = None, title: str = "Label-free selection") -> Path:
    """``<out>/<task>/report.html`` per task (each a full report on that task's rows alone), and
    ``<out>/report.html`` with one section per task: what each policy chose there, and a link."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sections = []
    for task, rows, reads in task_frames(trials, readouts):
        folder = task_folder(task)
        policies = compute_policy_table(rows, reads, cfg)  # once: the task's report and the index both show it
        report = build_report(rows, reads, out / folder, cfg, title=f"{title}: task {task}", policies=policies)
        items = "".join(f"<li>{html.escape(line)}</li>" for line in policy_headlines(policies.table))
        link = html.escape(str(report.relative_to(out)))
        sections.append((f"Task {task}", f'<p>{len(rows)} trials; <a href="{link}">full report</a>, selection '
                         f'and oracle within this task only.</p><ol class="headline">{items}</ol>'))
    path = out / "report.html"
    path.write_text(_html(title, sections))
    return path

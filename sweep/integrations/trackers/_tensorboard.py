"""``tracking.kind=tensorboard``: event files through torch's ``SummaryWriter``, one folder per trial.

Layout: ``<uri>/<experiment>/<trial number or run dir name>/`` holds the run's curves (one scalar per metric
and monitoring epoch) and its config as text; after the trial is told, the study adds the searched params and
objective values there with ``add_hparams`` (TensorBoard's HParams tab compares trials);
``<uri>/<experiment>/selection/`` holds the policy table. ``tensorboard --logdir <uri>`` shows them all.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from sweep.integrations.trackers.base import TRACKERS, RunLog, Tracker, TrackingError, numbers_of, safe_name

if TYPE_CHECKING:
    import optuna
    import pandas as pd

SELECTION_FOLDER = "selection"


@TRACKERS.register("tensorboard")
class TensorBoardTracker(Tracker):
    requires = ("tensorboard",)  # torch.utils.tensorboard writes through it

    @classmethod
    def default_uri(cls, base: Path) -> str:
        return str(base / "tensorboard")

    @classmethod
    def resolve_uri(cls, uri: str, base: Path) -> str:
        if "://" in uri:
            raise TrackingError(f"tracking.uri={uri!r}: tensorboard logs to a local folder (a path)")
        return str((base / uri).resolve())

    def folder(self, name: str) -> Path:
        """``<uri>/<experiment>/<name>``: one TensorBoard run."""
        return Path(self.settings.uri) / safe_name(self.settings.experiment) / safe_name(name)

    def log_run(self, run: RunLog) -> dict[str, Any]:
        folder = self.folder(run.name)
        with _writer(folder) as writer:
            for step, row in run.curves:
                for key, value in row.items():
                    writer.add_scalar(key, value, global_step=step)
            writer.add_text("config", _code(json.dumps(run.params, indent=1, sort_keys=True)))
            writer.add_text("status", _code(json.dumps(run.tags, indent=1, sort_keys=True)))
        return {"kind": self.settings.kind, "log_dir": str(folder)}

    def log_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, objectives: Sequence[str],
                  link: Mapping[str, Any]) -> None:
        folder = Path(link.get("log_dir") or self.folder(str(trial.number)))
        hparams = {k: _hparam(v) for k, v in trial.params.items()}
        metrics = dict(zip(objectives, trial.values or []))
        with _writer(folder) as writer:  # run_name ".": the trial's own folder, beside its curves
            writer.add_hparams(hparams, metrics, run_name=".")

    def log_selection(self, policies: pd.DataFrame, report_dir: Optional[Path]) -> dict[str, Any]:
        folder = self.folder(SELECTION_FOLDER)
        with _writer(folder) as writer:
            for i, row in enumerate(policies.to_dict("records")):
                for key, value in numbers_of(row).items():
                    writer.add_scalar(safe_name(f"{row.get('policy', i)}/{key}"), value, global_step=0)
            writer.add_text("policies", _markdown(policies))
            if report_dir is not None:
                writer.add_text("report", f"report: {report_dir}")
        return {"kind": self.settings.kind, "log_dir": str(folder)}


def _writer(folder: Path) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(folder))


def _hparam(value: Any) -> Any:
    """HParams take bool, int, float or str: anything else (None, a list) as its text."""
    return value if isinstance(value, (bool, int, float, str)) else str(value)


def _code(text: str) -> str:
    """Markdown code block: TensorBoard's text tab renders markdown."""
    return "```\n" + text + "\n```"


def _markdown(frame: pd.DataFrame) -> str:
    """The table as a markdown table (TensorBoard's text tab renders it)."""
    cells = [[str(c) for c in frame.columns]] + [["" if v is None else str(v) for v in row]
                                                  for row in frame.astype(object).itertuples(index=False)]
    lines = ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in cells]
    lines.insert(1, "|" + " --- |" * len(frame.columns))
    return "\n".join(lines)

"""``tracking.kind=mlflow``: one MLflow run per trial in the experiment named after the study.

The train job logs the run through ``MlflowClient`` (its config as params, one metric point per monitoring
epoch, config.yaml / monitor.csv / result.json as artifacts); after the trial is told, optuna-integration's
``MLflowCallback`` adds the searched params, the objective values and the trial's state as tags to that same run
(it reopens the run whose id the trial's ``mlflow_run_id`` system attr holds, its own link for this). A selection
is one more run, ``selection``. Stores: SQLite (the default, ``sqlite:///<cwd>/mlflow.db``, artifacts in
``mlartifacts/`` beside it), any database MLflow supports, or a tracking server (``http(s)://``).
"""
from __future__ import annotations

import os
import re
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from sweep.integrations.trackers.base import (
    TRACKERS,
    RunLog,
    Tracker,
    TrackingError,
    numbers_of,
    safe_name,
)
from sweep.safety import redact_text

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    from mlflow import MlflowClient

# the record's status / the trial's state -> MLflow's run status
RUN_STATUS = {"completed": "FINISHED", "pruned": "KILLED", "failed": "FAILED"}
TRIAL_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
SELECTION_RUN = "selection"
ARTIFACTS_DIR = "mlartifacts"
_SQLITE = re.compile(r"^sqlite:///(?!/)(?P<path>.+)$")  # sqlite:///relative/path.db (4 slashes: absolute)
# A sweep tool must not report on its users by default: MLflow's usage telemetry stays off unless the user
# sets MLFLOW_DISABLE_TELEMETRY=false (MLflow reads it when it starts its telemetry client, after this import).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@TRACKERS.register("mlflow")
class MLflowTracker(Tracker):
    requires = ("mlflow", "optuna_integration")

    @classmethod
    def default_uri(cls, base: Path) -> str:
        return f"sqlite:///{base / 'mlflow.db'}"

    @classmethod
    def resolve_uri(cls, uri: str, base: Path) -> str:
        """A relative SQLite path made absolute; a bare folder refused (MLflow 3 refuses its file store)."""
        if "://" not in uri or uri.startswith("file:"):
            raise TrackingError(f"tracking.uri={uri!r}: a folder is MLflow's file store, which MLflow 3 refuses; "
                                f"use a database, e.g. tracking.uri=sqlite:///{Path(uri) / 'mlflow.db'}")
        match = _SQLITE.match(uri)
        if match and match["path"] != ":memory:":
            return f"sqlite:///{(base / match['path']).resolve()}"
        return uri

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client: Optional[MlflowClient] = None
        self._experiment_id: Optional[str] = None

    # ------------------------------------------------------------------ store
    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.settings.uri)
        return self._client

    def experiment_id(self) -> str:
        """The experiment's id, created on first use (artifacts beside a SQLite store, not in the cwd); two
        jobs creating it at once both end up with the one that won."""
        if self._experiment_id is None:
            from mlflow.exceptions import MlflowException

            name = self.settings.experiment
            found = self.client.get_experiment_by_name(name)
            if found is None:
                try:
                    self.client.create_experiment(name, artifact_location=self._artifact_location())
                except MlflowException:
                    if self.client.get_experiment_by_name(name) is None:
                        raise
                found = self.client.get_experiment_by_name(name)
            assert found is not None
            self._experiment_id = str(found.experiment_id)
        return self._experiment_id

    def _artifact_location(self) -> Optional[str]:
        """``<store dir>/mlartifacts/<experiment>`` for a SQLite store; None (the server's choice) otherwise."""
        match = re.match(r"^sqlite:///(?P<path>/.+)$", self.settings.uri)
        if match is None:
            return None
        return (Path(match["path"]).parent / ARTIFACTS_DIR / safe_name(self.settings.experiment)).as_uri()

    def prepare(self) -> None:
        self.experiment_id()

    # ------------------------------------------------------------------ the three steps
    def log_run(self, run: RunLog) -> dict[str, Any]:
        from mlflow.entities import Metric, Param

        client, run_id = self.client, self._new_run(run.name, run.tags)
        for chunk in _chunks([Param(k, _limit(v)) for k, v in run.params.items()], _max("PARAMS_TAGS")):
            client.log_batch(run_id, params=chunk)
        stamp = _now_ms()
        metrics = [Metric(k, v, stamp, step) for step, row in run.curves for k, v in row.items()]
        for chunk in _chunks(metrics, _max("METRICS")):
            client.log_batch(run_id, metrics=chunk)
        for path in run.files:
            client.log_artifact(run_id, str(path))
        client.log_dict(run_id, run.record, "result.json")
        client.set_terminated(run_id, RUN_STATUS.get(run.status, "FINISHED"))
        return self._link(run_id)

    def log_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, objectives: Sequence[str],
                  link: Mapping[str, Any]) -> None:
        import mlflow
        from optuna_integration.mlflow.mlflow import RUN_ID_ATTRIBUTE_KEY  # the link the callback reads

        if link.get("run_id"):  # into the job's run (in memory only: the told trial is not updatable)
            trial.system_attrs = {**trial.system_attrs, RUN_ID_ATTRIBUTE_KEY: link["run_id"]}
        self._callback(objectives)(study, trial)
        last = mlflow.last_active_run()
        run_id = link.get("run_id") or (last.info.run_id if last is not None else None)
        if run_id and trial.state.name in TRIAL_STATUS:  # the callback ends every run FINISHED
            self.client.set_terminated(run_id, TRIAL_STATUS[trial.state.name])

    def log_selection(self, policies: pd.DataFrame, report_dir: Optional[Path]) -> dict[str, Any]:
        from mlflow.entities import Metric

        run_id = self._new_run(SELECTION_RUN, {"sweep.kind": "selection"})
        stamp = _now_ms()
        metrics = [Metric(safe_name(f"{row.get('policy', i)}/{k}"), v, stamp, 0)
                   for i, row in enumerate(policies.to_dict("records")) for k, v in numbers_of(row).items()]
        for chunk in _chunks(metrics, _max("METRICS")):
            self.client.log_batch(run_id, metrics=chunk)
        self.client.log_text(run_id, policies.to_csv(index=False), "selection/policies.csv")
        if report_dir is not None and Path(report_dir).is_dir():
            self.client.log_artifacts(run_id, str(report_dir), "report")
        self.client.set_terminated(run_id)
        return self._link(run_id)

    # ------------------------------------------------------------------ helpers
    def _new_run(self, name: str, tags: Mapping[str, str]) -> str:
        return str(self.client.create_run(self.experiment_id(), run_name=name, tags=dict(tags)).info.run_id)

    def _link(self, run_id: str) -> dict[str, Any]:
        s = self.settings
        return {"kind": s.kind, "uri": redact_text(s.uri), "experiment": s.experiment, "run_id": run_id}

    def _callback(self, objectives: Sequence[str]) -> Any:
        """optuna-integration's MLflowCallback on this store and experiment. It is deprecated since 4.9 (to move
        to OptunaHub; removed in 6.0, hence the pin <6): the warning says nothing a user can act on."""
        from optuna.exceptions import ExperimentalWarning
        from optuna_integration.mlflow import MLflowCallback

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", (FutureWarning, ExperimentalWarning))
            return MLflowCallback(tracking_uri=self.settings.uri, metric_name=list(objectives),
                                  create_experiment=False, mlflow_kwargs={"experiment_id": self.experiment_id()})


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _max(kind: str) -> int:
    """MLflow's per-call limit (``MAX_PARAMS_TAGS_PER_BATCH``, ``MAX_METRICS_PER_BATCH``)."""
    from mlflow.utils import validation

    return int(getattr(validation, f"MAX_{kind}_PER_BATCH"))


def _limit(value: str) -> str:
    """A param value within MLflow's length limit (a long list in the config)."""
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    return value if len(value) <= MAX_PARAM_VAL_LENGTH else value[:MAX_PARAM_VAL_LENGTH - 3] + "..."


def _now_ms() -> int:
    return int(time.time() * 1000)

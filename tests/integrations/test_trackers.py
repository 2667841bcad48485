"""Experiment trackers, for real: a tiny train job and a tiny sweep log to MLflow (SQLite store) and TensorBoard
event files, and the tests read back what landed with each backend's own reader (MLflow's client
``search_runs`` / ``get_metric_history``, TensorBoard's ``EventAccumulator``): exact params, curve lengths and
values, objective values, the selection table. Skipped as a whole without the ``trackers`` extra."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pytest.importorskip("mlflow", reason="the trackers extra: pip install -e '.[trackers]'")
pytest.importorskip("tensorboard", reason="the trackers extra: pip install -e '.[trackers]'")
pytest.importorskip("optuna_integration", reason="the trackers extra: pip install -e '.[trackers]'")

import optuna  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData  # noqa: E402

from sweep.config import compose_train_config  # noqa: E402
from sweep.integrations.trackers import TRACKERS, TrackingError, log_selection, open_tracker  # noqa: E402
from sweep.integrations.trackers.base import ENV_STUDY, ENV_TRIAL_NUMBER, flat_params  # noqa: E402
from sweep.registry import UnknownNameError  # noqa: E402
from sweep.train import job  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TINY = ["experiment=tiny", "epochs=2", "data.max_train_samples=300", "data.max_test_samples=120",
        "data.monitor_size=48", "batch_size=64", "save_features=false"]
KINDS = ("mlflow", "tensorboard")
# a policy table as sweep.selection.report_numbers.policy_table returns it (ids Int64, a NaN, text columns)
POLICIES = pd.DataFrame({
    "policy": ["rankme_top", "oracle"], "readouts_used": [3, 16],
    "chosen_trial": pd.array([4, 7], dtype="Int64"), "chosen_params": ["lr 0.004", "lr 0.001"],
    "val_accuracy": [0.81, 0.86], "test_accuracy": [0.80, 0.85], "regret_pts": [5.0, 0.0],
    "p_within_tol": [0.25, math.nan], "note": [None, "reads every config"],
})


def _uri(kind: str, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}" if kind == "mlflow" else str(tmp_path / "tb")


def _params_of(record: dict[str, Any]) -> dict[str, str]:
    config = {k: v for k, v in record["config"].items() if k not in ("tracking", "run_dir")}
    return flat_params(config)


def _experiment(client: MlflowClient, name: str) -> Any:
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None, f"no MLflow experiment {name!r}"
    return experiment


def _events(folder: Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def _tb_text(acc: EventAccumulator, tag: str) -> str:
    return acc.Tensors(f"{tag}/text_summary")[0].tensor_proto.string_val[0].decode()


def _tb_hparams(acc: EventAccumulator) -> dict[str, Any]:
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    values = HParamsPluginData.FromString(content).session_start_info.hparams
    return {k: getattr(v, v.WhichOneof("kind")) for k, v in values.items()}


# ----------------------------------------------------------------------------- settings
def test_registry_names_every_backend() -> None:
    assert {"none", "mlflow", "tensorboard"} <= set(TRACKERS.names())


def test_a_new_tracker_is_one_registered_class(tmp_path: Path) -> None:
    """The extension point W&B would use: a subclass registered under a name is a valid ``tracking.kind``."""
    from sweep.integrations.trackers import RunLog, Tracker

    class Memory(Tracker):
        runs: list[RunLog] = []

        def log_run(self, run: RunLog) -> dict[str, Any]:
            self.runs.append(run)
            return {"kind": "memory", "n": len(self.runs)}

        def log_trial(self, study: Any, trial: Any, objectives: Any, link: Any) -> None:
            return None

        def log_selection(self, policies: Any, report_dir: Any) -> dict[str, Any]:
            return {}

    TRACKERS.register("memory", Memory)
    try:
        record = {"status": "completed", "config": {"optim": {"lr": 0.01}, "tracking": {"kind": "memory"}},
                  "monitor": [{"epoch": 1, "rankme": 2.0, "alpha": None}, {"epoch": 2, "rankme": 3.0}]}
        assert open_tracker({"kind": "memory"}).log_record(record, tmp_path) == {"tracking": {"kind": "memory", "n": 1}}
        run = Memory.runs[0]
        assert run.params == {"optim.lr": "0.01"} and run.curves == [(1, {"rankme": 2.0}), (2, {"rankme": 3.0})]
    finally:
        TRACKERS.unregister("memory")


def test_unknown_kind_names_the_field_and_allowed_values() -> None:
    with pytest.raises(UnknownNameError) as err:
        open_tracker({"kind": "mlfow"})
    assert str(err.value).startswith("tracking.kind='mlfow': unknown tracker; allowed [")
    assert "'tensorboard'" in str(err.value) and "did you mean 'mlflow'?" in str(err.value)


def test_password_in_uri_is_refused_and_never_shown() -> None:
    with pytest.raises(TrackingError) as err:
        open_tracker({"kind": "mlflow", "uri": "postgresql://me:s3cr3t-pw@db.example/mlflow"})
    assert "s3cr3t-pw" not in str(err.value)
    assert "tracking.uri='postgresql://me:***@db.example/mlflow'" in str(err.value)


def test_uris_are_resolved_against_the_launch_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert open_tracker({"kind": "mlflow"}).settings.uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert open_tracker({"kind": "mlflow", "uri": "sqlite:///a/m.db"}).settings.uri == f"sqlite:///{tmp_path}/a/m.db"
    assert open_tracker({"kind": "tensorboard", "uri": "tb"}).settings.uri == str(tmp_path / "tb")
    with pytest.raises(TrackingError, match="file store"):
        open_tracker({"kind": "mlflow", "uri": "mlruns"})


def test_trial_environment_names_match_the_study_layer() -> None:
    from sweep.study import pruning

    assert (ENV_STUDY, ENV_TRIAL_NUMBER) == (pruning.ENV_STUDY, pruning.ENV_TRIAL_NUMBER)


@pytest.mark.slow
def test_a_bad_kind_stops_the_job_before_it_trains(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="tracking.kind"):
        job.train(compose_train_config([*TINY, "tracking.kind=wandb"], run_dir=tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_an_unreachable_tracker_is_a_warning_not_a_failed_run(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    tracker = open_tracker({"kind": "mlflow", "uri": "http://127.0.0.1:9"})  # discard port: nothing listens
    link = tracker.log_record({"status": "completed", "config": {"a": 1}, "monitor": []}, tmp_path)
    assert link["tracking"]["kind"] == "mlflow" and link["tracking"]["error"]


# ----------------------------------------------------------------------------- one train job
@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_train_job_logs_config_and_every_epoch(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    cfg = compose_train_config([*TINY, f"tracking.kind={kind}", f"tracking.uri={_uri(kind, tmp_path)}"],
                               run_dir=run_dir)
    record = job.train(cfg)
    assert record["status"] == "completed" and len(record["monitor"]) == 2
    saved = json.loads((run_dir / "result.json").read_text())
    assert saved["tracking"] == record["tracking"] and "error" not in record["tracking"]
    if kind == "mlflow":
        _check_mlflow_run(tmp_path, record)
    else:
        _check_tensorboard_run(Path(record["tracking"]["log_dir"]), record)


def _check_mlflow_run(tmp_path: Path, record: dict[str, Any]) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([_experiment(client, "sweep").experiment_id])
    assert [r.info.run_id for r in runs] == [record["tracking"]["run_id"]]
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params == _params_of(record)
    assert run.data.params["optim.lr"] == "0.001" and run.data.params["epochs"] == "2"
    for metric in ("rankme", "alpha", "loss"):
        history = client.get_metric_history(run.info.run_id, metric)
        assert [(m.step, m.value) for m in history] == [(row["epoch"], row[metric]) for row in record["monitor"]]
    assert run.data.tags["sweep.status"] == "completed"
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"config.yaml", "monitor.csv", "result.json"}
    assert artifact_location_beside(client, tmp_path)


def artifact_location_beside(client: MlflowClient, tmp_path: Path) -> bool:
    """Artifacts land beside the SQLite store, not in whatever directory the job ran in."""
    return _experiment(client, "sweep").artifact_location == (tmp_path / "mlartifacts" / "sweep").as_uri()


def _check_tensorboard_run(folder: Path, record: dict[str, Any]) -> None:
    assert folder == Path(os.getcwd()) / "tb" / "sweep" / "run"
    acc = _events(folder)
    for metric in ("rankme", "alpha", "loss"):
        points = acc.Scalars(metric)
        assert [p.step for p in points] == [row["epoch"] for row in record["monitor"]]
        assert [p.value for p in points] == pytest.approx([row[metric] for row in record["monitor"]], rel=1e-6)
    assert json.loads(_tb_text(acc, "config").strip("`\n")) == _params_of(record)


# ----------------------------------------------------------------------------- a sweep
def _sweep(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    keys = {o.split("=")[0] for o in overrides}
    base = [o for o in TINY if o.split("=")[0] not in keys]  # an override given here replaces TINY's
    cmd = [sys.executable, "-m", "sweep.train.job", "-m", *base, "hydra/sweeper=rankme_alpha", "+search_space=tiny",
           "hydra/launcher=sweep_inprocess", "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.seed=0",
           f"hydra.sweeper.storage=sqlite:///{tmp_path / 'study.db'}", "hydra.sweeper.study_name=tracked",
           f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides]
    env = dict(os.environ, OMP_NUM_THREADS="1", SWEEP_PROGRESS="0")
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def _study(tmp_path: Path) -> optuna.Study:
    return optuna.load_study(study_name="tracked", storage=f"sqlite:///{tmp_path / 'study.db'}")


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_sweep_logs_each_trial_params_objectives_and_curves(kind: str, tmp_path: Path) -> None:
    features = ["save_features=true"] if kind == "tensorboard" else []  # `sweep select` reads them out
    proc = _sweep(tmp_path, f"tracking.kind={kind}", f"tracking.uri={_uri(kind, tmp_path)}", *features)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not logged" not in proc.stderr, proc.stderr[-3000:]
    study = _study(tmp_path)
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 2
    assert study.user_attrs["tracking"] == {"kind": kind, "uri": _uri(kind, tmp_path), "experiment": "tracked"}
    if kind == "mlflow":
        _check_mlflow_sweep(tmp_path, trials)
    else:
        _check_tensorboard_sweep(tmp_path, trials)
    if kind == "mlflow":  # the selection pipeline's call: the settings the sweep kept put it beside the trials
        link = log_selection(POLICIES, study.user_attrs["tracking"], study_name=study.study_name)
        client = MlflowClient(_uri(kind, tmp_path))
        experiment = _experiment(client, "tracked").experiment_id
        assert client.get_run(link["run_id"]).info.experiment_id == experiment
    else:  # the real `sweep select` logs its policy table there by itself
        select = _select(tmp_path)
        assert select.returncode == 0, select.stderr[-3000:]
        folder = tmp_path / "tb" / "tracked" / "selection"
        assert f"log_dir {folder}" in select.stdout
        policies = pd.read_csv(tmp_path / "sweep" / "report" / "tables" / "policies.csv")
        logged = _events(folder)
        assert {tag.split("/")[0] for tag in logged.Tags()["scalars"]} >= set(policies["policy"].astype(str))


def _select(tmp_path: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "sweep.cli", "select", "--storage", f"sqlite:///{tmp_path / 'study.db'}",
           "--study", "tracked", "--sweep-dir", str(tmp_path / "sweep"), "--launcher", "inprocess"]
    env = dict(os.environ, OMP_NUM_THREADS="1", SWEEP_PROGRESS="0")
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def _check_mlflow_sweep(tmp_path: Path, trials: list[optuna.trial.FrozenTrial]) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = {r.info.run_name: r for r in client.search_runs([_experiment(client, "tracked").experiment_id])}
    assert sorted(runs) == sorted(str(t.number) for t in trials)  # one run per trial: job and study share it
    for trial in trials:
        run = runs[str(trial.number)]
        assert {k: run.data.params[k] for k in trial.params} == {k: str(v) for k, v in trial.params.items()}
        assert run.data.metrics["objective/rankme"] == trial.values[0]
        assert run.data.metrics["objective/_alpha-1_"] == trial.values[1]
        assert run.data.tags["state"] == "COMPLETE" and run.data.tags["sweep.trial_number"] == str(trial.number)
        assert len(client.get_metric_history(run.info.run_id, "rankme")) == 2  # epochs
        assert run.info.status == "FINISHED"


def _check_tensorboard_sweep(tmp_path: Path, trials: list[optuna.trial.FrozenTrial]) -> None:
    for trial in trials:
        acc = _events(tmp_path / "tb" / "tracked" / str(trial.number))
        assert _tb_hparams(acc) == pytest.approx(trial.params)
        assert [p.step for p in acc.Scalars("rankme")] == [1, 2]
        assert acc.Scalars("objective/rankme")[0].value == pytest.approx(trial.values[0], rel=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_pruned_and_crashed_trials_keep_their_state(kind: str, tmp_path: Path) -> None:
    """A pruned trial's run (its job logged it) ends KILLED, not the FINISHED the callback leaves; a trial whose
    job logged nothing (it crashed) still gets a run with its params and state."""
    from sweep.integrations.trackers import RunLog, StudyTracking

    tracking = {"kind": kind, "uri": _uri(kind, tmp_path)}
    study = optuna.create_study(study_name="units", storage=f"sqlite:///{tmp_path / 'study.db'}")
    study.set_user_attr("objectives", ["rankme"])
    hook = StudyTracking.for_sweep({"tracking": tracking}, study)
    pruned, crashed = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}), study.ask()
    link = hook.tracker.log_run(RunLog("0", "pruned", {"optim.lr": "0.01"}, [(1, {"rankme": 3.0})], {}, {}, []))
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    study.tell(crashed, state=optuna.trial.TrialState.FAIL)
    hook.trial_finished(study, 0, {"tracking": link})
    hook.trial_finished(study, 1, None)
    if kind == "mlflow":
        client = MlflowClient(tracking["uri"])
        found = client.search_runs([_experiment(client, "units").experiment_id])
        runs = {r.info.run_name: r for r in found}
        assert len(found) == 2 and runs["0"].info.run_id == link["run_id"]  # the callback reused the job's run
        assert (runs["0"].info.status, runs["0"].data.tags["state"]) == ("KILLED", "PRUNED")
        assert runs["0"].data.params == {"optim.lr": "0.01", "lr": str(pruned.params["lr"])}
        assert (runs["1"].info.status, runs["1"].data.tags["state"]) == ("FAILED", "FAIL")
    else:
        for number, trial in enumerate(study.trials):
            assert _tb_hparams(_events(tmp_path / "tb" / "units" / str(number))) == pytest.approx(trial.params)


@pytest.mark.slow
def test_sweep_with_a_bad_kind_is_a_one_line_config_error(tmp_path: Path) -> None:
    proc = _sweep(tmp_path, "tracking.kind=mlfow")
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = "[sweep] config error: tracking.kind='mlfow': unknown tracker; allowed ["
    assert line in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "sweep" / "0").exists()


# ----------------------------------------------------------------------------- selection
@pytest.mark.parametrize("kind", KINDS)
def test_selection_table_is_logged(kind: str, tmp_path: Path) -> None:
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.html").write_text("<html></html>")
    tracking = {"kind": kind, "uri": _uri(kind, tmp_path), "experiment": "tracked"}
    link = log_selection(POLICIES, tracking, study_name="tracked", report_dir=report)
    assert "error" not in link, link
    if kind == "mlflow":
        client = MlflowClient(tracking["uri"])
        run = client.get_run(link["run_id"])
        assert run.info.run_name == "selection"
        assert run.data.metrics["rankme_top/chosen_trial"] == 4 and run.data.metrics["oracle/regret_pts"] == 0.0
        assert "oracle/p_within_tol" not in run.data.metrics  # NaN: not a number to plot
        table = pd.read_csv(client.download_artifacts(link["run_id"], "selection/policies.csv", str(tmp_path)))
        assert table["policy"].tolist() == ["rankme_top", "oracle"]
        assert [a.path for a in client.list_artifacts(link["run_id"], "report")] == ["report/report.html"]
    else:
        acc = _events(Path(link["log_dir"]))
        assert acc.Scalars("rankme_top/readouts_used")[0].value == 3
        assert "| rankme_top | 3 | 4 | lr 0.004 |" in _tb_text(acc, "policies")


def test_selection_without_tracking_logs_nothing() -> None:
    assert log_selection(POLICIES, None, study_name="tracked") == {}
    assert log_selection(POLICIES, {"kind": "none"}) == {}
    unusable = log_selection(POLICIES, {"kind": "mlflow", "uri": "mlruns"})  # a setting this MLflow refuses
    assert "file store" in unusable["error"]

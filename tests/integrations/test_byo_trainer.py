"""Bring your own trainer: the label-free monitor, the reporter handed to any job, plain-dict task returns, and
the plain PyTorch example swept end to end (pruning, readouts from the record's feature files; the
README's commands run in tests/test_readme_commands.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sweep.integrations import LabelFreeMonitor
from sweep.launch.outcome import PRUNED, outcome_from_return
from sweep.metrics import spectral_metrics
from sweep.reporting import (
    as_record,
    current_reporter,
    pruned_record,
    use_reporter,
)
from sweep.study.results import METRIC_PREFIX

ROOT = Path(__file__).resolve().parents[2]
APPS = ROOT / "tests" / "apps"


# ----------------------------------------------------------------------------- data with known answers
def rank_k(n: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    """(n, d) with k equal non-zero singular values: RankMe = k."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.normal(size=(n, k)))
    v, _ = np.linalg.qr(rng.normal(size=(d, k)))
    return 3.0 * u @ v.T


class PruneFrom:
    """Stands in for the sweep's reporter: objective = RankMe, the pruner says stop from ``step`` on."""

    def __init__(self, step: int) -> None:
        self.step, self.seen = step, []

    def report(self, value: float, step: int) -> bool:
        return step >= self.step

    def report_metrics(self, metrics: dict[str, Any], step: int) -> float | None:
        self.seen.append(step)
        return float(metrics["rankme"]) if self.report(float(metrics["rankme"]), step) else None


def stream(monitor: LabelFreeMonitor, z: np.ndarray, x: np.ndarray | None = None, batch: int = 50) -> None:
    for start in range(0, len(z), batch):
        zb = torch.tensor(z[start : start + batch], dtype=torch.float32, requires_grad=True)  # detached inside
        monitor.update(zb, None if x is None else torch.tensor(x[start : start + batch]))


# ----------------------------------------------------------------------------- the monitor
def test_monitor_streams_the_metrics_of_the_whole_set(tmp_path: Path) -> None:
    z, x = rank_k(240, 16, 3), np.random.default_rng(1).normal(size=(240, 32)) ** 3
    monitor = LabelFreeMonitor(tmp_path)
    stream(monitor, z, x)
    row = monitor.end_epoch(1, loss=0.25)
    assert row["rankme"] == pytest.approx(3.0, abs=1e-4)
    assert row["rankme_normalized"] == pytest.approx(row["rankme"] / 16)
    assert row["alpha"] == pytest.approx(spectral_metrics(x)["alpha"], rel=1e-9)  # backbone, in any batch split
    assert row["stable_rank"] == pytest.approx(spectral_metrics(x)["stable_rank"], rel=1e-9)
    assert row["loss"] == 0.25 and row["epoch"] == 1
    assert (tmp_path / "monitor.csv").read_text().count("\n") == 2
    assert not monitor.should_stop and monitor.reporter is None  # outside a sweep nothing is reported


def test_each_epoch_scores_only_its_own_rows(tmp_path: Path) -> None:
    monitor = LabelFreeMonitor(tmp_path)
    stream(monitor, rank_k(200, 16, 3))
    monitor.end_epoch(1)
    stream(monitor, rank_k(200, 16, 5))
    assert monitor.end_epoch(2)["rankme"] == pytest.approx(5.0, abs=1e-4)
    assert [r["epoch"] for r in monitor.history] == [1, 2]


def test_without_backbone_features_alpha_comes_from_z(tmp_path: Path) -> None:
    z = np.random.default_rng(2).normal(size=(300, 24)) ** 3
    monitor = LabelFreeMonitor(tmp_path)
    stream(monitor, z)
    row = monitor.end_epoch(1)
    expected = spectral_metrics(z.astype(np.float32))["alpha"]  # stream() hands z over as float32
    assert row["alpha"] == pytest.approx(expected, rel=1e-9) and row["alpha_projector"] == row["alpha"]
    assert "rankme_backbone" not in row


def test_injected_reporter_prunes_and_the_record_says_so(tmp_path: Path) -> None:
    reporter = PruneFrom(step=2)
    with use_reporter(reporter):
        monitor = LabelFreeMonitor(tmp_path)  # picks up the reporter the launcher handed the trial
    epochs = 0
    for epoch in range(1, 6):
        stream(monitor, rank_k(100, 8, 4, seed=epoch))
        monitor.end_epoch(epoch)
        epochs = epoch
        if monitor.should_stop:
            break
    assert epochs == 2 and reporter.seen == [1, 2] and monitor.should_prune
    record = monitor.finish()
    assert record["status"] == "pruned" and record["failure_reason"].startswith("pruned at epoch 2: objective 4")
    assert record["features"] == {} and record["epochs_completed"] == 2
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "pruned"
    assert outcome_from_return(as_record(record)).status == PRUNED


def test_collapse_fails_the_run_with_its_reason_and_is_not_reported(tmp_path: Path) -> None:
    reporter = PruneFrom(step=99)
    monitor = LabelFreeMonitor(tmp_path, reporter=reporter, collapse_rankme=2.0)
    stream(monitor, rank_k(100, 8, 1))
    monitor.end_epoch(1)
    record = monitor.finish()
    assert monitor.should_stop and not monitor.should_prune and reporter.seen == []
    assert record["status"] == "failed" and record["failure_reason"].startswith("collapsed: rankme=1.0")
    assert outcome_from_return(record).failure_reason == record["failure_reason"]


def test_bad_input_is_named(tmp_path: Path) -> None:
    monitor = LabelFreeMonitor(tmp_path)
    with pytest.raises(ValueError, match=r"end_epoch\(1\): update\(\) needs at least 2 rows"):
        monitor.end_epoch(1)
    with pytest.raises(ValueError, match="x has 3 rows but z has 4"):
        monitor.update(np.ones((4, 5)), np.ones((3, 5)))
    with pytest.raises(ValueError, match="split must be one of"):
        monitor.save_features("monitor", np.ones((3, 2)), np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="labels must be integer class ids"):
        monitor.save_features("train", np.ones((3, 2)), np.zeros(3))


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n // 3)
    return (rng.normal(size=(len(y), 6)) + 5.0 * np.eye(3, 6)[y]).astype(np.float32), y


def test_readout_works_from_the_feature_files_the_record_names(tmp_path: Path) -> None:
    from sweep.selection.readout_jobs import readout_job

    monitor = LabelFreeMonitor(tmp_path / "run", method="mine", config={"lr": 0.1})
    stream(monitor, rank_k(60, 8, 6))
    monitor.end_epoch(1)
    for seed, split in enumerate(("train", "val", "test")):
        x, y = blobs(90, seed)
        monitor.save_features(split, torch.tensor(x), torch.tensor(y), projector=x[:, :4])
    record = monitor.finish()
    assert record["status"] == "completed" and record["config"] == {"lr": 0.1} and record["method"] == "mine"
    assert all(Path(p).is_file() for split in record["features"].values() for p in split.values())
    for kind in ("backbone", "projector"):
        out = readout_job(0, str(tmp_path / "run" / "result.json"), str(tmp_path / f"r_{kind}.json"),
                          {"features": kind, "max_iter": 100, "knn_k": 5})
        assert out["status"] == "completed" and out["test_accuracy"] > 0.9, out


# ----------------------------------------------------------------------------- records and reporters
def test_plain_dict_becomes_a_record_and_records_pass_unchanged() -> None:
    features = {"train": {"backbone": "f.npy", "labels": "y.npy"}}
    record = as_record({"rankme": 3, "alpha": np.float64(1.2), "flag": True, "lidar": None, "method": "mine",
                        "features": features, "score": torch.tensor(0.5)})
    assert record["status"] == "completed" and record["features"] == features and record["method"] == "mine"
    assert set(record["metrics"]) == {"rankme", "alpha", "lidar", "score"} and record["flag"] is True
    full = {"status": "failed", "failure_reason": "x", "metrics": {}}
    assert as_record(full) is full and as_record([1, 2]) == [1, 2]
    assert as_record(pruned_record(3))["status"] == PRUNED


def test_the_payload_hands_its_reporter_to_the_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reporter travels in the signed payload as data: the worker injects exactly that object around the task
    (no environment variable, no import path); a payload without one leaves the task without a reporter."""
    from types import SimpleNamespace

    from hydra.core.utils import JobStatus

    from sweep.launch import trial as trial_module
    from sweep.safety import pickle_signed, unpickle_signed

    seen: list[Any] = []

    def fake_run_job(**kw: Any) -> Any:
        seen.append(current_reporter())
        return SimpleNamespace(status=JobStatus.COMPLETED, return_value={"rankme": 2.0})

    monkeypatch.setattr(trial_module, "trial_run_dir", lambda config: str(tmp_path))
    monkeypatch.setattr("hydra.core.utils.run_job", fake_run_job)
    payload = trial_module.TrialPayload(hydra_context=None, task_function=print, config=None, reporter=PruneFrom(1))
    path = tmp_path / "payload.pkl"
    path.write_bytes(pickle_signed(payload))
    path.chmod(0o600)
    unpickled = unpickle_signed(path)
    assert trial_module.execute_trial(unpickled).status == "completed"
    assert isinstance(seen[-1], PruneFrom) and seen[-1].step == 1 and current_reporter() is None
    assert trial_module.execute_trial(trial_module.TrialPayload(None, print, None)).status == "completed"
    assert seen[-1] is None
    with use_reporter(PruneFrom(1)) as rep:
        assert current_reporter() is rep
    assert current_reporter() is None


# ----------------------------------------------------------------------------- end to end (subprocess sweeps)
def run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def sweep_overrides(tmp: Path, name: str) -> list[str]:
    return [f"hydra.sweeper.storage=sqlite:///{tmp / 'study.db'}", f"hydra.sweeper.study_name={name}",
            f"hydra.sweep.dir={tmp / 'out'}"]


def enqueue(tmp: Path, name: str, trials: list[dict[str, Any]]) -> None:
    import optuna

    from sweep.study.storage import make_storage

    study = optuna.create_study(study_name=name, storage=make_storage(f"sqlite:///{tmp / 'study.db'}"),
                                direction="maximize")
    for params in trials:
        study.enqueue_trial(params)


def pruning_overrides() -> list[str]:
    """Raw RankMe objective and a threshold pruner at 4: a 2-wide projector (RankMe <= 2) is pruned at its first
    report, a 32-wide one (RankMe ~ 10) completes - decided by the widths, not by luck of training."""
    return ["hydra.sweeper.objectives=[{metric: rankme}]", "hydra.sweeper.pruner.name=threshold",
            "+hydra.sweeper.pruner.options.lower=4.0", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
            "+hydra.sweeper.search_space.out_dim={type: categorical, choices: [2, 32]}"]


def check_pruned_and_read_out(tmp: Path, name: str) -> None:
    """Trial 0 (2-wide) PRUNED with the reason, trial 1 COMPLETE, read out from the files its record names."""
    import optuna
    from optuna.trial import TrialState

    from sweep.selection.readout_jobs import readout_job
    from sweep.study.storage import make_storage

    trials = optuna.load_study(study_name=name, storage=make_storage(f"sqlite:///{tmp / 'study.db'}")).get_trials()
    assert [t.state for t in trials] == [TrialState.PRUNED, TrialState.COMPLETE], [t.user_attrs for t in trials]
    assert json.loads(Path(trials[0].user_attrs["record_path"]).read_text())["failure_reason"].startswith(
        "pruned at epoch 1")
    assert trials[1].values[0] == pytest.approx(trials[1].user_attrs[METRIC_PREFIX + "rankme"])
    assert trials[1].values[0] > 4
    out = readout_job(1, trials[1].user_attrs["record_path"], str(tmp / "readout.json"), {"max_iter": 100})
    assert out["status"] == "completed" and out["test_accuracy"] > 0.5, out


@pytest.mark.slow
def test_plain_torch_example_sweeps_prunes_and_reads_out(tmp_path: Path) -> None:
    enqueue(tmp_path, "byo", [{"lr": 3e-3, "temperature": 0.5, "out_dim": d} for d in (2, 32)])
    run([sys.executable, str(ROOT / "examples" / "plain_torch.py"), "-m", *sweep_overrides(tmp_path, "byo"),
         *pruning_overrides(), "epochs=2"], cwd=tmp_path)
    check_pruned_and_read_out(tmp_path, "byo")


@pytest.mark.slow
def test_task_returning_a_plain_dict_is_swept_and_read_out(tmp_path: Path) -> None:
    import optuna
    from optuna.trial import TrialState

    from sweep.selection.readout_jobs import readout_job
    from sweep.study.storage import make_storage

    run([sys.executable, str(APPS / "plain_dict_app.py"), "-m", *sweep_overrides(tmp_path, "d")], cwd=APPS)
    trials = optuna.load_study(study_name="d", storage=make_storage(f"sqlite:///{tmp_path / 'study.db'}")).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    for t in trials:
        assert t.values[0] == pytest.approx(10.0 + t.params["x"]) and t.user_attrs[METRIC_PREFIX + "alpha"] == 1.5
        record = json.loads(Path(t.user_attrs["record_path"]).read_text())
        assert record["note"] == "plain dict" and record["metrics"] == {"rankme": t.values[0], "alpha": 1.5}
    out = readout_job(0, trials[0].user_attrs["record_path"], str(tmp_path / "r.json"), {"max_iter": 100})
    assert out["status"] == "completed" and out["test_accuracy"] == 1.0, out

"""The trial job: schedule/optimiser math, splits, records, checkpoints, monitoring and end-to-end runs."""

from __future__ import annotations

import json
import math
import os
import random
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from sweep.config import compose_train_config
from sweep.config.schema import DataConfig, MetricsConfig, OptimConfig
from sweep.metrics import rankme, spectral_metrics
from sweep.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from sweep.train.epoch_metrics import collapse_reason, monitor_row
from sweep.train.optim import LARS, build_optimizer, build_scheduler, lr_factor
from sweep.train.records import build_record, clean, read_record, write_record
from sweep.train.splits import make_splits

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "experiment=tiny",
    "epochs=2",
    "data.max_train_samples=300",
    "data.max_test_samples=120",
    "data.monitor_size=48",
    "batch_size=64",
    "metrics.collapse_rankme=0",
]  # collapse: tested on its own


# ----------------------------------------------------------------------------- optimiser and schedule
def test_lr_factor_warmup_cosine_constant() -> None:
    assert [lr_factor(s, 10, 4, "cosine") for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 10, 4, "cosine") == 1.0
    assert lr_factor(7, 10, 4, "cosine") == pytest.approx(0.5)  # halfway through the 6 cosine steps
    assert lr_factor(10, 10, 4, "cosine") == pytest.approx(0.0, abs=1e-15)
    assert lr_factor(9, 10, 0, "constant") == 1.0
    with pytest.raises(ValueError, match="optim.scheduler='step'"):
        lr_factor(5, 10, 0, "step")


def test_scheduler_steps_the_optimiser_lr() -> None:
    p = nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([p], lr=2.0)
    sched = build_scheduler(
        opt, OptimConfig(name="sgd", lr=2.0, warmup_epochs=1), steps_per_epoch=2, epochs=3
    )
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx(
        [1.0, 2.0, 2.0, 2 * 0.5 * (1 + math.cos(math.pi / 4)), 1.0, 2 * 0.5 * (1 + math.cos(3 * math.pi / 4))]
    )


def test_lars_trust_ratio_on_known_tensors() -> None:
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
    b = nn.Parameter(torch.tensor([1.0]))
    opt = LARS([w, b], lr=0.1, momentum=0.0, weight_decay=0.0, trust_coefficient=0.01)
    w.grad, b.grad = torch.tensor([[0.0, 2.0]]), torch.tensor([0.5])  # ||g|| = 2
    opt.step()
    # matrices: step = lr * eta * ||w|| / ||g|| * g = 0.1 * 0.01 * 2.5 * g; vectors: plain lr * g
    assert torch.allclose(w.detach(), torch.tensor([[3.0, 4.0 - 0.1 * 0.01 * 2.5 * 2.0]]))
    assert torch.allclose(b.detach(), torch.tensor([1.0 - 0.1 * 0.5]))


def test_build_optimizer_names_and_skips_frozen_params() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model[1].weight.requires_grad_(False)
    for name, cls in (
        ("adam", torch.optim.Adam),
        ("adamw", torch.optim.AdamW),
        ("sgd", torch.optim.SGD),
        ("lars", LARS),
    ):
        opt = build_optimizer(model, OptimConfig(name=name))
        assert type(opt) is cls and sum(len(g["params"]) for g in opt.param_groups) == 3
    with pytest.raises(ValueError, match="optim.name='rmsprop'"):
        build_optimizer(model, OptimConfig(name="rmsprop"))


# ----------------------------------------------------------------------------- splits
def test_splits_sizes_disjoint_and_seeded() -> None:
    cfg = DataConfig(monitor_size=20, val_fraction=0.25, split_seed=3)
    s = make_splits(100, 50, cfg)
    assert (len(s.monitor), len(s.ssl_train), len(s.val), len(s.probe_train), len(s.test)) == (
        20,
        80,
        20,
        60,
        50,
    )
    mon, ssl, val, probe = (set(t.tolist()) for t in (s.monitor, s.ssl_train, s.val, s.probe_train))
    assert not mon & ssl and ssl == val | probe and not val & probe and mon | ssl == set(range(100))
    again = make_splits(100, 50, cfg)
    assert torch.equal(s.monitor, again.monitor) and torch.equal(s.val, again.val)
    other = make_splits(100, 50, DataConfig(monitor_size=20, val_fraction=0.25, split_seed=4))
    assert not torch.equal(s.monitor, other.monitor)


def test_splits_subsample_and_reject_oversized_monitor() -> None:
    s = make_splits(1000, 500, DataConfig(monitor_size=10, max_train_samples=110, max_test_samples=40))
    assert len(s.monitor) + len(s.ssl_train) == 110 and len(s.test) == 40
    with pytest.raises(ValueError, match="data.monitor_size=99"):
        make_splits(100, 10, DataConfig(monitor_size=99))


# ----------------------------------------------------------------------------- records and checkpoints
def test_clean_makes_strict_json() -> None:
    assert clean({"a": float("nan"), "b": [np.float64(1.5), float("inf")], "c": np.int64(3)}) == {
        "a": None,
        "b": [1.5, None],
        "c": 3,
    }


def test_record_files_round_trip(tmp_path: Path) -> None:
    history = [{"epoch": 1, "loss": 2.0, "rankme": 3.0, "ami": float("nan")}]
    record = build_record(
        status="completed",
        failure_reason=None,
        method="simclr",
        run_dir=tmp_path,
        config={"seed": 0},
        history=history,
        features={},
        timings={"total_s": 1.0},
        epochs_completed=1,
    )
    assert (
        record["metrics"]["rankme"] == 3.0
        and record["metrics"]["ami"] is None
        and record["metrics"]["lidar"] is None
    )
    write_record(record, tmp_path)
    assert read_record(tmp_path) == record
    row = pd.read_parquet(tmp_path / "result.parquet")
    assert len(row) == 1 and row.loc[0, "rankme"] == 3.0 and row.loc[0, "timings_total_s"] == 1.0
    assert json.loads(row.loc[0, "config_json"]) == {"seed": 0}


def test_checkpoint_round_trip_restores_rng(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints" / "last.pt"
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    save_checkpoint(path, {"epoch": 4, "history": [{"epoch": 4}]})
    expected = (torch.rand(3), np.random.rand(), random.random())
    state = load_checkpoint(path)
    assert state is not None and state["epoch"] == 4 and state["history"] == [{"epoch": 4}]
    set_rng_state(state["rng"])
    assert (
        torch.equal(torch.rand(3), expected[0])
        and np.random.rand() == expected[1]
        and random.random() == expected[2]
    )
    assert load_checkpoint(tmp_path / "nothing.pt") is None
    assert set(rng_state()) >= {"python", "numpy", "torch"}


# ----------------------------------------------------------------------------- monitoring
class _LinearSSL(nn.Module):
    """Fixed linear backbone and projector: metrics of its outputs are known from the matrices."""

    def __init__(self, backbone: torch.Tensor, projector: torch.Tensor) -> None:
        super().__init__()
        self.b, self.p = backbone, projector

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.b

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x) @ self.p


def test_monitor_row_matches_full_matrix_metrics() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(90, 1, 4, 4, generator=gen, dtype=torch.float64)
    model = _LinearSSL(
        torch.randn(16, 12, generator=gen, dtype=torch.float64),
        torch.randn(12, 6, generator=gen, dtype=torch.float64),
    )
    cfg = MetricsConfig(
        alpha_window=[1, 8],
        kmeans_clusters=3,
        kmeans_seeds=[0, 1],
        extract_batch_size=32,
        collapse_rankme=1.5,
    )
    row, labels, reason = monitor_row(model, x, cfg, torch.device("cpu"), None, lambda v, g: v, seed=0)
    feats = model.features(x.flatten(1).reshape(x.shape))
    full = spectral_metrics(feats.float(), (1, 8))
    assert reason is None and labels is not None and labels.shape == (90,)
    assert row["rankme"] == pytest.approx(rankme(model.embed(x).float()), rel=1e-5)
    assert row["alpha"] == pytest.approx(full["alpha"], rel=1e-5)
    assert row["stable_rank"] == pytest.approx(full["stable_rank"], rel=1e-5)
    assert row["ami_checkpoint"] is None and row["lidar"] is None and "silhouette" in row
    row2, _, _ = monitor_row(model, x, cfg, torch.device("cpu"), labels, lambda v, g: v, seed=0)
    assert row2["ami_checkpoint"] == pytest.approx(1.0)  # same model, same first-seed labels


def test_monitor_row_reports_collapse_and_nonfinite() -> None:
    x = torch.rand(40, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    rank1 = _LinearSSL(torch.ones(4, 8), torch.ones(8, 8))  # every embedding is a multiple of (1, ..., 1)
    cfg = MetricsConfig(alpha_window=[1, 3], kmeans_clusters=3)
    row, labels, reason = monitor_row(rank1, x, cfg, torch.device("cpu"), None, lambda v, g: v, seed=0)
    assert labels is None and reason is not None and reason.startswith("collapsed: rankme=")
    assert row["rankme"] == pytest.approx(1.0, abs=1e-3)
    nan_model = _LinearSSL(torch.full((4, 8), float("nan")), torch.ones(8, 8))
    _, _, reason = monitor_row(nan_model, x, cfg, torch.device("cpu"), None, lambda v, g: v, seed=0)
    assert reason is not None and reason.startswith("nan_embeddings")


def test_collapse_reason_threshold() -> None:
    assert collapse_reason({"rankme": 1.49}, 1.5) == "collapsed: rankme=1.49 < metrics.collapse_rankme=1.5"
    assert collapse_reason({"rankme": 1.5}, 1.5) is None
    assert collapse_reason({"rankme": float("nan")}, 1.5) is not None


# ------------------------------------------------------------- end-to-end (needs sweep.ssl + sweep.data)
@pytest.fixture
def job() -> Any:
    pytest.importorskip("sweep.ssl", reason="sweep.ssl (methods, backbones, augmentations) not available")
    pytest.importorskip("sweep.data", reason="sweep.data (datasets) not available")
    import sweep.train.job as job_module

    torch.set_num_threads(1)
    return job_module


def _run(job: Any, tmp_path: Path, name: str, overrides: list[str]) -> dict[str, Any]:
    return job.train(compose_train_config([*TINY, *overrides], run_dir=tmp_path / name))


def test_tiny_run_writes_every_output(job: Any, tmp_path: Path) -> None:
    record = _run(job, tmp_path, "run", [])
    run_dir = tmp_path / "run"
    assert record["status"] == "completed", record["failure_reason"]
    assert record["epochs_completed"] == 2 and [r["epoch"] for r in record["monitor"]] == [1, 2]
    assert read_record(run_dir) == record
    for name in ("config.yaml", "checkpoints/last.pt", "monitor.csv", "result.parquet"):
        assert (run_dir / name).is_file(), name
    assert len(pd.read_csv(run_dir / "monitor.csv")) == 2
    m = record["metrics"]
    assert m["rankme"] > 1.0 and math.isfinite(m["alpha"]) and 0.0 <= m["ami"] <= 1.0
    assert record["monitor"][1]["ami_checkpoint"] is not None
    sizes = {s: np.load(record["features"][s]["labels"]).shape[0] for s in ("train", "val", "test")}
    assert sizes == {"train": 202, "val": 50, "test": 120}  # (300 - 48) * 0.8 / 0.2; test capped at 120
    assert np.load(record["features"]["test"]["projector"]).shape == (120, 32)
    assert set(record["timings"]) >= {"total_s", "train_s", "metrics_s"}


def test_run_prints_its_dir_progress_and_a_probe_command_that_runs(
    job: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWEEP_PROGRESS", "1")  # captured stderr is no TTY: force the bar on
    _run(job, tmp_path, "run", [])
    out, err = capsys.readouterr()
    run_dir = (tmp_path / "run").resolve()
    assert out.splitlines()[0] == f"sweep train: run dir {run_dir}"
    assert "sweep train: completed after 2 epoch(s)" in out and str(run_dir / "result.json") in out
    assert "epochs: 100%" in err and "rankme=" in err  # the bar, with RankMe in its postfix
    command = out.strip().splitlines()[-1].strip()
    assert command == f"sweep readout {run_dir}"
    argv = shlex.split(command)
    probe = subprocess.run([sys.executable, "-m", "sweep.cli", *argv[1:]], capture_output=True, text=True,
                           timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert "linear probe on backbone features: val " in probe.stdout and "kNN (k=" in probe.stdout
    assert f"readout: {run_dir / 'readout_backbone.json'}" in probe.stdout
    stored = json.loads((run_dir / "readout_backbone.json").read_text())
    assert stored["status"] == "completed" and 0.0 <= stored["test_accuracy"] <= 1.0
    monkeypatch.setenv("SWEEP_PROGRESS", "0")
    _run(job, tmp_path, "quiet", [])
    assert "epochs:" not in capsys.readouterr().err


def test_lidar_is_monitored_when_enabled(job: Any, tmp_path: Path) -> None:
    record = _run(job, tmp_path, "lidar", ["metrics.lidar_views=3", "metrics.lidar_samples=32"])
    lidars = [row["lidar"] for row in record["monitor"]]
    assert len(lidars) == 2 and all(isinstance(v, float) and v > 1.0 for v in lidars)
    assert record["metrics"]["lidar"] == lidars[-1]


@pytest.mark.parametrize("method", ["simclr", "mocov2"])  # mocov2: queue buffer and EMA key encoder
def test_resumed_run_ends_with_identical_metrics(
    job: Any, method: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = ["epochs=3", f"method={method}"]
    full = _run(job, tmp_path, "full", overrides)
    real_epoch = job.run_epoch

    def interrupted(trial: Any, epoch: int) -> Any:
        if epoch == 3:
            raise KeyboardInterrupt("simulated preemption")
        return real_epoch(trial, epoch)

    monkeypatch.setattr(job, "run_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(job, tmp_path, "resumed", overrides)
    monkeypatch.setattr(job, "run_epoch", real_epoch)
    calls: list[int] = []
    monkeypatch.setattr(job, "run_epoch", lambda t, e: calls.append(e) or real_epoch(t, e))
    resumed = _run(job, tmp_path, "resumed", overrides)
    assert calls == [3]  # only the missing epoch was trained
    assert resumed["metrics"] == full["metrics"] and resumed["monitor"] == full["monitor"]
    for split in ("train", "test"):
        assert np.array_equal(
            np.load(resumed["features"][split]["backbone"]), np.load(full["features"][split]["backbone"])
        )
    calls.clear()
    again = _run(
        job, tmp_path, "full", overrides
    )  # a finished run resumes to the same record, training nothing
    assert calls == [] and again["metrics"] == full["metrics"]
    with pytest.raises(ValueError, match=r"differs in \['epochs'\]"):
        _run(job, tmp_path, "full", [*overrides, "epochs=4"])


def test_nan_loss_gives_failed_record(job: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_build = job.build_trial

    def nan_loss_trial(*args: Any) -> Any:
        trial = real_build(*args)
        loss = trial.model.loss
        trial.model.loss = lambda v1, v2: loss(v1, v2) * float("nan")
        return trial

    monkeypatch.setattr(job, "build_trial", nan_loss_trial)
    record = _run(job, tmp_path, "nan", [])
    assert record["status"] == "failed" and record["failure_reason"] == "nan_loss: loss=nan at epoch 1 step 1"
    assert record["epochs_completed"] == 0 and record["features"] == {}
    assert read_record(tmp_path / "nan")["status"] == "failed"


def test_diverging_learning_rate_gives_failed_record(job: Any, tmp_path: Path) -> None:
    record = _run(job, tmp_path, "diverged", ["optim.lr=1e9"])
    assert record["status"] == "failed" and record["failure_reason"].startswith("nan_loss: loss=")
    assert read_record(tmp_path / "diverged")["failure_reason"] == record["failure_reason"]


def test_collapse_gives_failed_record(job: Any, tmp_path: Path) -> None:
    record = _run(job, tmp_path, "collapsed", ["metrics.collapse_rankme=1e6"])
    assert record["status"] == "failed" and record["failure_reason"].startswith("collapsed: rankme=")
    assert "metrics.collapse_rankme=1000000.0" in record["failure_reason"]
    assert record["epochs_completed"] == 1 and len(record["monitor"]) == 1


def _experiment_overrides(experiment: str) -> list[str]:
    """Tiny budget for an experiment; data sets that are not on this machine are swapped for digits."""
    cfg = compose_train_config([f"experiment={experiment}"], run_dir="unused")
    local = cfg.data.name == "digits" or (cfg.data.root is not None and Path(cfg.data.root).is_dir())
    swap = [] if local else ["data=digits", "augment=digits"]
    return [
        f"experiment={experiment}",
        *swap,
        "epochs=1",
        "batch_size=32",
        "data.max_train_samples=200",
        "data.max_test_samples=60",
        "data.monitor_size=32",
        "metrics.alpha_window=[1,10]",
        "metrics.collapse_rankme=0",
        "readout.max_iter=5",
        "device=cpu",
        "num_threads=1",
        "backbone.width=4",
        "metrics.every_n_epochs=1",
        "optim.warmup_epochs=0",
    ]


EXPERIMENTS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_a_tiny_budget(job: Any, experiment: str, tmp_path: Path) -> None:
    record = job.train(compose_train_config(_experiment_overrides(experiment), run_dir=tmp_path / "run"))
    assert record["status"] == "completed", record["failure_reason"]
    assert record["epochs_completed"] == 1


@pytest.mark.slow
def test_module_entry_point_runs(job: Any, tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "sweep.train.job",
            "epochs=1",
            "experiment=tiny",
            f"hydra.run.dir={tmp_path / 'hydra'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    record = read_record(tmp_path / "hydra")
    assert record["status"] == "completed" and record["epochs_completed"] == 1
    assert record["run_dir"] == str(tmp_path / "hydra")


@pytest.mark.slow
def test_simclr_improves_linear_probe_over_random_init(job: Any, tmp_path: Path) -> None:
    """Same seed, splits and architecture: SSL-trained backbone features vs the untrained initialisation."""
    from omegaconf import OmegaConf

    from sweep.readout import linear_probe

    overrides = [
        "experiment=tiny",
        "method=simclr",
        "epochs=8",
        "data.max_train_samples=null",
        "data.max_test_samples=null",
        "data.monitor_size=128",
        "batch_size=128",
        "backbone.width=4",
        "metrics.every_n_epochs=0",
        "metrics.collapse_rankme=0",
        "optim.lr=2e-3",
    ]
    trained = job.train(compose_train_config(overrides, run_dir=tmp_path / "trained"))
    assert trained["status"] == "completed", trained["failure_reason"]
    typed = OmegaConf.to_object(compose_train_config(overrides, run_dir=tmp_path / "init"))
    init = job.save_features(job.build_trial(typed, torch.device("cpu"), tmp_path / "init"))

    def accuracy(paths: dict[str, dict[str, str]]) -> float:
        arrays = [np.load(paths[s][k]) for s in ("train", "val", "test") for k in ("backbone", "labels")]
        return linear_probe(*arrays, l2_grid=(1e-4, 1e-2), max_iter=100, device="cpu").test_accuracy

    acc_trained, acc_init = accuracy(trained["features"]), accuracy(init)
    assert acc_trained >= acc_init + 0.05, (acc_trained, acc_init)


class _PruneAtFirstReport:
    """Stands in for the sweep's pruning reporter: records what it saw, prunes at the first report."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, float]] = []

    def report_metrics(self, metrics: dict[str, Any], step: int) -> float:
        self.seen.append((step, float(metrics["rankme"])))
        return float(metrics["rankme"])


def test_pruning_reporter_stops_the_run_as_pruned(job: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reporter = _PruneAtFirstReport()
    monkeypatch.setattr(job, "pruning_reporter", lambda: reporter)
    record = _run(job, tmp_path, "pruned", ["epochs=3", "metrics.every_n_epochs=1"])
    assert record["status"] == "pruned"
    assert record["epochs_completed"] == 1 and [step for step, _ in reporter.seen] == [1]
    assert record["failure_reason"].startswith("pruned at epoch 1")
    assert reporter.seen[0][1] == pytest.approx(record["monitor"][0]["rankme"])
    assert record["features"] == {}


def test_no_pruning_reporter_outside_a_sweep(job: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("SWEEP_STUDY_NAME", "SWEEP_TRIAL_ID"):
        monkeypatch.delenv(key, raising=False)
    assert job.pruning_reporter() is None

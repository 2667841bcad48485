"""Readout jobs through real submitit executors on tiny saved .npy features."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import submitit

from sweep.config.schema import ReadoutConfig
from sweep.selection.pipeline import ExecutorReadout, TableReadout, pending_trials, run_readouts
from sweep.selection.policies import rankme_topk
from sweep.selection.readout_jobs import ReadoutError, load_readouts, readout_job, readout_path, resolve_callable

# A stand-in probe with exact answers: nearest class mean on train; "val accuracy" and "test accuracy" are
# plain accuracies of that rule. It lives in a module file so LocalExecutor subprocesses can import it.
STANDIN = textwrap.dedent("""
    import numpy as np
    from types import SimpleNamespace

    def centroid_probe(tx, ty, vx, vy, sx, sy, **kwargs):
        means = np.stack([tx[ty == c].mean(0) for c in np.unique(ty)])
        acc = lambda x, y: float((np.argmin(((x[:, None] - means[None]) ** 2).sum(-1), 1) == y).mean())
        return SimpleNamespace(val_accuracy=acc(vx, vy), test_accuracy=acc(sx, sy), best_l2=0.0,
                               train_accuracy=acc(tx, ty))

    def knn_stub(tx, ty, sx, sy, k=1):
        return float(k) / 100.0
""")


@pytest.fixture()
def standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "standin_probe.py").write_text(STANDIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    return "standin_probe:centroid_probe"


def save_run(root: Path, trial: int, flips: int) -> Path:
    """Two separated blobs (10 per split, labels 0/1 alternating); ``flips`` test labels are wrong, so
    the test accuracy is 1 - flips / 10."""
    run = root / f"run_{trial}"
    (run / "features").mkdir(parents=True)
    rng = np.random.default_rng(trial)
    files = {}
    for split in ("train", "val", "test"):
        y = np.array([0, 1] * 5, dtype=np.int64)
        x = rng.normal(0, 0.1, (10, 4))
        x[np.arange(10), y] += 10.0  # class c points along axis c: separable for L2 and cosine alike
        x = x.astype(np.float32)
        if split == "test":
            y[:flips] = 1 - y[:flips]
        np.save(run / "features" / f"{split}_backbone.npy", x)
        np.save(run / "features" / f"{split}_labels.npy", y)
        files[split] = {
            "backbone": f"features/{split}_backbone.npy",
            "labels": f"features/{split}_labels.npy",
        }
    record = {"status": "completed", "run_dir": str(run), "features": files}
    (run / "result.json").write_text(json.dumps(record))
    return run


def trials_frame(root: Path, flips: list[int], states: list[str]) -> pd.DataFrame:
    runs = [save_run(root, t, f) for t, f in enumerate(flips)]
    return pd.DataFrame(
        {
            "trial": range(len(flips)),
            "state": states,
            "method": "simclr",
            "rankme": [float(10 - t) for t in range(len(flips))],
            "record_path": [str(r / "result.json") for r in runs],
            "run_dir": [str(r) for r in runs],
        }
    )


def test_debug_executor_readouts_exact_and_idempotent(tmp_path: Path, standin: str) -> None:
    trials = trials_frame(tmp_path, [0, 1, 3, 0], ["COMPLETE", "COMPLETE", "COMPLETE", "FAIL"])
    (tmp_path / "run_2" / "features" / "val_labels.npy").unlink()  # a broken trial
    sweep_dir = tmp_path / "sweep"
    executor = submitit.DebugExecutor(folder=tmp_path / "jobs")
    cfg = ReadoutConfig(knn_k=7)
    frame = run_readouts(trials, sweep_dir, executor, cfg, probe=standin, knn="standin_probe:knn_stub")
    by = frame.set_index("trial")
    assert list(by.index) == [0, 1, 2]  # the FAIL trial is never read
    assert by.loc[0, "test_accuracy"] == 1.0 and by.loc[1, "test_accuracy"] == pytest.approx(0.9)
    assert by.loc[0, "val_accuracy"] == 1.0 and by.loc[0, "knn_accuracy"] == pytest.approx(0.07)
    assert by.loc[2, "status"] == "failed" and "val_labels.npy" in by.loc[2, "error"]
    assert pending_trials(trials, sweep_dir) == [2]  # only the failed one is retried
    stamp = readout_path(sweep_dir, 0).stat().st_mtime_ns
    run_readouts(trials, sweep_dir, executor, cfg, probe=standin, knn=None)
    assert readout_path(sweep_dir, 0).stat().st_mtime_ns == stamp
    assert load_readouts(sweep_dir).set_index("trial").loc[2, "status"] == "failed"


def test_failed_readout_is_nan_for_policies(tmp_path: Path, standin: str) -> None:
    trials = trials_frame(tmp_path, [0, 1], ["COMPLETE", "COMPLETE"])
    (tmp_path / "run_0" / "result.json").write_text("{}")  # no features listed
    frame = run_readouts(
        trials,
        tmp_path / "sweep",
        submitit.DebugExecutor(folder=tmp_path / "jobs"),
        probe=standin,
        knn="standin_probe:no_such_function",
    )
    readout = TableReadout(frame, "val_accuracy")
    assert np.isnan(readout(0)) and readout(1) == 1.0
    by = frame.set_index("trial")
    assert "record['features']['train']" in by.loc[0, "error"]
    # a broken kNN leaves the linear readout usable and says why
    assert by.loc[1, "status"] == "completed" and by.loc[1, "error"].startswith("knn: AttributeError")


def test_executor_readout_runs_only_what_the_policy_asks(tmp_path: Path, standin: str) -> None:
    trials = trials_frame(tmp_path, [0] * 5, ["COMPLETE"] * 5)
    sweep_dir = tmp_path / "sweep"
    lazy = ExecutorReadout(
        trials, sweep_dir, submitit.DebugExecutor(folder=tmp_path / "jobs"), probe=standin, knn=None
    )
    result = rankme_topk(trials, lazy)  # N=5 -> ceil(log2 5) = 3 highest RankMe: trials 0, 1, 2
    assert result.read_trials == (0, 1, 2)
    assert sorted(p.name for p in (sweep_dir / "readouts").glob("*.json")) == [
        f"trial_{t}.json" for t in (0, 1, 2)
    ]


def test_max_parallel_shares_trials_among_that_many_jobs(tmp_path: Path, standin: str) -> None:
    trials = trials_frame(tmp_path, [0, 1, 2, 3, 0], ["COMPLETE"] * 5)
    executor = submitit.DebugExecutor(folder=tmp_path / "jobs")
    submitted: list[int] = []
    original = executor.submit

    def counting_submit(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        submitted.append(len(args[0]))
        return original(fn, *args, **kwargs)

    executor.submit = counting_submit  # type: ignore[method-assign]
    frame = run_readouts(trials, tmp_path / "sweep", executor, probe=standin, knn=None, max_parallel=2)
    assert submitted == [3, 2]  # two jobs for five trials, round-robin
    assert frame["trial"].tolist() == [0, 1, 2, 3, 4]
    assert frame["status"].tolist() == ["completed"] * 5
    assert frame["test_accuracy"].tolist() == pytest.approx([1.0, 0.9, 0.8, 0.7, 1.0])


def test_local_executor_end_to_end(tmp_path: Path, standin: str) -> None:
    trials = trials_frame(tmp_path, [0, 2], ["COMPLETE", "COMPLETE"])
    executor = submitit.LocalExecutor(folder=tmp_path / "jobs")
    executor.update_parameters(timeout_min=5)
    frame = run_readouts(trials, tmp_path / "sweep", executor, probe=standin, knn=None)
    assert frame["status"].tolist() == ["completed", "completed"]
    assert frame["test_accuracy"].tolist() == [1.0, pytest.approx(0.8)]


@pytest.mark.slow
def test_local_executor_with_the_real_linear_probe(tmp_path: Path) -> None:
    readout = pytest.importorskip("sweep.readout")
    if not hasattr(readout, "linear_probe"):
        pytest.skip("sweep.readout.linear_probe not available yet")
    trials = trials_frame(tmp_path, [0, 2], ["COMPLETE", "COMPLETE"])
    executor = submitit.LocalExecutor(folder=tmp_path / "jobs")
    executor.update_parameters(timeout_min=5)
    cfg = ReadoutConfig(l2_grid=[1e-3, 1e-1], max_iter=50, device="cpu", knn_k=3)
    frame = run_readouts(trials, tmp_path / "sweep", executor, cfg).set_index("trial")
    assert list(frame["status"]) == ["completed", "completed"], frame["error"].tolist()
    assert frame.loc[0, "val_accuracy"] == 1.0 and frame.loc[0, "test_accuracy"] == 1.0
    assert frame.loc[1, "test_accuracy"] == pytest.approx(0.8)
    assert frame.loc[0, "knn_accuracy"] == 1.0


def test_job_reuses_completed_record(tmp_path: Path) -> None:
    out = tmp_path / "trial_3.json"
    out.write_text(json.dumps({"trial": 3, "status": "completed", "val_accuracy": 0.5}))
    assert readout_job(3, str(tmp_path / "missing.json"), str(out), {})["val_accuracy"] == 0.5
    failed = readout_job(4, str(tmp_path / "missing.json"), str(tmp_path / "trial_4.json"), {})
    assert failed["status"] == "failed" and "missing.json" in failed["error"]


def test_resolve_callable_rejects_bad_spec() -> None:
    assert resolve_callable("math:sqrt")(9.0) == 3.0
    with pytest.raises(ReadoutError, match="package.module:function"):
        resolve_callable("math.sqrt")


def test_concurrent_local_readout_jobs_are_told_how_many_share_the_machine(monkeypatch) -> None:
    """k readout jobs started side by side see SWEEP_READOUT_JOBS=k (each then takes cores / k threads);
    the variable is restored afterwards."""
    import os

    from sweep.selection.pipeline import JOBS_ENV, _readout_jobs_env

    monkeypatch.delenv(JOBS_ENV, raising=False)
    with _readout_jobs_env(3):
        assert os.environ[JOBS_ENV] == "3"
    assert JOBS_ENV not in os.environ
    monkeypatch.setenv(JOBS_ENV, "5")
    with _readout_jobs_env(2):
        assert os.environ[JOBS_ENV] == "2"
    assert os.environ[JOBS_ENV] == "5"


def save_run_with_readout_config(root: Path, readout: dict) -> Path:
    """A run whose record holds its own ``config.readout`` and both feature kinds: separable backbone features,
    projector features that separate the classes only partly, so the two read out to different numbers."""
    run = save_run(root, 0, 0)
    rng = np.random.default_rng(7)
    record = json.loads((run / "result.json").read_text())
    for split in ("train", "val", "test"):
        y = np.load(run / "features" / f"{split}_labels.npy")
        x = rng.normal(0.0, 1.0, (10, 4)).astype(np.float32)
        x[:, 0] += 0.8 * y  # weak signal: a probe beats chance here but not by the backbone's margin
        np.save(run / "features" / f"{split}_projector.npy", x)
        record["features"][split]["projector"] = f"features/{split}_projector.npy"
    record["config"] = {"readout": readout}
    (run / "result.json").write_text(json.dumps(record))
    return run


def test_sweep_readout_and_sweep_select_read_a_run_out_alike(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """One rule (``readout_settings``: the run's own recorded ``config.readout`` over the defaults) behind both
    commands: `sweep readout RUN_DIR` and `sweep select`'s readout of the same run give the same numbers, read
    from the features and with the settings the run recorded (before, `sweep select` used the defaults)."""
    import sweep.study.results as results
    from sweep.cli import main
    from sweep.selection import pipeline

    recorded = {"features": "projector", "l2_grid": [0.5], "knn_k": 3, "max_iter": 50, "device": "cpu"}
    run = save_run_with_readout_config(tmp_path, recorded)
    assert main(["readout", str(run)]) == 0
    alone = json.loads((run / "readout_projector.json").read_text())

    trials = pd.DataFrame({"trial": [0], "state": ["COMPLETE"], "method": ["simclr"], "rankme": [1.0],
                           "record_path": [str(run / "result.json")], "run_dir": [str(run)]})
    seen: dict[str, pd.DataFrame] = {}

    class Stop(Exception):
        pass

    def stop_at_the_report(trials_: pd.DataFrame, readouts: pd.DataFrame, *args: object, **kwargs: object) -> None:
        seen["readouts"] = readouts
        raise Stop

    monkeypatch.setattr(results, "trials_dataframe", lambda storage, study: trials)
    monkeypatch.setattr(pipeline, "study_objective", lambda *args: None)
    monkeypatch.setattr(pipeline, "report_selection", stop_at_the_report)
    with pytest.raises(Stop):
        pipeline.select_and_report("sqlite://", "s", tmp_path / "sweep", launcher="inprocess")
    selected = seen["readouts"].set_index("trial").loc[0]

    assert alone["status"] == selected["status"] == "completed", (alone["error"], selected["error"])
    assert alone["features"] == selected["features"] == "projector"
    assert alone["best_l2"] == selected["best_l2"] == 0.5  # the run's own L2 grid, not the default one
    for column in ("val_accuracy", "test_accuracy", "train_accuracy", "knn_accuracy"):
        assert alone[column] == selected[column], column
    assert np.isfinite(selected["knn_accuracy"])

    flag = main(["readout", str(run), "--features", "backbone"])  # a flag overrides the recorded setting
    assert flag == 0 and json.loads((run / "readout_backbone.json").read_text())["test_accuracy"] == 1.0
    assert selected["test_accuracy"] < 1.0  # so the projector features were read, not the backbone's

"""The README's first command, end to end at test size: a real sweep (Hydra multirun, our Optuna sweeper,
local subprocesses, SQLite), real readouts, the selection policies and the report; the report's numbers are
recomputed here independently from the stored readouts and trials."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sweep.demo import STUDY_NAME, storage_url, sweep_command



def test_default_demo_is_balanced_over_its_methods(tmp_path: Path) -> None:
    """The README's demo: 12 trials, the method stratified (4 per method of testbed_mnist's 3)."""
    command = sweep_command(tmp_path)
    assert "+hydra.sweeper.sampler.options.stratify=method" in command
    assert "hydra.sweeper.n_trials=12" in command and "+search_space=testbed_mnist" in command


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    done = subprocess.run(
        [sys.executable, "-m", "sweep.cli", "demo", "--size", "tiny", "--trials", "4", "--out", str(out)],
        capture_output=True, text=True, timeout=1500,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"report: {out / 'report' / 'report.html'}" in done.stdout
    return out


@pytest.mark.slow
def test_demo_sweep_ran_every_trial(demo_dir: Path) -> None:
    import optuna

    study = optuna.load_study(study_name=STUDY_NAME, storage=storage_url(demo_dir))
    states = [t.state for t in study.trials]
    assert len(states) == 4
    assert all(s in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL) for s in states)
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert completed, "no trial completed"
    from collections import Counter

    # stratified on the method: 4 trials over 3 methods are 2 + 1 + 1, whatever NSGA-II prefers
    assert Counter(t.params["method"] for t in study.trials) == {"simclr": 2, "barlow_twins": 1, "vicreg": 1}
    assert [Path(t.user_attrs["run_dir"]).name for t in study.trials] == ["0", "1", "2", "3"]
    for trial in completed:
        record = json.loads(Path(trial.user_attrs["record_path"]).read_text())
        assert record["status"] == "completed"
        assert math.isclose(trial.values[0], record["metrics"]["rankme_normalized"], rel_tol=1e-9)
        assert math.isclose(trial.values[1], abs(record["metrics"]["alpha"] - 1.0), rel_tol=1e-9)
        assert (Path(record["run_dir"]) / "config.yaml").is_file()


@pytest.mark.slow
def test_demo_report_numbers_recomputed(demo_dir: Path) -> None:
    report = demo_dir / "report"
    html = (report / "report.html").read_text()
    for figure in ("scatter.png", "regret_vs_budget.png", "monitoring.png"):
        assert (report / "figures" / figure).is_file()
        assert figure in html
    readouts = {
        json.loads(p.read_text())["trial"]: json.loads(p.read_text())
        for p in (demo_dir / "sweep" / "readouts").glob("trial_*.json")
    }
    assert readouts and all(r["status"] == "completed" for r in readouts.values())
    policies = pd.read_csv(report / "tables" / "policies.csv").set_index("policy")
    # the oracle reads out every completed trial and picks the best validation accuracy
    best_val_trial = max(readouts, key=lambda t: (readouts[t]["val_accuracy"], -t))
    oracle = policies.loc["oracle"]
    assert int(oracle["readouts_used"]) == len(readouts)
    assert int(oracle["chosen_trial"]) == best_val_trial
    oracle_test = readouts[best_val_trial]["test_accuracy"]
    assert math.isclose(float(oracle["test_accuracy"]), oracle_test, abs_tol=1e-12)
    for name, row in policies.iterrows():
        if pd.isna(row["chosen_trial"]):
            continue
        chosen = readouts[int(row["chosen_trial"])]
        assert math.isclose(float(row["test_accuracy"]), chosen["test_accuracy"], abs_tol=1e-12), name
        assert math.isclose(float(row["regret"]), oracle_test - chosen["test_accuracy"], abs_tol=1e-12), name
        assert int(row["readouts_used"]) <= len(readouts), name


@pytest.mark.slow
def test_demo_rerun_resumes_without_rerunning(demo_dir: Path) -> None:
    """Re-running the sweep command tops up to n_trials: nothing new is trained."""
    command = sweep_command(demo_dir, size="tiny", n_trials=4, n_jobs=2)
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    import optuna

    study = optuna.load_study(study_name=STUDY_NAME, storage=storage_url(demo_dir))
    assert len(study.trials) == 4


@pytest.mark.slow
def test_cli_results_export(demo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "trials.parquet"
    done = subprocess.run(
        [sys.executable, "-m", "sweep.cli", "results", "--storage", storage_url(demo_dir), "--study", STUDY_NAME,
         "--out", str(out)], capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    frame = pd.read_parquet(out)
    assert sorted(frame["trial"]) == [0, 1, 2, 3]
    assert {"rankme", "alpha", "record_path", "method"} <= set(frame.columns)
    assert np.isfinite(frame.loc[frame["state"] == "COMPLETE", "rankme"]).all()


@pytest.mark.slow
def test_converged_demo_sweeps_the_converged_barlow_grid(tmp_path: Path) -> None:
    """`sweep demo --size converged`: its sweep composes and runs (1 epoch, small splits here), each trial a
    lambda x width point of the converged testbed's grid, the projector's hidden layer as wide as its output,
    the converged schedule (AdamW, cosine, the pilot's lr / wd), RankMe the objective."""
    import optuna
    import yaml

    command = sweep_command(tmp_path, size="converged", n_trials=2, launcher="sweep_inprocess")
    small = ["epochs=1", "checkpoint_every=1", "optim.warmup_epochs=0", "metrics.every_n_epochs=1",
             "data.max_train_samples=300", "data.max_test_samples=120", "data.monitor_size=48", "batch_size=64",
             "save_features=false"]
    done = subprocess.run([*command, *small], capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage_url(tmp_path))
    assert [d.name for d in study.directions] == ["MAXIMIZE"]
    assert "rankme" in str(study.user_attrs["objectives"]) and "alpha" not in str(study.user_attrs["objectives"])
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2
    for trial in complete:
        assert trial.params["method.lambd"] in (1e-4, 3.9810717055349735e-4, 1.584893192461114e-3,
                                                6.309573444801929e-3, 2.5118864315095794e-2, 1e-1)
        assert trial.params["method.projector.out_dim"] in (64, 128, 256, 512)
        config = yaml.safe_load((tmp_path / "sweep" / str(trial.number) / "config.yaml").read_text())
        assert config["method"]["name"] == "barlow_twins"
        assert config["optim"]["name"] == "adamw" and config["optim"]["lr"] == 1e-2
        assert config["optim"]["weight_decay"] == 1e-4 and config["optim"]["scheduler"] == "cosine"
        width = trial.params["method.projector.out_dim"]
        assert config["method"]["projector"]["out_dim"] == width
        assert config["method"]["projector"]["hidden_dims"] in ([width], ["${method.projector.out_dim}"])

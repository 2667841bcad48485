"""The sweeper on the real training job (``sweep.train.job``, ``experiment=tiny``) and its real validator."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from optuna.trial import TrialState

from sweep.study.results import trials_dataframe

pytest.importorskip("sweep.train.job")


def _run(tmp_path: Path, *overrides: str, timeout: float = 400) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "sweep.train.job", "-m", "experiment=tiny", "epochs=1", "hydra/launcher=sweep_local",
           f"hydra.sweeper.storage=sqlite:///{tmp_path / 'study.db'}", "hydra.sweeper.study_name=tiny",
           f"hydra.sweep.dir={tmp_path / 'out'}", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp_path)


@pytest.mark.slow
def test_bad_value_rejected_by_train_validator_before_any_job(tmp_path: Path) -> None:
    proc = _run(tmp_path, "hydra/sweeper=rankme", "+search_space=tiny", "optim.weight_decay=-1.0", timeout=120)
    assert proc.returncode != 0
    assert "rejected by sweep.train.config_check.validate_train_config" in proc.stderr
    assert "optim.weight_decay=-1.0" in proc.stderr
    assert not (tmp_path / "study.db").exists() and not (tmp_path / "out" / ".submitted").exists()


@pytest.mark.slow
def test_tiny_experiment_rankme_alpha_sweep(tmp_path: Path) -> None:
    proc = _run(tmp_path, "hydra/sweeper=rankme_alpha", "+search_space=tiny", "hydra.sweeper.n_trials=2",
                "hydra.sweeper.n_jobs=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    frame = trials_dataframe(f"sqlite:///{tmp_path / 'study.db'}", "tiny")
    assert frame["state"].tolist() == [TrialState.COMPLETE.name] * 2
    assert frame["objective_0"].tolist() == frame["rankme"].tolist()
    assert (frame["objective_1"] - (frame["alpha"] - 1.0).abs()).abs().max() < 1e-12
    for _, row in frame.iterrows():
        assert Path(row["record_path"]).is_file() and (Path(row["run_dir"]) / "checkpoints" / "last.pt").is_file()
        assert row["method"] == row["params_method"]
    assert (tmp_path / "out" / "trials.parquet").is_file()

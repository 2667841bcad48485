"""Helpers for tests that drive the no-op Hydra app as a real multirun (driver = a subprocess)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna

APPS = Path(__file__).resolve().parent
APP = APPS / "noop_app.py"


def base_overrides(tmp: Path, storage: str | None = None) -> list[str]:
    storage = storage or f"sqlite:///{tmp / 'study.db'}"
    return [f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp / 'out'}", "hydra.sweeper.study_name=t"]


def app_command(*overrides: str) -> list[str]:
    return [sys.executable, str(APP), "-m", *overrides]


def app_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}


def run_app(*overrides: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(app_command(*overrides), capture_output=True, text=True, timeout=timeout, env=app_env(),
                          cwd=APPS)


def load(storage: str, name: str = "t") -> optuna.Study:
    from sweep.study.storage import make_storage

    return optuna.load_study(study_name=name, storage=make_storage(storage))

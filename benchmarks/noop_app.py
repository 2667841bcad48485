"""A no-op Hydra task for measuring and testing the sweep machinery without training anything.

It returns a result record as ``sweep.train`` does (``status``, ``metrics``) with ``loss = (x - 0.3)**2``,
so a sweep over ``x`` has a known optimum. Used by benchmarks/overhead.py and tests/launch/test_slurm.py:

    python benchmarks/noop_app.py -m hydra/launcher=sweep_local hydra.sweeper.n_trials=8
"""
from __future__ import annotations

import os
import time
from typing import Any

import hydra
from omegaconf import DictConfig

OPTIMUM_X = 0.3


def noop_record(x: float, sleep_s: float = 0.0) -> dict[str, Any]:
    """The record of one no-op trial; ``sleep_s`` stands in for work."""
    if sleep_s > 0:
        time.sleep(sleep_s)
    return {"status": "completed", "failure_reason": None, "method": "noop",
            "metrics": {"loss": (x - OPTIMUM_X) ** 2, "x": x},
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"), "pid": os.getpid()}


@hydra.main(version_base="1.3", config_path=".", config_name="noop_app")
def main(cfg: DictConfig) -> dict[str, Any]:
    return noop_record(float(cfg.x), float(cfg.sleep_s))


if __name__ == "__main__":
    main()

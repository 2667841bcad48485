"""A no-op Hydra task for sweeper/launcher tests: returns a fake result record shaped like the train job's.

Behaviour is driven by its config so a test can script every trial: ``sleep`` (seconds), ``mode`` (ok, raise,
exit137, nan, prune, bad_record). ``rankme = 10 + x + y`` and ``alpha = 1 + x / 10`` give known objective values.
"""
import json
import math
import os
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


def validate(cfg: DictConfig) -> None:
    """Validation hook used by the tests (stands in for sweep.train.config_check.validate_train_config)."""
    if cfg.sleep < 0:
        raise ValueError(f"sleep={cfg.sleep}: must be >= 0")
    if cfg.method.name == "simclr" and not 0.0 < cfg.method.temperature <= 1.0:
        raise ValueError(f"method.temperature={cfg.method.temperature}: allowed range (0, 1]")


def record(cfg: DictConfig) -> dict:
    run_dir = HydraConfig.get().runtime.output_dir
    x, y = float(cfg.x), float(cfg.y)
    rankme = float("nan") if cfg.mode == "nanloss" else 10.0 + x + y
    status = "failed" if cfg.mode == "nanloss" else "completed"
    rec = {"status": status, "failure_reason": "nan_loss: loss is nan at epoch 1" if status == "failed" else None,
           "method": str(cfg.method.name), "run_dir": run_dir,
           "metrics": {"rankme": rankme, "alpha": 1.0 + x / 10.0, "alpha_r2": 0.99, "loss": 0.5},
           "timings": {"total_s": float(cfg.sleep)}, "pid": os.getpid(),
           "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
           "started": time.time() - float(cfg.sleep), "ended": time.time()}
    Path(run_dir, "result.json").write_text(json.dumps(rec))
    return rec


@hydra.main(version_base="1.3", config_path="conf", config_name="noop")
def main(cfg: DictConfig) -> dict:
    if cfg.mode == "prune":
        from sweep.reporting import current_reporter, pruned_record

        reporter = current_reporter()
        assert reporter is not None, "no pruning reporter in the trial's payload"
        for step in range(3):
            if reporter.report(float(cfg.x) * (step + 1), step):
                return pruned_record(step, float(cfg.x))
    started = time.time()
    time.sleep(float(cfg.sleep))
    if cfg.mode == "raise":
        raise RuntimeError("boom: injected failure")
    if cfg.mode == "exit137":
        os.kill(os.getpid(), 9)
    if cfg.mode == "bad_record":
        return {"status": "completed", "metrics": {"alpha": math.inf}}
    rec = record(cfg)
    rec["started"] = started
    Path(rec["run_dir"], "result.json").write_text(json.dumps(rec))
    return rec


if __name__ == "__main__":
    main()

"""The train job on CUDA: bf16 autocast, channels_last, torch.compile, pinned streaming batches (skipped without
a GPU; ``benchmarks/gpu_check.sh`` runs them). The precision rule itself is tested on CPU."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sweep.config import compose_train_config
from sweep.train.checkpoint import checkpoint_path, load_checkpoint
from sweep.train.job import autocast_dtype

TINY_CUDA = ["experiment=tiny", "device=cuda", "epochs=2", "data.max_train_samples=400", "data.monitor_size=64",
             "batch_size=64", "metrics.collapse_rankme=0", "backbone=resnet18"]


def test_precision_rule_on_cpu() -> None:
    cpu = torch.device("cpu")
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16


def _train(tmp_path: Path, name: str, overrides: list[str]) -> dict[str, Any]:
    from sweep.train.job import train

    return train(compose_train_config([*TINY_CUDA, *overrides], run_dir=str(tmp_path / name)))


@pytest.mark.gpu
def test_auto_precision_is_bf16_on_cuda() -> None:
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    assert autocast_dtype("auto", torch.device("cuda")) is expected


@pytest.mark.gpu
@pytest.mark.parametrize("extra", [["precision=fp32"], ["precision=bf16", "channels_last=true"],
                                   ["precision=bf16", "channels_last=true", "compile=true"]])
def test_train_job_on_cuda_completes_with_finite_metrics(tmp_path: Path, extra: list[str]) -> None:
    record = _train(tmp_path, "run", extra)
    assert record["status"] == "completed", record["failure_reason"]
    m = record["metrics"]
    assert m["rankme"] > 1.0 and math.isfinite(m["alpha"]) and math.isfinite(m["loss"])
    feats = np.load(record["features"]["train"]["backbone"])
    assert feats.dtype == np.float32 and np.isfinite(feats).all()


@pytest.mark.gpu
def test_bf16_features_close_to_fp32_on_the_same_weights(tmp_path: Path) -> None:
    """One trained model, features extracted in fp32 and under bf16 autocast: same spectrum to bf16 accuracy."""
    from omegaconf import OmegaConf

    from sweep.metrics import rankme
    from sweep.train import job

    record = _train(tmp_path, "fp32", ["precision=fp32"])
    spectra = {}
    for precision in ("fp32", "bf16"):
        run_dir = tmp_path / f"extract_{precision}"
        typed = OmegaConf.to_object(compose_train_config([*TINY_CUDA, f"precision={precision}"],
                                                         run_dir=str(run_dir)))
        trial = job.build_trial(typed, torch.device("cuda"), run_dir)
        trial.model.load_state_dict(load_checkpoint(checkpoint_path(record["run_dir"]))["model"])
        paths = job.save_features(trial)
        spectra[precision] = rankme(np.load(paths["test"]["projector"]).astype(np.float64))
    assert spectra["bf16"] == pytest.approx(spectra["fp32"], rel=0.05)

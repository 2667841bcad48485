"""The Lightning callback: scores a held-out loader each epoch, the injected reporter's prune stops the trainer
cleanly with a pruned record, features for the readouts; the Lightning example and a lightly model swept end to
end with pruning (lightly needs torchvision, which does not import beside the CPU torch 2.13.0: it skips there)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pl = pytest.importorskip("lightning.pytorch", reason="the lightning extra is not installed: pip install -e '.[lightning]'")

from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sweep.integrations.lightning import LabelFreeCallback
from sweep.reporting import use_reporter

sys.path.insert(0, str(Path(__file__).parents[1]))
from test_byo_trainer import (
    APPS,
    ROOT,
    PruneFrom,
    blobs,
    check_pruned_and_read_out,
    enqueue,
    pruning_overrides,
    run,
    sweep_overrides,
)


class Tiny(pl.LightningModule):
    """A backbone and a projection head trained to pull two noisy views together (loss: plain MSE)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(6, 16), nn.ReLU())
        self.projection_head = nn.Linear(16, 8)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x = batch[0]
        z1, z2 = self.projection_head(self.backbone(x)), self.projection_head(self.backbone(x + 0.1))
        loss = ((z1 - z2) ** 2).mean()
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def loader(seed: int, n: int = 90) -> DataLoader:
    x, y = blobs(n, seed)
    return DataLoader(TensorDataset(torch.tensor(x), torch.tensor(y)), batch_size=32)


def fit(callback: LabelFreeCallback, epochs: int) -> Any:
    trainer = pl.Trainer(max_epochs=epochs, callbacks=[callback], accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Tiny(), loader(0))
    return trainer


def test_pruning_stops_the_trainer_and_the_record_says_pruned(tmp_path: Path) -> None:
    reporter = PruneFrom(step=2)
    with use_reporter(reporter):  # as the launch layer does around the task function
        callback = LabelFreeCallback(loader(1), run_dir=tmp_path, readout_loaders={"train": loader(2)})
    trainer = fit(callback, epochs=6)
    assert trainer.current_epoch == 2 and reporter.seen == [1, 2]
    assert callback.record is not None and callback.record["status"] == "pruned"
    assert callback.record["failure_reason"].startswith("pruned at epoch 2")
    assert callback.record["features"] == {} and not (tmp_path / "features").exists()  # no readout of a pruned run
    assert (tmp_path / "result.json").is_file()
    assert [row["epoch"] for row in callback.record["monitor"]] == [1, 2]
    assert all(np.isfinite(row["loss"]) for row in callback.record["monitor"])


def test_completed_run_scores_every_n_epochs_and_saves_readout_features(tmp_path: Path) -> None:
    from sweep.selection.readout_jobs import readout_job

    callback = LabelFreeCallback(loader(1), run_dir=tmp_path, every_n_epochs=2, method="tiny",
                                 readout_loaders={s: loader(i + 2) for i, s in enumerate(("train", "val", "test"))})
    fit(callback, epochs=3)
    record = callback.record
    assert record is not None and record["status"] == "completed" and record["method"] == "tiny"
    assert [row["epoch"] for row in record["monitor"]] == [2, 3]  # every 2nd epoch and the last one
    assert np.load(record["features"]["test"]["backbone"]).shape == (90, 16)
    assert np.load(record["features"]["test"]["projector"]).shape == (90, 8)
    out = readout_job(0, str(tmp_path / "result.json"), str(tmp_path / "r.json"), {"max_iter": 100})
    assert out["status"] == "completed" and out["test_accuracy"] > 0.5, out


def test_every_n_epochs_must_be_positive() -> None:
    with pytest.raises(ValueError, match="every_n_epochs must be >= 1, got 0"):
        LabelFreeCallback(loader(1), every_n_epochs=0)


@pytest.mark.slow
def test_lightning_example_sweeps_prunes_and_reads_out(tmp_path: Path) -> None:
    enqueue(tmp_path, "byo_l", [{"lr": 3e-3, "temperature": 0.5, "out_dim": d} for d in (2, 32)])
    run([sys.executable, str(ROOT / "examples" / "lightning_module.py"), "-m", *sweep_overrides(tmp_path, "byo_l"),
         *pruning_overrides(), "epochs=2"], cwd=tmp_path)
    check_pruned_and_read_out(tmp_path, "byo_l")


def _lightly_missing() -> str | None:
    for name in ("torchvision", "lightly"):
        if importlib.util.find_spec(name) is None:
            return (f"{name} is not installed (lightly needs torchvision, which does not import beside the CPU "
                    "torch 2.13.0; run this test where torch==2.14.1 torchvision==0.29.1 lightly are installed)")
        try:
            __import__(name)
        except Exception as err:
            return f"{name} does not import here ({type(err).__name__}: {str(err)[:200]}); it needs e.g. " \
                   "torch==2.14.1 torchvision==0.29.1 beside lightly"
    return None


@pytest.mark.slow
def test_lightly_model_sweeps_prunes_and_reads_out(tmp_path: Path) -> None:
    reason = _lightly_missing()
    if reason:
        pytest.skip(reason)
    enqueue(tmp_path, "lightly", [{"out_dim": d} for d in (2, 32)])
    run([sys.executable, str(APPS / "lightly_app.py"), "-m", *sweep_overrides(tmp_path, "lightly"),
         *[o for o in pruning_overrides() if "search_space.out_dim" not in o]], cwd=APPS)
    check_pruned_and_read_out(tmp_path, "lightly")

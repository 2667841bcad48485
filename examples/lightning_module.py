"""Bring your own trainer, Lightning: a SimCLR-style LightningModule on the embedded digits, swept by our sweeper.

    python examples/lightning_module.py -m hydra.sweeper.n_trials=4

The only sweep-specific code is the :class:`~sweep.integrations.lightning.LabelFreeCallback`: after each
training epoch it scores a held-out unlabelled loader, reports to the trial (the sweep's pruner stops the trainer
cleanly), and at the end saves the readout features and writes the result record this task returns.
Needs ``pip install -e '.[lightning]'``.
"""
from __future__ import annotations

import hydra
import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from digits_data import augment, digits_splits
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sweep.integrations.lightning import LabelFreeCallback


class SimCLR(pl.LightningModule):
    """``backbone`` and ``projection_head``: the names the callback looks for (lightly's convention)."""

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = nn.Sequential(nn.Linear(64, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.hidden),
                                      nn.ReLU())
        self.projection_head = nn.Sequential(nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(),
                                             nn.Linear(cfg.hidden, cfg.out_dim))
        self.views = torch.Generator().manual_seed(cfg.seed)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x = batch[0]
        z1, z2 = (self.projection_head(self.backbone(augment(x, self.cfg.noise, self.views))) for _ in range(2))
        z = F.normalize(torch.cat([z1, z2]), dim=1)
        logits = (z @ z.T / self.cfg.temperature).fill_diagonal_(float("-inf"))
        n = x.shape[0]
        loss = F.cross_entropy(logits, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)


def loader(data: tuple[torch.Tensor, torch.Tensor], batch_size: int, shuffle: bool = False) -> DataLoader:
    return DataLoader(TensorDataset(*data), batch_size=batch_size, shuffle=shuffle)


@hydra.main(version_base="1.3", config_path="conf", config_name="lightning_module")
def main(cfg: DictConfig) -> dict:
    pl.seed_everything(cfg.seed, verbose=False)
    data = digits_splits(cfg.seed)
    callback = LabelFreeCallback(
        loader(data["monitor"], cfg.batch_size),  # held out, unlabelled: the labels in the tuple are ignored
        readout_loaders={split: loader(data[split], 512) for split in ("train", "val", "test")},
        method="simclr_lightning", config=cfg)
    trainer = pl.Trainer(max_epochs=cfg.epochs, callbacks=[callback], accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(SimCLR(cfg), loader(data["ssl"], cfg.batch_size, shuffle=True))
    return callback.record


if __name__ == "__main__":
    main()

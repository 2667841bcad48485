"""Bring your own trainer, plain PyTorch: a SimCLR-style MLP on the embedded digits, swept by our sweeper.

    python examples/plain_torch.py -m hydra.sweeper.n_trials=4

The only sweep-specific code is the :class:`~sweep.integrations.LabelFreeMonitor`: it scores the held-out
unlabelled set after each epoch, reports to the trial (the sweep's pruner may stop the run: ``should_stop``) and
writes the result record, with the feature files the readouts use.
"""
from __future__ import annotations

import hydra
import torch
import torch.nn.functional as F
from digits_data import augment, digits_splits
from omegaconf import DictConfig
from torch import nn

from sweep.integrations import LabelFreeMonitor


def build_model(cfg: DictConfig) -> tuple[nn.Module, nn.Module]:
    backbone = nn.Sequential(nn.Linear(64, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU())
    projector = nn.Sequential(nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.out_dim))
    return backbone, projector


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: each view must pick its partner among the 2B - 1 other embeddings of the batch."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    n = z1.shape[0]
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(logits, targets)


@hydra.main(version_base="1.3", config_path="conf", config_name="plain_torch")
def main(cfg: DictConfig) -> dict:
    torch.manual_seed(cfg.seed)
    data = digits_splits(cfg.seed)
    backbone, projector = build_model(cfg)
    params = [*backbone.parameters(), *projector.parameters()]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    monitor = LabelFreeMonitor(method="simclr_mlp", config=cfg)
    x_ssl = data["ssl"][0]
    for epoch in range(1, cfg.epochs + 1):
        losses = []
        for idx in torch.randperm(len(x_ssl), generator=gen).split(cfg.batch_size):
            x = x_ssl[idx]
            loss = nt_xent(projector(backbone(augment(x, cfg.noise, gen))),
                           projector(backbone(augment(x, cfg.noise, gen))), cfg.temperature)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        with torch.no_grad():
            for x in data["monitor"][0].split(cfg.batch_size):  # streamed batch by batch: any size of set
                h = backbone(x)
                monitor.update(projector(h), h)
        monitor.end_epoch(epoch, loss=sum(losses) / len(losses))
        if monitor.should_stop:  # pruned by the sweep (or collapsed): the record says so
            break
    if monitor.status == "completed":
        with torch.no_grad():
            for split in ("train", "val", "test"):
                x, y = data[split]
                monitor.save_features(split, backbone(x), y, projector(backbone(x)))
    return monitor.finish()


if __name__ == "__main__":
    main()

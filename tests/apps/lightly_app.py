"""A LightningModule built from lightly's own SimCLR parts (ResNet-9 generator, projection head, NT-Xent loss)
with our LabelFreeCallback, on the embedded digits. Needs torchvision + lightly (not beside torch 2.13.0 CPU)."""
import hydra
import lightning.pytorch as pl
import numpy as np
import torch
from lightly.loss import NTXentLoss
from lightly.models import ResNetGenerator
from lightly.models.modules import SimCLRProjectionHead
from omegaconf import DictConfig
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sweep.integrations.lightning import LabelFreeCallback


class LightlySimCLR(pl.LightningModule):
    def __init__(self, cfg: DictConfig) -> None:
        super().__init__()
        resnet = ResNetGenerator("resnet-9", width=0.125)
        self.backbone = nn.Sequential(*list(resnet.children())[:-1], nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.projection_head = SimCLRProjectionHead(64, 64, cfg.out_dim)
        self.criterion = NTXentLoss(temperature=cfg.temperature)
        self.lr, self.views = cfg.lr, torch.Generator().manual_seed(0)

    def training_step(self, batch, batch_idx):
        x = batch[0]
        view = lambda: x + 0.3 * torch.randn(x.shape, generator=self.views)
        loss = self.criterion(self.projection_head(self.backbone(view())), self.projection_head(self.backbone(view())))
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def splits() -> dict:
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    x = torch.tensor(x[order] / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8).repeat(1, 3, 1, 1)
    y = torch.tensor(y[order])
    cuts = {"monitor": (0, 300), "val": (300, 500), "test": (500, 800), "train": (800, 1797)}
    return {name: TensorDataset(x[a:b], y[a:b]) for name, (a, b) in cuts.items()}


@hydra.main(version_base="1.3", config_path="conf", config_name="lightly_app")
def main(cfg: DictConfig) -> dict:
    pl.seed_everything(0, verbose=False)
    data = splits()
    callback = LabelFreeCallback(DataLoader(data["monitor"], batch_size=128), method="lightly_simclr", config=cfg,
                                 readout_loaders={s: DataLoader(data[s], batch_size=256) for s in ("train", "val", "test")})
    trainer = pl.Trainer(max_epochs=cfg.epochs, callbacks=[callback], accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(LightlySimCLR(cfg), DataLoader(data["train"], batch_size=128, shuffle=True))
    return callback.record


if __name__ == "__main__":
    main()

"""A Lightning callback that runs :class:`LabelFreeMonitor` on a held-out unlabelled loader after each training
epoch, reports to the sweep's trial (the pruner stops the trainer cleanly) and writes the result record.

Needs the ``lightning`` extra (``pip install -e '.[lightning]'``). The task function returns
``callback.record``; a pruned run's record says ``status: pruned``. Under DDP only rank 0 scores and reports (the
held-out loader is read whole there, as optuna-integration's pruning callback does), and its decision to stop is
broadcast so that every rank stops at the same epoch.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Optional

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback

from sweep.integrations.monitor import LabelFreeMonitor

# (module, inputs) -> (projector output z, backbone features h or None)
EmbedFn = Callable[[Any, torch.Tensor], tuple[torch.Tensor, Optional[torch.Tensor]]]


def default_embed(module: Any, x: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``module.backbone`` then ``module.projection_head`` (lightly's and solo-learn's names; ``projector``
    too) when the module has them, else ``module(x)``: a tensor is z, a tuple is (z, h)."""
    backbone = getattr(module, "backbone", None)
    head = getattr(module, "projection_head", None) or getattr(module, "projector", None)
    if backbone is not None and head is not None:
        h = backbone(x).flatten(1)
        return head(h), h
    out = module(x)
    if isinstance(out, torch.Tensor):
        return out, None
    return out[0], (out[1] if len(out) > 1 else None)


def batch_inputs(batch: Any) -> Any:
    """The inputs of a batch: the first element of a (x, y, ...) tuple or list, else the batch itself."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


class LabelFreeCallback(Callback):
    """Label-free metrics of ``loader`` every ``every_n_epochs`` epochs (and after the last), reported to the
    running trial; at the end of fit, features of ``readout_loaders`` ({"train"|"val"|"test": loader of
    (x, y)}) are saved for the readouts and the record is written (``self.record``).

    ``embed`` maps (module, x) to (z, h); ``loss_key`` names the logged training loss kept in each row;
    other keyword arguments go to :class:`LabelFreeMonitor` (``run_dir``, ``reporter``, ``method``, ``config``,
    ``collapse_rankme``, ``alpha_window``).
    """

    def __init__(self, loader: Iterable[Any], *, embed: EmbedFn = default_embed,
                 readout_loaders: Optional[Mapping[str, Iterable[Any]]] = None, every_n_epochs: int = 1,
                 loss_key: str = "train_loss", **monitor_kwargs: Any) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.loader, self.embed, self.readout_loaders = loader, embed, dict(readout_loaders or {})
        self.every_n_epochs, self.loss_key = every_n_epochs, loss_key
        self.monitor = LabelFreeMonitor(**monitor_kwargs)
        self.record: Optional[dict[str, Any]] = None

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs not in (None, -1) and epoch >= trainer.max_epochs  # -1: no epoch limit
        if epoch % self.every_n_epochs and not last:
            return
        stop = False
        if trainer.is_global_zero:
            self._score(pl_module, epoch, trainer.callback_metrics.get(self.loss_key))
            stop = self.monitor.should_stop
        if trainer.strategy.broadcast(stop, src=0):
            trainer.should_stop = True

    def _score(self, module: LightningModule, epoch: int, loss: Any) -> None:
        with _eval_mode(module):
            for batch in self.loader:
                z, h = self.embed(module, batch_inputs(batch).to(module.device))
                self.monitor.update(z, h)
        extra = {} if loss is None else {"loss": float(loss)}
        self.monitor.end_epoch(epoch, **extra)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        if self.monitor.status == "completed":
            for split, loader in self.readout_loaders.items():
                self._save_split(pl_module, split, loader)
        self.record = self.monitor.finish()

    def _save_split(self, module: LightningModule, split: str, loader: Iterable[Any]) -> None:
        """Backbone features (z when the module has no backbone), projector output and labels of one split."""
        hs, zs, ys = [], [], []
        with _eval_mode(module):
            for x, y, *_ in loader:
                z, h = self.embed(module, x.to(module.device))
                hs.append((z if h is None else h).flatten(1).float().cpu())
                zs.append(z.flatten(1).float().cpu())
                ys.append(torch.as_tensor(y).cpu())
        self.monitor.save_features(split, torch.cat(hs), torch.cat(ys), torch.cat(zs))


class _eval_mode:
    """``torch.no_grad`` + eval mode for the duration, the module's previous mode restored after."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module, self.was_training = module, module.training
        self.no_grad = torch.no_grad()

    def __enter__(self) -> None:
        self.no_grad.__enter__()
        self.module.eval()

    def __exit__(self, *exc: object) -> None:
        self.module.train(self.was_training)
        self.no_grad.__exit__(*exc)

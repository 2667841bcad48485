"""The trial job: train one SSL method, monitor label-free metrics, save features, write the result record.

``train(cfg)`` is what every launcher runs (in-process, subprocess, SLURM); ``main`` is its Hydra entry
(``python -m sweep.train.job experiment=tiny``). Failures of the *training* (NaN/inf loss, collapsed
embeddings) are results, not errors: the run stops, and a record with ``status="failed"`` and the reason is
written and returned. Config errors raise :class:`sweep.config.ConfigError` before anything runs.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from sweep.config import conf_dir, register_configs, validate_train_config
from sweep.config.schema import TrainConfig
from sweep.train.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint, set_rng_state
from sweep.train.monitor import extract, monitor_row
from sweep.train.optim import build_optimizer, build_scheduler
from sweep.train.records import build_record, write_monitor_csv, write_record
from sweep.train.splits import SplitIndices, make_splits

# Per-epoch generators are seeded with seed * stride + epoch, so a resumed epoch replays exactly.
EPOCH_SEED_STRIDE = 1_000_003
FEATURE_SPLITS = ("train", "val", "test")
PRUNED_PREFIX = "pruned"


# ----------------------------------------------------------------------------- environment
def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Python, numpy and torch global RNGs (model init, MoCo's queue); batches use per-epoch generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def epoch_generators(seed: int, epoch: int, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    """(CPU generator for the shuffle, device generator for the augmentations) of one epoch."""
    s = seed * EPOCH_SEED_STRIDE + epoch
    return torch.Generator().manual_seed(s), torch.Generator(device=device).manual_seed(s)


# ----------------------------------------------------------------------------- state of one trial
@dataclass
class Progress:
    """What the checkpoint carries besides module states."""

    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    labels: Optional[np.ndarray] = None  # previous checkpoint's k-means labels (for ami_checkpoint)
    timings: dict[str, float] = field(default_factory=lambda: {"train_s": 0.0, "metrics_s": 0.0})


@dataclass
class Trial:
    """One run: typed config, split tensors (the SSL split already on the device), model, optimiser."""

    cfg: TrainConfig
    device: torch.device
    run_dir: Path
    images: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor]
    model: torch.nn.Module
    augmenter: Any
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    steps_per_epoch: int
    progress: Progress = field(default_factory=Progress)


Tensors = dict[str, torch.Tensor]


def _split_tensors(dataset: Any, idx: SplitIndices) -> tuple[Tensors, Tensors]:
    tr, te = dataset.train, dataset.test
    images = {"ssl": tr.images[idx.ssl_train], "monitor": tr.images[idx.monitor],
              "train": tr.images[idx.probe_train], "val": tr.images[idx.val], "test": te.images[idx.test]}
    labels = {"train": tr.labels[idx.probe_train], "val": tr.labels[idx.val], "test": te.labels[idx.test]}
    return images, labels


def build_trial(cfg: TrainConfig, device: torch.device, run_dir: Path) -> Trial:
    """Load data, split it, build model / augmenter / optimiser / schedule (seeded by ``cfg.seed``)."""
    from sweep.data import load_dataset
    from sweep.ssl import Augmenter, build_backbone, build_method

    dataset = load_dataset(cfg.data)
    splits = make_splits(len(dataset.train.labels), len(dataset.test.labels), cfg.data)
    images, labels = _split_tensors(dataset, splits)
    images["ssl"] = images["ssl"].to(device)
    seed_everything(cfg.seed)
    backbone, feat_dim = build_backbone(cfg.backbone, tuple(dataset.input_shape))
    model = build_method(cfg.method, backbone, feat_dim).to(device)
    optimizer = build_optimizer(model, cfg.optim)
    steps = max(1, images["ssl"].shape[0] // effective_batch_size(cfg, images["ssl"].shape[0]))
    scheduler = build_scheduler(optimizer, cfg.optim, steps, cfg.epochs)
    return Trial(cfg, device, run_dir, images, labels, model, Augmenter(cfg.augment), optimizer, scheduler,
                 steps)


def effective_batch_size(cfg: TrainConfig, n: int) -> int:
    """``cfg.batch_size``, capped at the number of SSL images (tiny subsets still take a step)."""
    return min(cfg.batch_size, n)


# ----------------------------------------------------------------------------- checkpoints
def save(trial: Trial) -> None:
    p = trial.progress
    save_checkpoint(checkpoint_path(trial.run_dir), {
        "model": trial.model.state_dict(), "optimizer": trial.optimizer.state_dict(),
        "scheduler": trial.scheduler.state_dict(), "epoch": p.epoch, "step": p.step, "history": p.history,
        "labels": p.labels, "timings": p.timings, "config": resume_key(trial.cfg),
    })


# Fields that may change between an interrupted run and its resumption without changing the result.
RESUME_NEUTRAL = ("run_dir", "resume", "num_threads", "device", "save_features", "checkpoint_every")


def resume_key(cfg: TrainConfig) -> dict[str, Any]:
    """The config a checkpoint belongs to, minus the fields that do not affect training."""
    plain = OmegaConf.to_container(OmegaConf.structured(cfg))
    return {k: v for k, v in plain.items() if k not in RESUME_NEUTRAL}  # type: ignore[union-attr]


def restore(trial: Trial) -> bool:
    """Load ``checkpoints/last.pt`` into ``trial`` when it exists; True if it did."""
    path = checkpoint_path(trial.run_dir)
    state = load_checkpoint(path)
    if state is None:
        return False
    if state.get("config") != resume_key(trial.cfg):
        changed = sorted(k for k, v in resume_key(trial.cfg).items() if state.get("config", {}).get(k) != v)
        raise ValueError(f"resume: {path} was written by a different config (differs in {changed}); "
                         "use a new run_dir or resume=false")
    trial.model.load_state_dict(state["model"])
    trial.optimizer.load_state_dict(state["optimizer"])
    trial.scheduler.load_state_dict(state["scheduler"])
    trial.progress = Progress(state["epoch"], state["step"], state["history"], state["labels"],
                              state["timings"])
    set_rng_state(state["rng"])
    return True


# ----------------------------------------------------------------------------- training
def _step(trial: Trial, x: torch.Tensor, aug_gen: torch.Generator) -> float:
    """One optimiser step on two augmented views of ``x``; returns the loss (a NaN/inf one is not applied)."""
    loss = trial.model.loss(trial.augmenter(x, aug_gen), trial.augmenter(x, aug_gen))
    value = float(loss.detach())
    if not np.isfinite(value):
        return value
    trial.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if trial.cfg.optim.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(trial.model.parameters(), trial.cfg.optim.grad_clip)
    trial.optimizer.step()
    trial.scheduler.step()
    trial.progress.step += 1
    trial.model.after_step(trial.progress.step / (trial.steps_per_epoch * trial.cfg.epochs))
    return value


def run_epoch(trial: Trial, epoch: int) -> tuple[float, Optional[str]]:
    """Train one epoch (drop-last batches); returns (mean loss, failure reason or None)."""
    data = trial.images["ssl"]
    bs = effective_batch_size(trial.cfg, data.shape[0])
    shuffle_gen, aug_gen = epoch_generators(trial.cfg.seed, epoch, trial.device)
    order = torch.randperm(data.shape[0], generator=shuffle_gen).to(trial.device)
    trial.model.train()
    losses = []
    for b in range(trial.steps_per_epoch):
        value = _step(trial, data[order[b * bs : (b + 1) * bs]], aug_gen)
        if not np.isfinite(value):
            return float("nan"), f"nan_loss: loss={value} at epoch {epoch} step {b + 1}"
        losses.append(value)
    return float(np.mean(losses)), None


def monitor(trial: Trial, epoch: int, loss: float) -> Optional[str]:
    """Append one monitoring row to the history (and monitor.csv); returns a failure reason or None."""
    t0 = time.perf_counter()
    row, labels, reason = monitor_row(trial.model, trial.images["monitor"], trial.cfg.metrics, trial.device,
                                      trial.progress.labels, trial.augmenter, trial.cfg.seed)
    trial.progress.history.append({"epoch": epoch, "loss": loss, **row})
    trial.progress.labels = labels
    write_monitor_csv(trial.progress.history, trial.run_dir)
    trial.progress.timings["metrics_s"] += time.perf_counter() - t0
    return reason


def _monitor_due(cfg: TrainConfig, epoch: int) -> bool:
    n = cfg.metrics.every_n_epochs
    return epoch == cfg.epochs or (n > 0 and epoch % n == 0)


def fit(trial: Trial, reporter: Any = None) -> Optional[str]:
    """Train from the current epoch to ``cfg.epochs``; returns a failure / pruning reason or None.

    ``reporter`` (a sweep's pruning reporter, see ``sweep.study.pruning``) sees every monitoring row and
    may stop the run early: the label-free metrics are natural intermediate values.
    """
    cfg = trial.cfg
    for epoch in range(trial.progress.epoch + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        loss, reason = run_epoch(trial, epoch)
        trial.progress.timings["train_s"] += time.perf_counter() - t0
        if reason is not None:
            return reason
        trial.progress.epoch = epoch
        if _monitor_due(cfg, epoch):
            if (reason := monitor(trial, epoch, loss)) is not None:
                return reason
            value = None if reporter is None else reporter.report_metrics(trial.progress.history[-1], epoch)
            if value is not None:
                save(trial)
                return f"{PRUNED_PREFIX} at epoch {epoch}: objective {value:.4g}"
        if epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs:
            save(trial)
    return None


def run_status(reason: Optional[str]) -> str:
    """completed / pruned / failed, from what ``fit`` returned."""
    if reason is None:
        return "completed"
    return "pruned" if reason.startswith(PRUNED_PREFIX) else "failed"


def pruning_reporter() -> Any:
    """The sweep's pruning reporter when this run is a trial of a sweep with a pruner, else None."""
    from sweep.study.pruning import reporter_from_env

    return reporter_from_env()


# ----------------------------------------------------------------------------- outputs
def save_features(trial: Trial) -> dict[str, dict[str, str]]:
    """Backbone features, projector embeddings and labels of train / val / test as .npy (for readouts)."""
    out_dir = trial.run_dir / "features"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, dict[str, str]] = {}
    for split in FEATURE_SPLITS:
        feats, embs, _ = extract(trial.model, trial.images[split], trial.cfg.metrics.extract_batch_size,
                                 trial.device)
        arrays = {"backbone": feats.numpy(), "projector": embs.numpy(), "labels": trial.labels[split].numpy()}
        paths[split] = {}
        for kind, arr in arrays.items():
            path = out_dir / f"{split}_{kind}.npy"
            np.save(path, arr)
            paths[split][kind] = str(path)
    return paths


def _plain_config(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one trial end to end and return its result record (also written to ``<run_dir>/result.json``)."""
    t_start = time.perf_counter()
    validate_train_config(cfg)
    typed: TrainConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    run_dir = Path(typed.run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    if typed.num_threads is not None:
        torch.set_num_threads(typed.num_threads)
    trial = build_trial(typed, resolve_device(typed.device), run_dir)
    if typed.resume:
        restore(trial)
    reason = fit(trial, pruning_reporter())
    features: dict[str, dict[str, str]] = {}
    if reason is None and typed.save_features:
        t0 = time.perf_counter()
        features = save_features(trial)
        trial.progress.timings["features_s"] = time.perf_counter() - t0
    timings = {**trial.progress.timings, "total_s": time.perf_counter() - t_start}
    record = build_record(
        status=run_status(reason), failure_reason=reason, method=typed.method.name,
        run_dir=run_dir, config=_plain_config(cfg), history=trial.progress.history, features=features,
        timings=timings, epochs_completed=trial.progress.epoch,
    )
    write_record(record, run_dir)
    return record


# ----------------------------------------------------------------------------- Hydra entry
register_configs()  # before @hydra.main composes: the YAML tree names these schema nodes


@hydra.main(config_path=str(conf_dir()), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> dict[str, Any]:
    """Hydra task function: validate, train, return the record (the sweeper turns it into objectives)."""
    register_configs()
    validate_train_config(cfg)
    return train(cfg)


if __name__ == "__main__":
    main()

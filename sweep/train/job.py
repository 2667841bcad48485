"""The trial job: train one SSL method, monitor label-free metrics, save features, write the result record.

``train(cfg)`` is what every launcher runs (in-process, subprocess, SLURM); ``main`` is its Hydra entry
(``python -m sweep.train.job experiment=tiny``). Failures of the *training* (NaN/inf loss, collapsed
embeddings) are results, not errors: the run stops, and a record with ``status="failed"`` and the reason is
written and returned. Config errors raise :class:`sweep.config.ConfigError` before anything runs.
"""
from __future__ import annotations

import contextlib
import importlib
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from sweep.config import conf_dir, register_configs
from sweep.config.schema import TrainConfig
from sweep.data import Rows, StreamData, iterate, open_dataset, sequential_batches, to_float
from sweep.progress_bar import progress as progress_bar
from sweep.reporting import Reporter, current_reporter
from sweep.train.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint, set_rng_state
from sweep.train.distributed import Dist
from sweep.train.distributed import init as init_distributed
from sweep.train.distributed import shutdown as shutdown_distributed
from sweep.train.epoch_metrics import extract_batch, monitor_row
from sweep.train.optim import build_optimizer, build_scheduler
from sweep.train.records import build_record, write_monitor_csv, write_record
from sweep.train.splits import SplitIndices, make_splits
from sweep.train.config_check import validate_train_config

# Per-epoch generators are seeded with seed * stride + epoch, so a resumed epoch replays exactly; each DDP rank
# shifts its augmentation seed by rank * RANK_SEED_STRIDE (rank 0 draws what a single process draws).
EPOCH_SEED_STRIDE = 1_000_003
RANK_SEED_STRIDE = 7_919
FEATURE_SPLITS = ("train", "val", "test")
PRUNED_PREFIX = "pruned"
# Experiment trackers (sweep.integrations.trackers) live in a layer above training: the job calls their factory by
# name, as sweep.reporting does the pruning reporter, and hands the tracker its finished record.
TRACKER_FACTORY = "sweep.integrations.trackers:open_tracker"


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


def epoch_generators(seed: int, epoch: int, device: torch.device, rank: int = 0
                     ) -> tuple[torch.Generator, torch.Generator]:
    """(CPU generator for the shuffle, same on every rank; device generator for this rank's augmentations)."""
    s = seed * EPOCH_SEED_STRIDE + epoch
    return (torch.Generator().manual_seed(s),
            torch.Generator(device=device).manual_seed(s + rank * RANK_SEED_STRIDE))


def autocast_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """bfloat16 for ``bf16``, and for ``auto`` on a CUDA device that supports it; None = float32 throughout."""
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


# ----------------------------------------------------------------------------- state of one trial
@dataclass
class Progress:
    """What the checkpoint carries besides module states."""

    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    labels: Optional[np.ndarray] = None  # previous checkpoint's k-means labels (for ami_checkpoint)
    timings: dict[str, float] = field(default_factory=lambda: {"train_s": 0.0, "metrics_s": 0.0})


class LossStep(torch.nn.Module):
    """``forward(view1, view2) = method.loss(view1, view2)``: the module DDP and torch.compile wrap (DDP syncs
    gradients only for outputs of its own forward)."""

    def __init__(self, method: torch.nn.Module) -> None:
        super().__init__()
        self.method = method

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        return self.method.loss(view1, view2)


class _LazyImages(dict):
    """``trial.images[split]``: the float32 rows of one split, read when asked (small sets, benchmarks)."""

    def __init__(self, trial: Trial) -> None:
        super().__init__()
        self.trial = trial

    def __missing__(self, split: str) -> torch.Tensor:
        rows = self.trial.split_rows(split)
        batches = sequential_batches(len(rows), 4096)
        data = self.trial.data
        return torch.cat([to_float(x, torch.device("cpu"), rows.max_value, data.image_size)
                          for x, _ in iterate(rows, batches, 0)])


@dataclass
class Trial:
    """One run: typed config, the data as readers, the split rows, model, optimiser (and DDP place)."""

    cfg: TrainConfig
    device: torch.device
    run_dir: Path
    data: StreamData
    rows: dict[str, np.ndarray]  # split -> rows of data.train ("test": of data.test)
    labels: dict[str, torch.Tensor]
    monitor_images: torch.Tensor  # float32 on the device: the small held-out split, read once
    model: torch.nn.Module
    loss_step: torch.nn.Module  # LossStep, wrapped by DDP / torch.compile when asked
    augmenter: Any
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    steps_per_epoch: int
    dist: Dist = field(default_factory=Dist)
    amp_dtype: Optional[torch.dtype] = None
    progress: Progress = field(default_factory=Progress)

    def split_rows(self, split: str) -> Rows:
        """The rows of ``split`` as a streamable set; ``ssl`` adds STL-10's unlabelled images when opened."""
        source = self.data.test if split == "test" else self.data.train
        parts = [(source, self.rows[split])]
        if split == "ssl" and self.data.unlabeled is not None:
            parts.append((self.data.unlabeled, np.arange(len(self.data.unlabeled.labels))))
        return Rows(parts)

    @property
    def images(self) -> dict[str, torch.Tensor]:
        """Float32 CPU tensors by split, read on first access: for small sets only (the testbed's readouts)."""
        return _LazyImages(self)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def _split_rows(data: StreamData, idx: SplitIndices) -> tuple[dict[str, np.ndarray], dict[str, torch.Tensor]]:
    """Rows of the raw splits per trial split (``make_splits`` indexes the kept rows ``data.*_rows``)."""
    tr, te = data.train_rows, data.test_rows
    rows = {"ssl": tr[idx.ssl_train.numpy()], "monitor": tr[idx.monitor.numpy()],
            "train": tr[idx.probe_train.numpy()], "val": tr[idx.val.numpy()], "test": te[idx.test.numpy()]}
    labels = {k: torch.from_numpy((data.test if k == "test" else data.train).labels[rows[k]])
              for k in ("train", "val", "test")}
    return rows, labels


def _read_all(rows: Rows, data: StreamData, cfg: TrainConfig, device: torch.device) -> torch.Tensor:
    batches = sequential_batches(len(rows), cfg.metrics.extract_batch_size)
    return torch.cat([to_float(x, device, rows.max_value, data.image_size)
                      for x, _ in iterate(rows, batches, cfg.data.num_workers)])


def _wrap(model: torch.nn.Module, cfg: TrainConfig, device: torch.device, d: Dist) -> torch.nn.Module:
    """The loss module as trained: DDP across ranks (synchronised BatchNorm on CUDA), then compiled if asked."""
    step: torch.nn.Module = LossStep(model)
    if d.world > 1:
        if device.type == "cuda":
            step = torch.nn.SyncBatchNorm.convert_sync_batchnorm(step)
        step = torch.nn.parallel.DistributedDataParallel(
            step, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(step) if cfg.compile else step


def build_trial(cfg: TrainConfig, device: torch.device, run_dir: Path, d: Optional[Dist] = None) -> Trial:
    """Open data, split it, build model / augmenter / optimiser / schedule (seeded by ``cfg.seed``)."""
    from sweep.ssl import Augmenter, build_backbone, build_method

    d = d or Dist()
    data = open_dataset(cfg.data)
    splits = make_splits(len(data.train_rows), len(data.test_rows), cfg.data)
    rows, labels = _split_rows(data, splits)
    seed_everything(cfg.seed)
    backbone, feat_dim = build_backbone(cfg.backbone, tuple(data.input_shape))
    model = build_method(cfg.method, backbone, feat_dim).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg.optim)
    trial = Trial(cfg, device, run_dir, data, rows, labels, torch.empty(0), model, model, Augmenter(cfg.augment),
                  optimizer, None, 1, d, autocast_dtype(cfg.precision, device))  # type: ignore[arg-type]
    n_ssl = len(trial.split_rows("ssl"))
    trial.steps_per_epoch = max(1, n_ssl // effective_batch_size(cfg, n_ssl))
    trial.scheduler = build_scheduler(optimizer, cfg.optim, trial.steps_per_epoch, cfg.epochs)
    trial.monitor_images = _read_all(trial.split_rows("monitor"), data, cfg, device)
    trial.loss_step = _wrap(model, cfg, device, d)
    return trial


def effective_batch_size(cfg: TrainConfig, n: int) -> int:
    """``cfg.batch_size``, capped at the number of SSL images (tiny subsets still take a step)."""
    return min(cfg.batch_size, n)


# ----------------------------------------------------------------------------- checkpoints
def save(trial: Trial) -> None:
    """Rank 0 writes ``checkpoints/last.pt`` (every rank holds the same weights)."""
    if not trial.dist.is_main:
        return
    p = trial.progress
    save_checkpoint(checkpoint_path(trial.run_dir), {
        "model": trial.model.state_dict(), "optimizer": trial.optimizer.state_dict(),
        "scheduler": trial.scheduler.state_dict(), "epoch": p.epoch, "step": p.step, "history": p.history,
        "labels": p.labels, "timings": p.timings, "config": resume_key(trial.cfg),
    })


# Fields that may change between an interrupted run and its resumption without changing the result.
RESUME_NEUTRAL = ("run_dir", "resume", "num_threads", "device", "save_features", "checkpoint_every", "compile",
                  "tracking")
RESUME_NEUTRAL_DATA = ("num_workers", "cache_dir")  # the same pixels either way


def resume_key(cfg: TrainConfig) -> dict[str, Any]:
    """The config a checkpoint belongs to, minus the fields that do not affect training."""
    plain: dict[str, Any] = OmegaConf.to_container(OmegaConf.structured(cfg))  # type: ignore[assignment]
    key = {k: v for k, v in plain.items() if k not in RESUME_NEUTRAL}
    key["data"] = {k: v for k, v in key["data"].items() if k not in RESUME_NEUTRAL_DATA}
    return key


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
    """One optimiser step on two augmented views of ``x``; returns the loss (mean over ranks). A NaN/inf loss
    is not applied, on any rank: every rank sees the same mean, so all stop together."""
    views = [trial.augmenter(x, aug_gen), trial.augmenter(x, aug_gen)]
    if trial.cfg.channels_last:
        views = [v.contiguous(memory_format=torch.channels_last) for v in views]
    with trial.autocast():
        loss = trial.loss_step(*views)
    value = trial.dist.mean(float(loss.detach()))
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


def epoch_batches(n: int, batch_size: int, steps: int, gen: torch.Generator, d: Dist) -> list[np.ndarray]:
    """This rank's share of each drop-last global batch of a seeded permutation of ``n`` positions."""
    order = torch.randperm(n, generator=gen).numpy()
    return [d.shard(order[b * batch_size : (b + 1) * batch_size]) for b in range(steps)]


def run_epoch(trial: Trial, epoch: int) -> tuple[float, Optional[str]]:
    """Train one epoch (drop-last batches streamed from the SSL rows); returns (mean loss, failure or None)."""
    rows = trial.split_rows("ssl")
    bs = effective_batch_size(trial.cfg, len(rows))
    shuffle_gen, aug_gen = epoch_generators(trial.cfg.seed, epoch, trial.device, trial.dist.rank)
    batches = epoch_batches(len(rows), bs, trial.steps_per_epoch, shuffle_gen, trial.dist)
    trial.model.train()
    losses = []
    stream = iterate(rows, batches, trial.cfg.data.num_workers, pin_memory=trial.device.type == "cuda")
    for b, (pixels, _) in enumerate(stream):
        x = to_float(pixels, trial.device, rows.max_value, trial.data.image_size)
        value = _step(trial, x, aug_gen)
        if not np.isfinite(value):
            return float("nan"), f"nan_loss: loss={value} at epoch {epoch} step {b + 1}"
        losses.append(value)
    trial.dist.sync_buffers(trial.model)
    return float(np.mean(losses)), None


def monitor(trial: Trial, epoch: int, loss: float) -> Optional[str]:
    """Append one monitoring row to the history (and monitor.csv); returns a failure reason or None.

    Rank 0 computes the row on the (small) monitoring split and every rank receives it, so all ranks take the
    same decisions (collapse, pruning)."""
    t0 = time.perf_counter()
    result: Any = None
    if trial.dist.is_main:
        with trial.autocast():
            result = monitor_row(trial.model, trial.monitor_images, trial.cfg.metrics, trial.device,
                                 trial.progress.labels, trial.augmenter, trial.cfg.seed)
    row, labels, reason = trial.dist.broadcast(result)
    trial.progress.history.append({"epoch": epoch, "loss": loss, **row})
    trial.progress.labels = labels
    if trial.dist.is_main:
        write_monitor_csv(trial.progress.history, trial.run_dir)
    trial.progress.timings["metrics_s"] += time.perf_counter() - t0
    return reason


def _monitor_due(cfg: TrainConfig, epoch: int) -> bool:
    n = cfg.metrics.every_n_epochs
    return epoch == cfg.epochs or (n > 0 and epoch % n == 0)


def fit(trial: Trial, reporter: Optional[Reporter] = None) -> Optional[str]:
    """Train from the current epoch to ``cfg.epochs``; returns a failure / pruning reason or None.

    ``reporter`` (a sweep's pruning reporter, see ``sweep.reporting``) sees every monitoring row and
    may stop the run early: the label-free metrics are natural intermediate values.
    """
    cfg = trial.cfg
    bar = progress_bar(range(trial.progress.epoch + 1, cfg.epochs + 1), enabled=trial.dist.is_main,
                       desc="epochs", unit="epoch", initial=trial.progress.epoch, total=cfg.epochs)
    with bar:
        for epoch in bar:
            t0 = time.perf_counter()
            loss, reason = run_epoch(trial, epoch)
            trial.progress.timings["train_s"] += time.perf_counter() - t0
            if reason is not None:
                return reason
            trial.progress.epoch = epoch
            bar.set_postfix(loss=f"{loss:.4g}")
            if _monitor_due(cfg, epoch):
                if (reason := monitor(trial, epoch, loss)) is not None:
                    return reason
                bar.set_postfix(loss=f"{loss:.4g}", rankme=f"{trial.progress.history[-1]['rankme']:.4g}")
                value = None
                if trial.dist.is_main:  # only rank 0 talks to the study; every rank follows its decision
                    value = None if reporter is None else reporter.report_metrics(trial.progress.history[-1], epoch)
                value = trial.dist.broadcast(value)
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


def pruning_reporter() -> Optional[Reporter]:
    """The reporter the launcher handed this trial (None outside a sweep or without a pruner): the job never
    opens the study itself."""
    return current_reporter()


# ----------------------------------------------------------------------------- outputs
class _NpyRows:
    """A float32 (n, D) ``.npy`` file filled batch by batch through a memory map: features never sit in memory
    whole (ImageNet's 1.28M x 2048 backbone features are 10 GB)."""

    def __init__(self, path: Path, n: int) -> None:
        self.path, self.n, self.array, self.filled = path, n, None, 0

    def write(self, rows: torch.Tensor) -> None:
        if self.array is None:
            self.array = np.lib.format.open_memmap(self.path, mode="w+", dtype=np.float32,
                                                   shape=(self.n, rows.shape[1]))
        self.array[self.filled : self.filled + rows.shape[0]] = rows.cpu().numpy()
        self.filled += rows.shape[0]

    def close(self) -> None:
        assert self.array is not None and self.filled == self.n, (self.path, self.filled, self.n)
        self.array.flush()
        self.array = None


@torch.no_grad()
def stream_features(trial: Trial, split: str, sinks: Optional[tuple[_NpyRows, _NpyRows]]) -> None:
    """One streaming pass over ``split``: every rank embeds its share of each batch on the device, rank 0
    gathers the rows in dataset order and writes them (backbone features, projector embeddings)."""
    rows = trial.split_rows(split)
    batches = sequential_batches(len(rows), trial.cfg.metrics.extract_batch_size)
    local = [trial.dist.shard(b) for b in batches]
    was_training = trial.model.training
    trial.model.eval()
    stream = iterate(rows, local, trial.cfg.data.num_workers, pin_memory=trial.device.type == "cuda")
    for (pixels, _), full in zip(stream, batches):
        x = to_float(pixels, trial.device, rows.max_value, trial.data.image_size, trial.cfg.channels_last)
        with trial.autocast():
            f, z = extract_batch(trial.model, x)
        f, z = trial.dist.gather_rows(f, len(full)), trial.dist.gather_rows(z, len(full))
        if sinks is not None:
            sinks[0].write(f)
            sinks[1].write(z)
    trial.model.train(was_training)


def save_features(trial: Trial) -> dict[str, dict[str, str]]:
    """Backbone features, projector embeddings and labels of train / val / test as .npy (for readouts);
    rank 0 writes, every rank computes its share."""
    out_dir = trial.run_dir / "features"
    paths: dict[str, dict[str, str]] = {}
    for split in FEATURE_SPLITS:
        paths[split] = {k: str(out_dir / f"{split}_{k}.npy") for k in ("backbone", "projector", "labels")}
        sinks = None
        if trial.dist.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            n = len(trial.labels[split])
            sinks = (_NpyRows(Path(paths[split]["backbone"]), n), _NpyRows(Path(paths[split]["projector"]), n))
            np.save(paths[split]["labels"], trial.labels[split].numpy())
        stream_features(trial, split, sinks)
        for sink in sinks or ():
            sink.close()
    return paths


def announce_start(run_dir: Path) -> None:
    print(f"sweep train: run dir {run_dir}", flush=True)


def _probe_command(run_dir: Path) -> str:
    """The shell line that reads this run out (linear probe + kNN on its saved backbone features)."""
    import shlex

    return f"  sweep readout {shlex.quote(str(run_dir))}"


def announce_end(record: dict[str, Any], run_dir: Path) -> None:
    """Where the outputs are, and a command that reads the features out (only when they were written)."""
    reason = f" ({record['failure_reason']})" if record["failure_reason"] else ""
    lines = [f"sweep train: {record['status']}{reason} after {record['epochs_completed']} epoch(s)",
             f"  record      {run_dir / 'result.json'}",
             f"  monitoring  {run_dir / 'monitor.csv'}",
             f"  checkpoint  {checkpoint_path(run_dir)}"]
    if record["features"]:
        feats = run_dir / "features"
        lines += [f"  features    {feats}/{{train,val,test}}_{{backbone,projector,labels}}.npy",
                  "next: read it out (linear probe + kNN on the backbone features):",
                  _probe_command(run_dir)]
    print("\n".join(lines), flush=True)


def open_tracker(cfg: TrainConfig) -> Any:
    """The run's experiment tracker (``cfg.tracking``), checked before training: a bad kind, a password in its
    URI or a missing package fail in seconds, not after the run."""
    module, _, name = TRACKER_FACTORY.partition(":")
    return getattr(importlib.import_module(module), name)(cfg.tracking)


def _plain_config(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def train(cfg: DictConfig, reporter: Optional[Reporter] = None) -> dict[str, Any]:
    """Run one trial end to end and return its result record (also written to ``<run_dir>/result.json``)."""
    t_start = time.perf_counter()
    validate_train_config(cfg)
    typed: TrainConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    tracker = open_tracker(typed)
    run_dir = Path(typed.run_dir).resolve()
    d, device = init_distributed(typed.distributed, resolve_device(typed.device))
    if d.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
        announce_start(run_dir)
    if typed.num_threads is not None:
        torch.set_num_threads(typed.num_threads)
    trial = build_trial(typed, device, run_dir, d)
    if typed.resume:
        restore(trial)
    reason = fit(trial, reporter if reporter is not None else pruning_reporter())
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
    record["world_size"] = d.world  # processes (GPUs) that trained this trial together
    if d.is_main:
        record.update(tracker.log_record(record, run_dir))  # {"tracking": where it was logged}; {} when off
        write_record(record, run_dir)
        announce_end(record, run_dir)
    shutdown_distributed(d)
    return record


# ----------------------------------------------------------------------------- Hydra entry
register_configs()  # before @hydra.main composes: the YAML tree names these schema nodes


@hydra.main(config_path=str(conf_dir()), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> dict[str, Any]:
    """Hydra task function: validate, train, return the record (the sweeper turns it into objectives)."""
    register_configs()
    validate_train_config(cfg)
    return train(cfg)


def cli_main() -> None:
    """``sweep train``, ``sweep-train`` and ``python -m sweep.train.job``: a mistyped group, key or option gets
    a did-you-mean line (exit 2) before Hydra composes anything."""
    import sys

    from sweep.config.suggest import override_problems

    problems = override_problems(sys.argv[1:])
    for problem in problems:
        print(f"sweep train: {problem}", file=sys.stderr)
    if problems:
        raise SystemExit(2)
    main()


if __name__ == "__main__":
    cli_main()

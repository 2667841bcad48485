"""Label-free monitoring for any training loop: stream embeddings, score them each epoch, report to the sweep,
write the result record the sweeper and the readouts read.

A plain PyTorch loop uses it like this (the sweep's pruner stops hopeless runs through ``should_stop``)::

    monitor = LabelFreeMonitor()
    for epoch in range(1, epochs + 1):
        train_one_epoch(...)
        for x in held_out_unlabelled:
            h = backbone(x); monitor.update(projector(h), h)
        monitor.end_epoch(epoch, loss=mean_loss)
        if monitor.should_stop:
            break
    monitor.save_features("train", backbone_train, labels_train)  # and val, test: for the readouts
    return monitor.finish()

Metrics are those of the train job (docs/ARCHITECTURE.md): RankMe and RankMe / min(N, D) on the projector output
``z``; alpha-ReQ, its R^2, stable rank, participation ratio and NESum on the backbone features ``x`` (on ``z``
when no ``x`` is given), all from :class:`~sweep.metrics.SpectralAccumulator` in O(D^2) memory. The metrics that
need the rows themselves (every registered non-streamed one: TwoNN intrinsic dimension, cluster learnability, a
user's ``register_metric``) read the first ``max_rows`` rows of each epoch, as the train job reads its monitoring
split: O(max_rows * D) memory, ``max_rows=0`` turns them off.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from sweep.metrics import DEFAULT_ALPHA_WINDOW, SpectralAccumulator, normalized_rankme, registered_row
from sweep.reporting import COMPLETED, FAILED, PRUNED, Reporter, current_reporter
from sweep.train.records import build_record, clean, write_monitor_csv, write_record

ArrayLike = Union[np.ndarray, torch.Tensor]
BACKBONE_KEYS = ("alpha", "alpha_r2", "alpha_window_lo", "alpha_window_hi", "stable_rank", "participation_ratio",
                 "nesum")
FEATURE_SPLITS = ("train", "val", "test")
FEATURE_KINDS = ("backbone", "projector")
MAX_ROWS = 2048  # rows per epoch kept for the row metrics (TwoNN, cluster learnability): ~1 s on one core
MIN_ROWS = 3  # TwoNN needs two neighbours per row


class LabelFreeMonitor:
    """Label-free metrics of a held-out unlabelled set, epoch by epoch, reported to the running trial.

    ``reporter``: the sweep's pruning reporter; by default the one the sweep's launcher handed this trial
    (None outside a sweep: then nothing is reported and nothing is pruned). ``run_dir``: where the record,
    ``monitor.csv`` and the features go; by default Hydra's output dir of the running job, else the working dir.
    ``collapse_rankme``: end the run as failed when RankMe falls below it (a collapsed embedding is a result).
    ``max_rows``: rows per epoch kept for the registered row metrics (TwoNN, cluster learnability); 0: none.
    """

    def __init__(self, run_dir: Union[str, Path, None] = None, *, reporter: Optional[Reporter] = None,
                 method: str = "custom", config: Optional[Mapping[str, Any]] = None,
                 alpha_window: Sequence[int] = DEFAULT_ALPHA_WINDOW,
                 collapse_rankme: Optional[float] = None, max_rows: int = MAX_ROWS) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else default_run_dir()
        self.reporter = reporter if reporter is not None else current_reporter()
        self.method, self.config = method, config
        self.alpha_window, self.collapse_rankme = tuple(alpha_window), collapse_rankme
        self.history: list[dict[str, Any]] = []
        self.features: dict[str, dict[str, str]] = {}
        self.failure_reason: Optional[str] = None
        self.pruned_reason: Optional[str] = None
        self._z: Optional[SpectralAccumulator] = None
        self._x: Optional[SpectralAccumulator] = None
        self.max_rows = int(max_rows)
        self._kept: dict[str, list[torch.Tensor]] = {"z": [], "x": []}
        self._started = time.perf_counter()
        self._metrics_s = 0.0

    # ------------------------------------------------------------------ streaming
    def update(self, z: ArrayLike, x: Optional[ArrayLike] = None) -> None:
        """Add one batch: ``z`` the projector output (B, Dz), ``x`` the backbone features (B, Dx) of the same
        rows, on any device and in any float dtype (no rows are kept: only float64 sums)."""
        t0 = time.perf_counter()
        z2 = _rows(z, "z")
        if self._z is None:
            self._z = SpectralAccumulator(z2.shape[1])
        self._z.update(z2)
        if x is not None:
            x2 = _rows(x, "x")
            if x2.shape[0] != z2.shape[0]:
                raise ValueError(f"update: x has {x2.shape[0]} rows but z has {z2.shape[0]}; pass the backbone "
                                 "features of the same batch")
            if self._x is None:
                self._x = SpectralAccumulator(x2.shape[1])
            self._x.update(x2)
        self._keep("z", z2)
        if x is not None:
            self._keep("x", x2)
        self._metrics_s += time.perf_counter() - t0

    def end_epoch(self, epoch: int, **extra: Any) -> dict[str, Any]:
        """Score the rows streamed since the last call, append the row (``extra``, e.g. ``loss=``, is kept in
        it) to the history and ``monitor.csv``, report the sweep's objective; returns the row.

        Afterwards ``should_stop`` says whether the loop should end (pruned, or collapsed)."""
        if self._z is None or self._z.n < 2:
            raise ValueError(f"end_epoch({epoch}): update() needs at least 2 rows before an epoch can be scored; "
                             f"got {0 if self._z is None else self._z.n}")
        t0 = time.perf_counter()
        row = {"epoch": int(epoch), **extra, **self._score(), **self._row_metrics()}
        self._z, self._x = None, None
        self._kept = {"z": [], "x": []}
        self.history.append(row)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_monitor_csv(self.history, self.run_dir)
        self._metrics_s += time.perf_counter() - t0
        self._check_collapse(row)
        if self.failure_reason is None:
            self._report(row, int(epoch))
        return row

    def _score(self) -> dict[str, Any]:
        """RankMe on the projector output, the covariance metrics on the backbone features (or z)."""
        assert self._z is not None
        pj = self._z.metrics(self.alpha_window)
        bb = self._x.metrics(self.alpha_window) if self._x is not None else pj
        row = {"rankme": pj["rankme"], "rankme_normalized": normalized_rankme(pj["rankme"], self._z.n, self._z.dim)}
        row.update({k: bb[k] for k in BACKBONE_KEYS})
        row["alpha_projector"] = pj["alpha"]
        if self._x is not None:
            row["rankme_backbone"] = bb["rankme"]
        return row

    def _keep(self, kind: str, batch: ArrayLike) -> None:
        """Keep rows of this epoch up to ``max_rows`` (float32 CPU copies) for the row metrics."""
        have = sum(b.shape[0] for b in self._kept[kind])
        if have < self.max_rows:
            t = batch if isinstance(batch, torch.Tensor) else torch.from_numpy(np.asarray(batch))
            self._kept[kind].append(t[: self.max_rows - have].detach().to("cpu", torch.float32).clone())

    def _row_metrics(self) -> dict[str, Any]:
        """The registered non-streamed metrics on the kept rows (backbone x, or z when no x was given)."""
        if not self._kept["z"]:
            return {}
        z = torch.cat(self._kept["z"])
        x = torch.cat(self._kept["x"]) if self._kept["x"] else z
        if z.shape[0] < MIN_ROWS or not bool(torch.isfinite(z).all() and torch.isfinite(x).all()):
            return {}  # too few rows, or diverged (the spectral metrics report that)
        return registered_row(x, z)

    def _check_collapse(self, row: Mapping[str, Any]) -> None:
        rankme = row.get("rankme")
        if self.collapse_rankme is not None and (rankme is None or not rankme >= self.collapse_rankme):
            self.failure_reason = f"collapsed: rankme={rankme} < collapse_rankme={self.collapse_rankme}"

    def _report(self, row: Mapping[str, Any], epoch: int) -> None:
        """Hand the row to the trial's reporter; it computes the study's objective and asks the pruner."""
        if self.reporter is None:
            return
        value = self.reporter.report_metrics(row, epoch)
        if value is not None:
            self.pruned_reason = f"pruned at epoch {epoch}: objective {value:.4g}"

    # ------------------------------------------------------------------ state
    @property
    def should_prune(self) -> bool:
        """The sweep's pruner said stop at the last ``end_epoch``."""
        return self.pruned_reason is not None

    @property
    def should_stop(self) -> bool:
        """Pruned or collapsed: further epochs cannot change the trial's outcome."""
        return self.pruned_reason is not None or self.failure_reason is not None

    @property
    def status(self) -> str:
        return FAILED if self.failure_reason else PRUNED if self.pruned_reason else COMPLETED

    # ------------------------------------------------------------------ outputs
    def save_features(self, split: str, backbone: ArrayLike, labels: ArrayLike,
                      projector: Optional[ArrayLike] = None) -> dict[str, str]:
        """Write a labelled split's features as ``features/<split>_<kind>.npy`` (what the readouts load from the
        record's ``features``); readouts need train, val and test. Returns the split's paths."""
        if split not in FEATURE_SPLITS:
            raise ValueError(f"save_features: split must be one of {FEATURE_SPLITS}, got {split!r}")
        arrays = {"backbone": _matrix(backbone, "backbone"), "labels": _labels(labels)}
        if projector is not None:
            arrays["projector"] = _matrix(projector, "projector")
        if any(a.shape[0] != arrays["labels"].shape[0] for a in arrays.values()):
            raise ValueError(f"save_features({split!r}): row counts differ "
                             f"({ {k: a.shape[0] for k, a in arrays.items()} })")
        out = self.run_dir / "features"
        out.mkdir(parents=True, exist_ok=True)
        paths = {}
        for kind, array in arrays.items():
            np.save(out / f"{split}_{kind}.npy", array)
            paths[kind] = str(out / f"{split}_{kind}.npy")
        self.features[split] = paths
        return paths

    def record(self, **extra: Any) -> dict[str, Any]:
        """The result record (the train job's format; status completed / pruned / failed with the reason)."""
        epochs = int(self.history[-1]["epoch"]) if self.history else 0
        timings = {"total_s": time.perf_counter() - self._started, "metrics_s": self._metrics_s}
        record = build_record(status=self.status, failure_reason=self.failure_reason or self.pruned_reason,
                              method=self.method, run_dir=self.run_dir, config=_plain(self.config),
                              history=self.history, features=self.features if self.status == COMPLETED else {},
                              timings=timings, epochs_completed=epochs)
        record.update(clean(extra))  # strict JSON: a NaN extra becomes null
        return record

    def finish(self, **extra: Any) -> dict[str, Any]:
        """Write ``result.json`` (+ ``result.parquet``) under ``run_dir`` and return the record: the value the
        Hydra task function returns to the sweeper."""
        record = self.record(**extra)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_record(record, self.run_dir)
        return record


def default_run_dir() -> Path:
    """Hydra's output dir of the running job (each trial of a sweep has its own), else the working dir."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path.cwd()


def _rows(batch: ArrayLike, name: str) -> ArrayLike:
    """A (B, D) batch; (B, ...) is flattened (a conv feature map), so any backbone output can be passed."""
    if isinstance(batch, torch.Tensor):
        batch = batch.detach()
    if batch.ndim < 2:
        raise ValueError(f"update: {name} must have shape (B, D); got shape {tuple(batch.shape)}")
    return batch.reshape(batch.shape[0], -1) if batch.ndim > 2 else batch


def _matrix(array: ArrayLike, name: str) -> np.ndarray:
    out = _numpy(_rows(array, name))
    if not np.issubdtype(out.dtype, np.floating):
        raise ValueError(f"save_features: {name} must be float features, got dtype {out.dtype}")
    return out


def _labels(labels: ArrayLike) -> np.ndarray:
    out = _numpy(labels).reshape(-1)
    if not np.issubdtype(out.dtype, np.integer):
        raise ValueError(f"save_features: labels must be integer class ids, got dtype {out.dtype}")
    return out


def _numpy(array: ArrayLike) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().float().numpy() if array.is_floating_point() else array.detach().cpu().numpy()
    return np.asarray(array)


def _plain(config: Any) -> dict[str, Any]:
    """A plain dict of the run's config (an OmegaConf node is resolved), for the record."""
    if config is None:
        return {}
    from omegaconf import DictConfig, OmegaConf

    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True)  # type: ignore[return-value]
    return dict(config)

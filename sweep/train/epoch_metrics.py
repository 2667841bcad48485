"""Label-free monitoring of a training run on the held-out monitoring split.

Backbone features and projector embeddings are pushed batch by batch through
:class:`~sweep.metrics.SpectralAccumulator` (O(D^2) memory whatever the split size); clustering and
entropy need the rows themselves and use the (small) monitoring split's backbone features.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from sweep.config.schema import MetricsConfig
from sweep.metrics import (MetricInputError, SpectralAccumulator, lidar, monitoring_metrics, normalized_rankme,
                           registered_row)

Accumulators = tuple[SpectralAccumulator, SpectralAccumulator]  # (backbone, projector)
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
LIDAR_SEED_OFFSET = 7919  # LiDAR views use their own generator so monitoring never shifts training RNG


def extract_batch(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(backbone features, projector embeddings) of one batch as float32, on its device; the backbone runs
    once when ``embed`` is ``SSLMethod``'s own (projector of the backbone output)."""
    from sweep.ssl.methods import SSLMethod

    f = model.features(x)
    plain = isinstance(model, SSLMethod) and type(model).embed is SSLMethod.embed
    z = model.projector(f) if plain else model.embed(x)
    return f.float(), z.float()


@torch.no_grad()
def extract(model: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device,
            accumulate: bool = False) -> tuple[torch.Tensor, torch.Tensor, Optional[Accumulators]]:
    """Backbone features and projector embeddings (float32, CPU) of ``images`` in eval mode.

    With ``accumulate`` the two spectral accumulators (backbone, projector) are filled on the way.
    """
    was_training = model.training
    model.eval()
    feats, embs, accs = [], [], None
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].to(device, non_blocking=True)
        f, z = extract_batch(model, x)
        if accumulate:
            accs = accs or (SpectralAccumulator(f.shape[1]), SpectralAccumulator(z.shape[1]))
            accs[0].update(f)
            accs[1].update(z)
        feats.append(f.cpu())
        embs.append(z.cpu())
    model.train(was_training)
    return torch.cat(feats), torch.cat(embs), accs


@torch.no_grad()
def lidar_score(model: nn.Module, images: torch.Tensor, augment: Augment, cfg: MetricsConfig, seed: int,
                device: torch.device) -> float:
    """LiDAR of ``cfg.lidar_views`` augmented views of the first ``cfg.lidar_samples`` monitoring images."""
    was_training = model.training
    model.eval()
    x = images[: cfg.lidar_samples].to(device)
    gen = torch.Generator(device=device).manual_seed(seed + LIDAR_SEED_OFFSET)
    views = torch.stack([model.embed(augment(x, gen)).float() for _ in range(cfg.lidar_views)], dim=1)
    model.train(was_training)
    return lidar(views.cpu())


def monitor_row(model: nn.Module, images: torch.Tensor, cfg: MetricsConfig, device: torch.device,
                previous_labels: Optional[np.ndarray], augment: Augment, seed: int
                ) -> tuple[dict[str, Any], Optional[np.ndarray], Optional[str]]:
    """One monitoring row, the k-means labels to compare against next time, and a failure reason or None.

    Keys: rankme and rankme_normalized (projector; RankMe / min(N, D)), alpha / alpha_r2 / stable_rank /
    participation_ratio / nesum (backbone), rankme_backbone, alpha_projector, silhouette / ami / ami_checkpoint /
    entropy (backbone), lidar (projector; None when disabled). Non-finite or collapsed embeddings skip the clustering metrics
    (k-means on one point is meaningless) and return the reason.
    """
    try:
        feats, embs, accs = extract(model, images, cfg.extract_batch_size, device, accumulate=True)
        assert accs is not None
        row = spectral_row(accs[0], accs[1], cfg)
    except MetricInputError as err:  # NaN/inf features or sums that overflow: the training diverged
        return {}, None, f"nan_embeddings: {err}"
    reason = collapse_reason(row, cfg.collapse_rankme)
    if reason is not None:
        return row, None, reason
    clusters, labels = monitoring_metrics(feats.double(), cfg.kmeans_clusters, list(cfg.kmeans_seeds),
                                          previous_labels)
    row.update(clusters)
    row.setdefault("ami_checkpoint", None)
    row.update(registered_row(feats, embs))  # metrics registered in sweep.metrics.METRICS (not streamed)
    row["lidar"] = lidar_score(model, images, augment, cfg, seed, device) if cfg.lidar_views >= 2 else None
    return row, labels, None


def spectral_row(backbone: SpectralAccumulator, projector: SpectralAccumulator, cfg: MetricsConfig
                 ) -> dict[str, Any]:
    """Spectral metrics: RankMe on the projector (what the loss shapes), alpha & co. on the backbone.

    ``rankme_normalized`` divides RankMe by its ceiling min(N, D) (N monitoring rows, D projector width), so
    that a sweep over the projector width does not simply reward the widest projector.
    """
    window = tuple(cfg.alpha_window)
    bb, pj = backbone.metrics(window), projector.metrics(window)
    row: dict[str, Any] = {"rankme": pj["rankme"],
                           "rankme_normalized": normalized_rankme(pj["rankme"], projector.n, projector.dim)}
    row.update({k: bb[k] for k in ("alpha", "alpha_r2", "alpha_window_lo", "alpha_window_hi",
                                   "stable_rank", "participation_ratio", "nesum")})
    row.update(rankme_backbone=bb["rankme"], alpha_projector=pj["alpha"])
    return row


def collapse_reason(row: dict[str, Any], threshold: float) -> Optional[str]:
    """Why the embeddings count as collapsed (RankMe of the projector below ``threshold``), or None."""
    rankme = row.get("rankme")
    if rankme is None or math.isnan(rankme) or rankme < threshold:
        return f"collapsed: rankme={rankme} < metrics.collapse_rankme={threshold}"
    return None

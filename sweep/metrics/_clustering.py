"""Label-free monitoring (Xu, Lowe & Trappenberg 2024): k-means structure of the embeddings.

Silhouette of a seeded k-means partition; clustering agreement = mean pairwise adjusted mutual
information (AMI) between k-means runs that differ only in their seed (stable structure gives
agreement near 1); checkpoint agreement = AMI between the partitions of the same monitoring set at
successive checkpoints. k-means is scikit-learn's, with ``n_init=1`` so the seed is the only source
of variation between runs.

Rows: every function reads the fixed-seed row subsample of :func:`sweep.metrics._inputs.row_subsample` (all rows
up to ``ROW_METRICS_MAX_ROWS`` = 2048, else exactly 2048 rows drawn with seed 0), so the cost stays bounded on
large evaluation sets; ``monitoring_metrics`` computes the pairwise distances once for the silhouettes of all
seeds.

Scale: k-means, silhouette and AMI are invariant to a global scale of the embeddings, so every function runs
on x / 2**e (an exact power of two bringing max |x| to [0.5, 1)); inputs of size 1e200 or 1e-170 then give
the same partition as unit-scale ones instead of overflowing squared distances (silhouette 0.0, AMI 1.0).
"""
from __future__ import annotations

import itertools
import numbers
import warnings
from typing import Optional, Sequence

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_mutual_info_score, silhouette_score
from sklearn.metrics.pairwise import euclidean_distances

from ._entropy import embedding_entropy
from ._inputs import ArrayLike, MetricInputError, check_integer, unit_scaled_rows


def _check_clusters(n_clusters: int, n: int) -> int:
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, numbers.Integral):  # 2.7 is not a count
        raise MetricInputError(f"n_clusters must be an integer with 2 <= n_clusters < N={n}, "
                               f"got n_clusters={n_clusters!r}")
    k = int(n_clusters)
    if not 2 <= k < n:
        raise MetricInputError(
            f"n_clusters must satisfy 2 <= n_clusters < N={n}, got n_clusters={n_clusters}"
        )
    return k


def _check_seeds(seeds: Sequence[int], minimum: int) -> list[int]:
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise MetricInputError(f"seeds must be a sequence of integers, got seeds={seeds!r}")
    try:
        s = [check_integer(v, "seeds entries") for v in seeds]
    except MetricInputError:
        raise MetricInputError(f"seeds must be a sequence of integers, got seeds={seeds!r}") from None
    if len(s) < minimum:
        raise MetricInputError(f"seeds needs at least {minimum} seed(s), got {list(seeds)!r}")
    if len(set(s)) != len(s):
        raise MetricInputError(f"seeds must be distinct, got {list(seeds)!r}")
    return s


def kmeans_labels(x: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    """Seeded single-init k-means labels of float64 rows (collapsed inputs give fewer clusters)."""
    with warnings.catch_warnings():  # duplicate points (collapse) -> fewer distinct clusters: expected
        warnings.simplefilter("ignore", ConvergenceWarning)
        km = KMeans(n_clusters=n_clusters, n_init=1, random_state=seed)
        return km.fit_predict(x).astype(np.int64)


def _silhouette(distances: np.ndarray, labels: np.ndarray) -> float:
    """Silhouette score from the pairwise Euclidean distances; 0.0 ("no cluster structure") when k-means
    found a single cluster."""
    if np.unique(labels).size < 2:
        return 0.0
    return float(silhouette_score(distances, labels, metric="precomputed"))


def kmeans_silhouette(x: ArrayLike, n_clusters: int, seed: int = 0) -> float:
    """Silhouette score of a seeded k-means partition of x's row subsample, in [-1, 1]."""
    a = unit_scaled_rows(x)
    k = _check_clusters(n_clusters, a.shape[0])
    return _silhouette(euclidean_distances(a), kmeans_labels(a, k, seed))


def _mean_pairwise_ami(labelings: Sequence[np.ndarray]) -> float:
    pairs = list(itertools.combinations(labelings, 2))
    return float(np.mean([adjusted_mutual_info_score(a, b) for a, b in pairs]))


def clustering_agreement(x: ArrayLike, n_clusters: int, seeds: Sequence[int] = (0, 1, 2)) -> float:
    """Mean pairwise AMI between k-means runs of x's row subsample with different seeds (>= 2 seeds)."""
    a = unit_scaled_rows(x)
    k = _check_clusters(n_clusters, a.shape[0])
    return _mean_pairwise_ami([kmeans_labels(a, k, s) for s in _check_seeds(seeds, 2)])


def _check_labels(labels: ArrayLike, name: str, n: Optional[int] = None) -> np.ndarray:
    arr = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels)
    if arr.ndim != 1:
        raise MetricInputError(f"{name} must be 1-D, got ndim={arr.ndim}")
    if n is not None and arr.shape[0] != n:
        raise MetricInputError(f"{name} must have one label per sample (N={n}), got {arr.shape[0]}")
    return arr


def checkpoint_agreement(labels_prev: ArrayLike, labels_now: ArrayLike) -> float:
    """AMI between the k-means labels of the same samples at two successive checkpoints."""
    prev = _check_labels(labels_prev, "labels_prev")
    now = _check_labels(labels_now, "labels_now", prev.shape[0])
    return float(adjusted_mutual_info_score(prev, now))


def monitoring_metrics(
    x: ArrayLike,
    n_clusters: int,
    seeds: Sequence[int] = (0, 1, 2),
    previous_labels: Optional[ArrayLike] = None,
) -> tuple[dict[str, float], np.ndarray]:
    """All label-free monitoring metrics of one checkpoint, sharing the k-means runs.

    Returns ``({"silhouette", "ami", ["ami_checkpoint"], "entropy"}, labels)``: silhouette is the
    mean over seeds, ami the mean pairwise AMI between seeds (NaN with a single seed),
    ami_checkpoint the AMI between ``previous_labels`` and this checkpoint's first-seed labels,
    which are returned to be passed as ``previous_labels`` next time (one per row of the row subsample: all rows
    up to 2048). Entropy reads every row (it is a spectral metric).
    """
    a = unit_scaled_rows(x)
    k = _check_clusters(n_clusters, a.shape[0])
    seed_list = _check_seeds(seeds, 1)
    prev = None if previous_labels is None else _check_labels(previous_labels, "previous_labels", a.shape[0])
    runs = [kmeans_labels(a, k, s) for s in seed_list]
    distances = euclidean_distances(a)  # shared by the silhouettes of every seed
    out = {
        "silhouette": float(np.mean([_silhouette(distances, lab) for lab in runs])),
        "ami": _mean_pairwise_ami(runs) if len(runs) > 1 else float("nan"),
    }
    if prev is not None:
        out["ami_checkpoint"] = float(adjusted_mutual_info_score(prev, runs[0]))
    out["entropy"] = embedding_entropy(x)  # in the input's units (it is not scale-free)
    return out, runs[0]

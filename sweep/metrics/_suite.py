"""Every label-free metric of one (N, D) matrix in one call, each shared computation done once.

Why: evaluating a checkpoint calls all of them on the same embeddings; called one by one they redo the same
work (the Gram / covariance eigenvalues, the rescaled row subsample, the pairwise distances). Here:

* one spectral accumulation (one float64 X^T X pass, one eigenvalue problem for the un-centred Gram and one for
  the centred covariance) gives RankMe, alpha-ReQ, stable rank, participation ratio, NESum and the Gaussian
  entropy;
* one validated, unit-scaled row subsample (:func:`sweep.metrics._inputs.row_subsample`: all rows up to 2048)
  is read by k-means (silhouette, AMI), TwoNN and cluster learnability, and one pairwise-distance matrix serves
  the silhouettes of every seed.

Each value equals the one of the single-metric function (same code, same order of operations). LiDAR is not
here: it reads augmented views (N, Q, D), not one matrix.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np
from sklearn.metrics.pairwise import euclidean_distances

from ._alpha import DEFAULT_ALPHA_WINDOW
from ._clustering import _check_clusters, _check_seeds, _mean_pairwise_ami, _silhouette, kmeans_labels
from ._entropy import gaussian_entropy_from_spectrum
from ._inputs import ArrayLike, MetricInputError, check_integer, check_number, unit_scaled_rows
from ._intrinsic import default_clusters, prequential_1nn_accuracy, twonn_from_distances, two_nearest
from ._streaming import accumulate

def spectral_suite(x: ArrayLike, window: Sequence[int] = DEFAULT_ALPHA_WINDOW, ridge: float = 1e-6
                   ) -> dict[str, float]:
    """``spectral_metrics(x)`` plus ``entropy`` (Gaussian, ``ridge``) from the same eigenvalues."""
    ridge = check_number(ridge, "ridge")
    acc = accumulate(x)
    out = acc.metrics(window)
    out["entropy"] = gaussian_entropy_from_spectrum(acc._cov_spectra()[0], acc._e, ridge)
    return out


def row_suite(x: ArrayLike, n_clusters: int = 10, seeds: Sequence[int] = (0, 1, 2),
              cl_clusters: Optional[int] = None, seed: int = 0) -> dict[str, float]:
    """silhouette and ami (k-means with ``n_clusters``, one run per seed; ami NaN for one seed), twonn and
    cluster_learnability (``cl_clusters``, default round(sqrt(rows)), k-means and order seeded by ``seed``),
    all on the same row subsample."""
    a = unit_scaled_rows(x)
    n = a.shape[0]
    if n < 3:
        raise MetricInputError(f"row metrics need N >= 3 rows (two neighbours each), got N={n}")
    k = _check_clusters(n_clusters, n)
    seed_list = _check_seeds(seeds, 1)
    seed = check_integer(seed, "seed")
    k_cl = default_clusters(n) if cl_clusters is None else check_integer(cl_clusters, "cl_clusters")
    if not 2 <= k_cl < n:
        raise MetricInputError(f"cl_clusters must satisfy 2 <= cl_clusters < N={n}, got cl_clusters={k_cl}")
    runs = [kmeans_labels(a, k, s) for s in seed_list]
    distances = euclidean_distances(a)
    r1, r2 = two_nearest(a)
    order = np.random.default_rng(seed).permutation(n)
    return {
        "silhouette": float(np.mean([_silhouette(distances, lab) for lab in runs])),
        "ami": _mean_pairwise_ami(runs) if len(runs) > 1 else float("nan"),
        "twonn": twonn_from_distances(r1, r2),
        "cluster_learnability": prequential_1nn_accuracy(a, kmeans_labels(a, k_cl, seed), order),
    }


def metric_suite(x: ArrayLike, n_clusters: int = 10, seeds: Sequence[int] = (0, 1, 2),
                 window: Sequence[int] = DEFAULT_ALPHA_WINDOW, ridge: float = 1e-6) -> dict[str, float]:
    """Every label-free metric of one matrix: :func:`spectral_suite` and :func:`row_suite` (module doc)."""
    return {**spectral_suite(x, window, ridge), **row_suite(x, n_clusters, seeds)}

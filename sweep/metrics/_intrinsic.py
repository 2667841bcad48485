"""Intrinsic dimension (TwoNN, Facco et al. 2017) and cluster learnability / CLID (Lu et al. 2022).

Why: RankMe and alpha-ReQ read the covariance spectrum only; these read the local geometry (nearest
neighbours), which later papers report to track downstream accuracy where the spectrum does not.

TwoNN. For every row i let r1_i < r2_i be its distances to its first and second nearest other rows and
mu_i = r2_i / r1_i. Rows with r1_i = 0 (an exact duplicate) have no ratio and are dropped. Of the N ratios
left, keep the n = floor(N (1 - discard_fraction)) smallest, sorted mu_(1) <= ... <= mu_(n), and fit the
line through the origin of y_j = -log(1 - j / N) on x_j = log mu_(j) by least squares:
    twonn = sum_j x_j y_j / sum_j x_j^2.
This is scikit-dimension's ``TwoNN()`` (``discard_fraction=0.1``, ``method='linear'``), the paper's fit.
Fewer than 2 ratios left (every row duplicated) gives 0.0: a cloud of repeated points has dimension 0.

Cluster learnability (CL). Seeded single-init k-means (``kmeans_labels``, as the other clustering metrics)
with K clusters, K = round(sqrt(N)) by default, gives pseudo-labels y. A seeded permutation p of the rows
is then learnt online by a 1-nearest-neighbour classifier: row p(t) is predicted with the label of its
nearest row among p(1..t-1) (Euclidean; ties: the earliest), then added. CL is the share of correct
predictions for t = 2..N (the area under the online learning curve, the paper's "learning speed"):
    CL = 1/(N - 1) * sum_{t=2..N} [ y_{p(t)} == y_{p(s*(t))} ],  s*(t) = argmin_{s<t} ||x_p(t) - x_p(s)||.
CLID. The paper combines the two across the models being compared; without labels the weights are
equal on standardised values: CLID_m = z(CL)_m + z(ID)_m, z over the compared models m
(:func:`clid_scores`), so CLID exists for a set of runs, not for one run alone.

Rows: TwoNN and CL read the fixed-seed row subsample of :func:`sweep.metrics._inputs.row_subsample` (all rows
up to 2048, else exactly 2048 rows drawn with seed 0; N above is then 2048), the rows the clustering metrics read.

Scale: all three are invariant to a global scale of x; the rows are brought to unit scale by an exact power
of two first (``unit_scaled_numpy64``), so inputs of size 1e200 or 1e-170 give the same value.
Cost: one float64 Gram matrix (N^2 D), done in blocks of rows; 2048 x 512 in well under a second on
one core (benchmarks/metrics_intrinsic.py).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import numpy as np
import torch

from ._clustering import kmeans_labels
from ._inputs import ArrayLike, MetricInputError, check_integer, unit_scaled_rows

TWONN_DISCARD_FRACTION = 0.1
BLOCK_ROWS = 1024  # rows of the Gram matrix computed at once: memory O(BLOCK_ROWS * N)


def _squared_distances(a: torch.Tensor, b: torch.Tensor, sq_a: torch.Tensor, sq_b: torch.Tensor) -> torch.Tensor:
    """||a_i - b_j||^2 through the Gram matrix, clipped at 0 (round-off); used to rank neighbours only."""
    return (sq_a[:, None] + sq_b[None, :] - 2.0 * (a @ b.T)).clamp_min_(0.0)


def two_nearest(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(r1, r2): distances of every row to its first and second nearest other rows (N >= 3).

    The Gram matrix ranks the neighbours; the two distances are then recomputed directly from the
    differences, so they carry no cancellation error."""
    t = torch.from_numpy(x)
    sq = (t * t).sum(dim=1)
    n = t.shape[0]
    idx = torch.empty((n, 2), dtype=torch.long)
    for start in range(0, n, BLOCK_ROWS):
        stop = min(n, start + BLOCK_ROWS)
        d2 = _squared_distances(t[start:stop], t, sq[start:stop], sq)
        d2[torch.arange(stop - start), torch.arange(start, stop)] = math.inf  # not its own neighbour
        idx[start:stop] = torch.topk(d2, 2, dim=1, largest=False).indices
    r = torch.linalg.vector_norm(t[:, None, :] - t[idx], dim=2)
    r, _ = torch.sort(r, dim=1)  # direct distances may swap two near-equal neighbours
    return r[:, 0].numpy(), r[:, 1].numpy()


def twonn_from_distances(r1: np.ndarray, r2: np.ndarray,
                         discard_fraction: float = TWONN_DISCARD_FRACTION) -> float:
    """The TwoNN line fit of the module docstring from first/second neighbour distances."""
    if not 0.0 <= discard_fraction < 1.0:
        raise MetricInputError(f"discard_fraction must be in [0, 1), got discard_fraction={discard_fraction!r}")
    keep = r1 > 0.0
    mu = np.sort(r2[keep] / r1[keep])
    n_total = mu.shape[0]
    n_keep = int(n_total * (1.0 - discard_fraction))
    if n_keep < 2:
        return 0.0
    x = np.log(mu[:n_keep])
    y = -np.log(1.0 - np.arange(1, n_keep + 1) / n_total)
    denom = float(x @ x)
    return float(x @ y) / denom if denom > 0.0 else 0.0


def twonn_dimension(x: ArrayLike, discard_fraction: float = TWONN_DISCARD_FRACTION) -> float:
    """TwoNN intrinsic dimension of the rows of x (N >= 3; see the module docstring for the definition), on
    the row subsample of :func:`sweep.metrics._inputs.row_subsample` (all rows up to 2048)."""
    a = unit_scaled_rows(x)
    if a.shape[0] < 3:
        raise MetricInputError(f"twonn_dimension needs N >= 3 rows (two neighbours each), got N={a.shape[0]}")
    r1, r2 = two_nearest(a)
    return twonn_from_distances(r1, r2, discard_fraction)


def default_clusters(n: int) -> int:
    """K = round(sqrt(N)), at least 2: the number of k-means clusters CL uses unless told."""
    return max(2, int(round(math.sqrt(n))))


def prequential_1nn_accuracy(x: np.ndarray, labels: np.ndarray, order: np.ndarray) -> float:
    """Online 1-NN accuracy of ``labels`` over rows taken in ``order`` (the CL formula, t = 2..N)."""
    t = torch.from_numpy(np.ascontiguousarray(x[order]))
    y = torch.from_numpy(labels[order])
    sq = (t * t).sum(dim=1)
    n = t.shape[0]
    correct = 0
    for start in range(1, n, BLOCK_ROWS):
        stop = min(n, start + BLOCK_ROWS)
        d2 = _squared_distances(t[start:stop], t[:stop], sq[start:stop], sq[:stop])
        rows = torch.arange(start, stop)[:, None]
        d2.masked_fill_(torch.arange(stop)[None, :] >= rows, math.inf)  # only rows seen before
        nearest = torch.argmin(d2, dim=1)  # first index among equal minima: the earliest
        correct += int((y[nearest] == y[start:stop]).sum())
    return correct / (n - 1)


def cluster_learnability(x: ArrayLike, n_clusters: Optional[int] = None, seed: int = 0) -> float:
    """CL in [0, 1]: how fast a 1-NN learns x's own k-means labels online (module docstring), on the row
    subsample of :func:`sweep.metrics._inputs.row_subsample` (all rows up to 2048; N below is its size)."""
    a = unit_scaled_rows(x)
    n = a.shape[0]
    k = default_clusters(n) if n_clusters is None else check_integer(n_clusters, "n_clusters")
    if not 2 <= k < n:
        raise MetricInputError(f"n_clusters must satisfy 2 <= n_clusters < N={n}, got n_clusters={k}")
    seed = check_integer(seed, "seed")
    labels = kmeans_labels(a, k, seed)
    order = np.random.default_rng(seed).permutation(n)
    return prequential_1nn_accuracy(a, labels, order)


def _zscore(values: np.ndarray) -> np.ndarray:
    sd = float(values.std())
    return (values - values.mean()) / sd if sd > 0.0 else np.zeros_like(values)


def clid_scores(cl: Sequence[float], intrinsic_dim: Sequence[float]) -> np.ndarray:
    """CLID of each compared run: z(CL) + z(ID), z over the runs (population std; a constant column adds 0).

    Non-finite entries give NaN for that run and are left out of the means and spreads."""
    c = np.asarray(cl, dtype=np.float64)
    d = np.asarray(intrinsic_dim, dtype=np.float64)
    if c.ndim != 1 or c.shape != d.shape:
        raise MetricInputError(f"clid_scores needs two 1-D sequences of the same length, got shapes "
                               f"{c.shape} and {d.shape}")
    ok = np.isfinite(c) & np.isfinite(d)
    out = np.full(c.shape, np.nan)
    if ok.any():
        out[ok] = _zscore(c[ok]) + _zscore(d[ok])
    return out

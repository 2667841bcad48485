"""TwoNN intrinsic dimension, cluster learnability and CLID: known answers, a reference oracle, the registry.

Known answers: Pareto quantiles (TwoNN's fit is exact on them), data on manifolds of known dimension,
well-separated clusters (CL's mistakes can be counted by hand), brute-force loops of the definitions.
Oracle: scikit-dimension's ``TwoNN`` (a ``dev`` extra) when it is installed."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import sweep.metrics._intrinsic as intrinsic
from sweep.metrics import (METRICS, MetricInputError, clid_scores, cluster_learnability, registered_row,
                           twonn_dimension)
from sweep.metrics._clustering import kmeans_labels


def _manifold(n: int, dim: int, ambient: int, seed: int) -> np.ndarray:
    """n points uniform in a dim-cube, rotated into an ambient space (a flat manifold of dimension dim)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(ambient, dim)))
    return rng.uniform(size=(n, dim)) @ q.T


def _brute_twonn(x: np.ndarray, discard: float = 0.1) -> float:
    """The definition with a plain loop over rows (distances by differences, numpy only)."""
    mu = []
    for i in range(len(x)):
        d = np.sort(np.linalg.norm(np.delete(x, i, axis=0) - x[i], axis=1))
        if d[0] > 0:
            mu.append(d[1] / d[0])
    mu = np.sort(mu)
    n = len(mu)
    k = int(n * (1 - discard))
    xs, ys = np.log(mu[:k]), -np.log(1 - np.arange(1, k + 1) / n)
    return float(xs @ ys / (xs @ xs))


def _brute_cl(x: np.ndarray, labels: np.ndarray, order: np.ndarray) -> float:
    correct = 0
    for t in range(1, len(order)):
        seen = order[:t]
        d = np.linalg.norm(x[seen] - x[order[t]], axis=1)
        correct += labels[seen[int(np.argmin(d))]] == labels[order[t]]
    return correct / (len(order) - 1)


# ----------------------------------------------------------------------------- TwoNN
@pytest.mark.parametrize("d", [1.0, 2.0, 7.5])
def test_twonn_fit_is_exact_on_pareto_quantiles(d: float) -> None:
    """mu_(j) = (1 - j/N)^(-1/d) puts every kept point on the line y = d x: the fit returns d exactly."""
    n = 1000
    j = np.arange(1, n + 1)
    mu = np.empty(n)
    mu[:-1] = (1.0 - j[:-1] / n) ** (-1.0 / d)
    mu[-1] = 1e9  # the largest ratio; discarded with the top 10%
    r1 = np.ones(n)
    assert intrinsic.twonn_from_distances(r1, mu) == pytest.approx(d, rel=1e-12)


@pytest.mark.parametrize("dim,ambient", [(1, 3), (2, 10), (3, 12), (5, 40)])
def test_twonn_recovers_the_dimension_of_a_flat_manifold(dim: int, ambient: int) -> None:
    x = _manifold(2000, dim, ambient, seed=dim)
    assert twonn_dimension(x) == pytest.approx(dim, rel=0.15)


def test_twonn_matches_the_brute_force_definition_across_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    x = _manifold(300, 3, 8, seed=1) + 1e-3 * np.random.default_rng(2).normal(size=(300, 8))
    monkeypatch.setattr(intrinsic, "BLOCK_ROWS", 37)  # several Gram blocks, a ragged last one
    assert twonn_dimension(x) == pytest.approx(_brute_twonn(x), abs=1e-9)


@pytest.mark.parametrize("dim,ambient", [(2, 10), (4, 60)])  # below and above skdim's D > 25 branch
def test_twonn_agrees_with_scikit_dimension(dim: int, ambient: int) -> None:
    skdim = pytest.importorskip("skdim")
    x = _manifold(1500, dim, ambient, seed=10 + dim)
    reference = float(skdim.id.TwoNN().fit(x).dimension_)
    assert twonn_dimension(x) == pytest.approx(reference, abs=1e-6)
    assert twonn_dimension(torch.from_numpy(x).float()) == pytest.approx(
        float(skdim.id.TwoNN().fit(x.astype(np.float32).astype(np.float64)).dimension_), abs=1e-5)


def test_twonn_is_scale_free_and_drops_duplicates() -> None:
    x = _manifold(400, 2, 6, seed=3)
    base = twonn_dimension(x)
    for scale in (1e-170, 1e200):
        assert twonn_dimension(x * scale) == pytest.approx(base, rel=1e-9)
    doubled = np.vstack([x, x[:50]])  # 50 duplicated pairs: those 100 rows have r1 = 0 and are dropped
    assert twonn_dimension(doubled) == pytest.approx(_brute_twonn(doubled), abs=1e-9)
    assert twonn_dimension(np.ones((10, 4))) == 0.0  # every row duplicated: dimension 0


def test_twonn_rejects_bad_inputs() -> None:
    with pytest.raises(MetricInputError, match="N >= 3"):
        twonn_dimension(np.eye(2))
    bad = np.ones((5, 3))
    bad[0, 0] = np.nan
    with pytest.raises(MetricInputError, match="NaN"):
        twonn_dimension(bad)
    with pytest.raises(MetricInputError, match="discard_fraction"):
        twonn_dimension(np.eye(4), discard_fraction=1.0)


# ----------------------------------------------------------------------------- cluster learnability
def test_cl_counts_one_mistake_per_newly_seen_cluster() -> None:
    """K tight clusters far apart: the online 1-NN errs exactly on the first row of each cluster after the first
    one it sees, so CL = 1 - (K - 1) / (N - 1)."""
    rng = np.random.default_rng(0)
    k, per = 4, 25
    centres = 100.0 * np.eye(k, 6)
    x = np.vstack([c + 0.01 * rng.normal(size=(per, 6)) for c in centres])
    n = k * per
    assert cluster_learnability(x, n_clusters=k) == pytest.approx(1.0 - (k - 1) / (n - 1), abs=1e-15)


def test_cl_matches_the_brute_force_definition(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.random.default_rng(5).normal(size=(150, 7))
    monkeypatch.setattr(intrinsic, "BLOCK_ROWS", 16)
    labels = kmeans_labels(x / 2.0 ** math.frexp(np.abs(x).max())[1], 12, 3)
    order = np.random.default_rng(3).permutation(150)
    assert cluster_learnability(x, n_clusters=12, seed=3) == _brute_cl(x, labels, order)
    assert cluster_learnability(x, seed=3) == cluster_learnability(x * 1e200, seed=3)  # K = round(sqrt(150)) = 12


def test_cl_default_clusters_and_input_checks() -> None:
    assert intrinsic.default_clusters(2048) == 45 and intrinsic.default_clusters(3) == 2
    with pytest.raises(MetricInputError, match="n_clusters"):
        cluster_learnability(np.eye(5), n_clusters=5)
    with pytest.raises(MetricInputError, match="n_clusters"):
        cluster_learnability(np.eye(5), n_clusters=2.5)  # type: ignore[arg-type]


def test_structured_features_are_more_learnable_than_noise() -> None:
    rng = np.random.default_rng(1)
    blobs = np.repeat(10.0 * rng.normal(size=(10, 16)), 40, axis=0) + rng.normal(size=(400, 16))
    noise = rng.normal(size=(400, 16))
    assert cluster_learnability(blobs) > cluster_learnability(noise) + 0.2


# ----------------------------------------------------------------------------- CLID
def test_clid_is_the_sum_of_standardised_cl_and_id() -> None:
    z = math.sqrt(1.5)  # population z-scores of (0, 1, 2)
    out = clid_scores([0.1, 0.2, 0.3], [10.0, 20.0, 30.0])
    assert np.allclose(out, [-2 * z, 0.0, 2 * z], atol=1e-12)
    assert np.allclose(clid_scores([0.5, 0.5, 0.5], [1.0, 2.0, 3.0]), [-z, 0.0, z], atol=1e-12)
    with_nan = clid_scores([0.1, np.nan, 0.2, 0.3], [10.0, 5.0, 20.0, 30.0])
    assert math.isnan(with_nan[1]) and np.allclose(with_nan[[0, 2, 3]], [-2 * z, 0.0, 2 * z])
    with pytest.raises(MetricInputError, match="same length"):
        clid_scores([1.0], [1.0, 2.0])


# ----------------------------------------------------------------------------- where they are recorded
def test_registered_for_the_train_job_and_as_objectives() -> None:
    from sweep.study.objectives import train_job_metrics

    assert METRICS.get("twonn").on == "backbone" and not METRICS.get("twonn").streamed
    assert METRICS.get("cluster_learnability").on == "backbone"
    assert {"twonn", "cluster_learnability"} <= set(train_job_metrics())
    x = _manifold(200, 2, 5, seed=0)
    row = registered_row(x, np.zeros((200, 3)))
    assert row["twonn"] == twonn_dimension(x) and row["cluster_learnability"] == cluster_learnability(x)


def test_label_free_monitor_records_them_per_epoch(tmp_path: object) -> None:
    from sweep.integrations.monitor import LabelFreeMonitor

    x = _manifold(300, 3, 16, seed=4)
    z = np.random.default_rng(0).normal(size=(300, 8))
    mon = LabelFreeMonitor(run_dir=tmp_path, reporter=None, max_rows=200)
    for start in range(0, 300, 64):
        mon.update(z[start : start + 64], x[start : start + 64])
    row = mon.end_epoch(1, loss=1.0)
    assert row["twonn"] == pytest.approx(twonn_dimension(x[:200].astype(np.float32)), abs=1e-9)
    assert row["cluster_learnability"] == cluster_learnability(x[:200].astype(np.float32))
    off = LabelFreeMonitor(run_dir=tmp_path, reporter=None, max_rows=0)
    off.update(z, x)
    assert "twonn" not in off.end_epoch(1)

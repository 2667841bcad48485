"""The one-call metric suite, the shared spectra and the row subsample of the clustering / neighbour metrics."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import sweep.metrics._streaming as streaming_module
from sweep.metrics import (
    ROW_METRICS_MAX_ROWS,
    SpectralAccumulator,
    cluster_learnability,
    clustering_agreement,
    embedding_entropy,
    kmeans_silhouette,
    metric_suite,
    monitoring_metrics,
    nesum,
    rankme,
    spectral_metrics,
    twonn_dimension,
)
from sweep.metrics._inputs import row_subsample


def blobs(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.standard_normal((5, d))
    return (centres[rng.integers(0, 5, n)] + rng.standard_normal((n, d))).astype(np.float32)


def test_suite_equals_the_single_metric_functions() -> None:
    x = blobs(300, 12)
    got = metric_suite(x, n_clusters=5, seeds=(0, 1))
    monitor, _ = monitoring_metrics(x, 5, seeds=[0, 1])
    expected = {**spectral_metrics(x), "entropy": embedding_entropy(x), "silhouette": monitor["silhouette"],
                "ami": clustering_agreement(x, 5, seeds=[0, 1]), "twonn": twonn_dimension(x),
                "cluster_learnability": cluster_learnability(x)}
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key
    assert monitor["entropy"] == got["entropy"]


def test_suite_single_seed_has_no_ami_and_silhouette_matches() -> None:
    x = blobs(200, 6, seed=1)
    got = metric_suite(x, n_clusters=5, seeds=(3,))
    assert math.isnan(got["ami"])
    assert got["silhouette"] == pytest.approx(kmeans_silhouette(x, 5, seed=3), rel=1e-12)


def test_spectra_are_computed_once_per_state(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = streaming_module._eigvalsh

    def counting(m: torch.Tensor) -> np.ndarray:
        calls.append(m.shape[0])
        return real(m)

    monkeypatch.setattr(streaming_module, "_eigvalsh", counting)
    x = blobs(100, 8)
    acc = SpectralAccumulator(8).update(x[:60])
    first = acc.metrics()
    acc.spectra()
    acc.metrics()
    assert sorted(calls) == [8, 8]  # one Gram and one covariance problem, then the cache
    acc.update(x[60:])
    after, fresh = acc.metrics(), SpectralAccumulator(8).update(x).metrics()
    assert after == pytest.approx(fresh, rel=1e-12) and after["rankme"] != first["rankme"]
    assert len(calls) == 6


def test_row_subsample_is_all_rows_up_to_the_limit_then_a_fixed_seeded_draw() -> None:
    assert row_subsample(ROW_METRICS_MAX_ROWS) is None
    idx = row_subsample(ROW_METRICS_MAX_ROWS + 50)
    assert idx is not None and idx.shape == (ROW_METRICS_MAX_ROWS,)
    assert np.all(np.diff(idx) > 0) and idx[-1] < ROW_METRICS_MAX_ROWS + 50
    assert np.array_equal(idx, row_subsample(ROW_METRICS_MAX_ROWS + 50))
    assert np.array_equal(idx, np.sort(np.random.default_rng(0).choice(ROW_METRICS_MAX_ROWS + 50,
                                                                      ROW_METRICS_MAX_ROWS, replace=False)))


def test_row_metrics_of_a_large_matrix_read_its_subsample() -> None:
    n = ROW_METRICS_MAX_ROWS + 100
    x = blobs(n, 4, seed=2)
    idx = row_subsample(n)
    assert idx is not None
    sub = x[idx]
    assert twonn_dimension(x) == twonn_dimension(sub)
    assert cluster_learnability(x) == cluster_learnability(sub)
    assert kmeans_silhouette(x, 5) == kmeans_silhouette(sub, 5)
    out, labels = monitoring_metrics(x, 5, seeds=[0, 1])
    assert labels.shape == (ROW_METRICS_MAX_ROWS,)
    assert out["entropy"] == embedding_entropy(x)  # spectral: every row


def test_nan_outside_the_subsample_still_raises() -> None:
    x = blobs(ROW_METRICS_MAX_ROWS + 10, 4)
    idx = row_subsample(x.shape[0])
    assert idx is not None
    outside = int(np.setdiff1d(np.arange(x.shape[0]), idx)[0])
    x[outside, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        twonn_dimension(x)


def test_single_metrics_solve_only_the_eigenvalue_problem_they_need(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = streaming_module._eigvalsh
    monkeypatch.setattr(streaming_module, "_eigvalsh", lambda m: calls.append(1) or real(m))
    x = blobs(50, 6)  # one covariance problem each for entropy and NESum, one Gram problem for RankMe
    embedding_entropy(x)
    rankme(x)
    nesum(x)
    assert len(calls) == 3

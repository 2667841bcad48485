"""Issue 8 regressions for sweep.metrics: exact on float32 / bfloat16, invariant to a global scale over the
whole float range, batch-order independent, honest about the alpha window, strict about parameters.

Each case reproduces a failure reported in the issue (the old value is quoted in the test's docstring).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from sweep.metrics import (
    AlphaWindowWarning,
    MetricInputError,
    SpectralAccumulator,
    alpha_req,
    clustering_agreement,
    embedding_entropy,
    kmeans_silhouette,
    lidar,
    monitoring_metrics,
    nesum,
    participation_ratio,
    rankme,
    rankme_centered,
    rankme_sq,
    spectral_metrics,
    stable_rank,
)
from sweep.metrics._streaming import NOISE_FACTOR, _EPS64

torch.set_num_threads(1)
EPS = 1e-7
SCALE_FREE = ("rankme", "alpha", "alpha_r2", "alpha_window_lo", "alpha_window_hi", "alpha_window_cut",
              "stable_rank", "participation_ratio", "nesum")


def orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return q


def svd_rankme(x: np.ndarray) -> float:
    """The paper's RankMe on a float64 SVD of x (x converted exactly to float64)."""
    s = np.linalg.svd(np.asarray(x, dtype=np.float64), compute_uv=False)
    p = s / s.sum() + EPS
    return math.exp(-float(np.sum(p * np.log(p))))


def power_law(n: int, d: int, a: float, seed: int, offset: float = 0.0) -> np.ndarray:
    """Gaussian rows whose covariance has eigenvalues k^-a (the issue's "power law a")."""
    rng = np.random.default_rng(seed)
    lam = np.arange(1, d + 1, dtype=float) ** -a
    return (rng.standard_normal((n, d)) * np.sqrt(lam)) @ orthogonal(d, rng).T + offset


def unit_features(seed: int = 0, n: int = 600, d: int = 48) -> np.ndarray:
    return power_law(n, d, 1.0, seed, offset=0.3)


# ----------------------------------------------------------------------------- float32 / bfloat16 exactness
@pytest.mark.parametrize("a", [2.5, 3.0])
def test_rankme_of_steep_float32_spectrum_matches_float64_svd(a: float) -> None:
    """Issue: RankMe off by 3% (a = 2.5) and 17% (a = 3) at 4096 x 512, because X^T X ran in float32."""
    x32 = power_law(4096, 512, a, seed=int(a * 10)).astype(np.float32)
    assert rankme(x32) == pytest.approx(svd_rankme(x32), rel=1e-6)
    assert rankme(torch.from_numpy(x32)) == pytest.approx(svd_rankme(x32), rel=1e-6)


@pytest.mark.parametrize(("rank", "noise", "offset"), [(1, 1e-3, 0.0), (3, 1e-4, 2.0), (8, 1e-4, 0.0)])
def test_rankme_of_near_collapsed_float32_matches_float64_svd(rank: int, noise: float, offset: float) -> None:
    rng = np.random.default_rng(rank)
    base = rng.standard_normal((4096, rank)) @ rng.standard_normal((rank, 512)) + offset
    x32 = (base + noise * rng.standard_normal((4096, 512))).astype(np.float32)
    assert rankme(x32) == pytest.approx(svd_rankme(x32), rel=1e-6)


def test_rankme_of_bfloat16_matches_float64_svd_of_the_same_values() -> None:
    x = torch.from_numpy(power_law(2048, 256, 2.5, seed=3, offset=0.2)).to(torch.bfloat16)
    exact = x.to(torch.float64).numpy()  # bfloat16 -> float64 is exact
    assert rankme(x) == pytest.approx(svd_rankme(exact), rel=1e-6)
    acc = SpectralAccumulator(256)
    for chunk in torch.split(x, 300):
        acc.update(chunk)
    assert acc.metrics()["rankme"] == pytest.approx(svd_rankme(exact), rel=1e-6)


def test_float32_gram_is_exact_to_float64_round_off() -> None:
    x32 = power_law(3000, 64, 3.0, seed=5, offset=1.0).astype(np.float32)
    x64 = x32.astype(np.float64)
    acc = SpectralAccumulator(64).update(x32)
    gram = x64.T @ x64
    np.testing.assert_allclose(acc.gram.numpy(), gram, rtol=1e-12, atol=1e-12 * np.abs(gram).max())
    np.testing.assert_allclose(acc.mean.numpy(), x64.mean(axis=0), rtol=1e-12, atol=1e-15)


# ----------------------------------------------------------------------------- noise floor of the spectra
@pytest.mark.parametrize(("n", "d", "k", "offset", "outlier"), [
    (300, 4, 1, 1.0, True), (32768, 4, 1, 0.0, True), (4096, 64, 16, 1e3, False), (16, 512, 3, 0.0, True),
    (4096, 512, 1, 1.0, False), (2048, 256, 32, 0.0, False),
])
def test_null_space_round_off_stays_below_the_floor(n: int, d: int, k: int, offset: float,
                                                    outlier: bool) -> None:
    """Rank-k float64 data: every eigenvalue beyond the rank lies far (>= 1.5x; 5-11x measured) below the
    floor NOISE_FACTOR * eps64 * (sqrt(D) + 4) * lambda_max: RankMe of a collapsed embedding stays exact."""
    rng = np.random.default_rng(n + d + k)
    x = rng.standard_normal((n, k)) @ rng.standard_normal((k, d))
    if outlier:
        x[0] *= 1e5
    x = x + offset * rng.standard_normal(d)
    acc = SpectralAccumulator(d).update(x)
    gram, m2 = acc._scaled_matrices()
    for m, rank in ((gram, k + (offset > 0)), (m2, k)):
        eig = np.sort(np.abs(torch.linalg.eigvalsh(m).numpy()))[::-1]
        floor = NOISE_FACTOR * _EPS64 * (math.sqrt(d) + 4.0) * eig[0]
        assert eig[rank:].max() < floor / 1.5


def test_float32_rank_one_with_offset_is_still_collapsed_for_alpha() -> None:
    """float32 rounding of a rank-1 embedding with a large offset is no power law: alpha stays 'collapsed'.

    RankMe: this is the limit of any X^T X method -- the rounding noise's singular values (~5e-9 sigma_max,
    eigenvalues ~3e-17 lambda_max, below float64 resolution) carry p ~ 5e-9 each in the SVD's RankMe."""
    rng = np.random.default_rng(7)
    x32 = (np.outer(rng.standard_normal(2000), rng.standard_normal(64)) + 100.0).astype(np.float32)
    fit = alpha_req(x32)
    assert fit.collapsed and math.isnan(fit.alpha)
    assert spectral_metrics(x32)["rankme"] == pytest.approx(svd_rankme(x32), rel=1e-5)


# ----------------------------------------------------------------------------- global scale
@pytest.mark.parametrize("c", [1e-300, 1e-170, 1e-150, 1e150, 1e200, 1e300])
def test_spectral_metrics_are_invariant_to_float64_scale(c: float) -> None:
    """Issue: X * 1e-170 or * 1e200 gave RankMe 1, alpha NaN 'collapsed', stable rank / PR / NESum 1."""
    x = unit_features()
    base, scaled = spectral_metrics(x), spectral_metrics(x * c)
    for key in SCALE_FREE:
        assert scaled[key] == pytest.approx(base[key], rel=1e-9), key
    assert participation_ratio(x * c) == pytest.approx(participation_ratio(x), rel=1e-9)
    for fn in (rankme, rankme_centered, rankme_sq, stable_rank, nesum):
        assert fn(x * c) == pytest.approx(fn(x), rel=1e-9)
    assert alpha_req(x * c).alpha == pytest.approx(alpha_req(x).alpha, rel=1e-9)


def test_participation_ratio_at_1e_minus_150_is_not_one() -> None:
    """Issue: participation_ratio(X * 1e-150) = 1.0 where the true value is ~120."""
    x = power_law(2000, 256, 0.5, seed=11)
    true = participation_ratio(x)
    assert true > 100
    assert participation_ratio(x * 1e-150) == pytest.approx(true, rel=1e-9)


@pytest.mark.parametrize("c", [1e-25, 1e-38, 1e25, 1e30])
def test_spectral_metrics_are_invariant_to_float32_scale(c: float) -> None:
    """Issue: float32 X * 1e-25 gave RankMe 1 (squares underflow). Scaling by a non-power of two re-rounds the
    float32 values, hence the 1e-5 tolerance; powers of two give identical results."""
    x32 = unit_features(1).astype(np.float32)
    base = spectral_metrics(x32)
    scaled = spectral_metrics((x32.astype(np.float64) * c).astype(np.float32))
    for key in SCALE_FREE:
        assert scaled[key] == pytest.approx(base[key], rel=1e-5, abs=1e-9), key
    exact = spectral_metrics(x32 * np.float32(2.0**-100))
    for key in SCALE_FREE:
        assert exact[key] == pytest.approx(base[key], rel=1e-12), key


def test_streaming_batches_of_very_different_scales() -> None:
    """Batches are rescaled to the largest |value| seen so far: a tiny first batch loses nothing."""
    x = unit_features(2)
    acc = SpectralAccumulator(x.shape[1])
    acc.update(x[:100] * 1e-200).update(x[100:] * 1e-200)
    tiny = acc.metrics()
    acc2 = SpectralAccumulator(x.shape[1]).update(np.zeros((5, x.shape[1]))).update(x[:100] * 1e-300)
    acc2.update(x[100:] * 1e-300)
    ref = spectral_metrics(np.vstack([np.zeros((5, x.shape[1])), x]))
    for key in SCALE_FREE:
        assert tiny[key] == pytest.approx(spectral_metrics(x)[key], rel=1e-9), key
        assert acc2.metrics()[key] == pytest.approx(ref[key], rel=1e-9), key


def _blobs(scale: float) -> np.ndarray:
    rng = np.random.default_rng(21)
    centres = 20.0 * np.eye(5, 8)
    return np.concatenate([c + 0.3 * rng.standard_normal((40, 8)) for c in centres]) * scale


@pytest.mark.parametrize("c", [1e-170, 1e200, 2.0**-900, 2.0**900])
def test_clustering_metrics_are_invariant_to_scale(c: float) -> None:
    """Issue: silhouette / AMI at 1e200 or 1e-170 gave 0.0 / 1.0 (overflowing squared distances)."""
    base, scaled = _blobs(1.0), _blobs(c)
    assert kmeans_silhouette(scaled, 5) == pytest.approx(kmeans_silhouette(base, 5), rel=1e-9)
    assert kmeans_silhouette(scaled, 5) > 0.9
    noise = np.random.default_rng(3).standard_normal((200, 8))
    assert clustering_agreement(noise * c, 5) == pytest.approx(clustering_agreement(noise, 5), rel=1e-9)
    assert clustering_agreement(noise, 5) < 0.9
    out, _ = monitoring_metrics(scaled, 5, seeds=[0, 1])
    ref, _ = monitoring_metrics(base, 5, seeds=[0, 1])
    assert out["silhouette"] == pytest.approx(ref["silhouette"], rel=1e-9)
    assert out["ami"] == pytest.approx(ref["ami"], rel=1e-9)
    assert math.isfinite(out["entropy"])
    if c > 1:  # the 1e-6 ridge is negligible: H(c x) = H(x) + D log c
        assert out["entropy"] == pytest.approx(embedding_entropy(base, ridge=0.0) + 8 * math.log(c), rel=1e-9)


@pytest.mark.parametrize("c", [1e-170, 1e200])
def test_entropy_is_finite_and_equivariant_at_extreme_scales(c: float) -> None:
    """Issue: entropy failed at 1e200. H(c x) = H(x) + D log c for the Gaussian estimator without ridge (and
    with the default ridge where it is negligible) and for the kNN estimator."""
    x = unit_features(4, n=400, d=6)
    d = x.shape[1]
    shifted = embedding_entropy(x, ridge=0.0) + d * math.log(c)
    assert embedding_entropy(x * c, ridge=0.0) == pytest.approx(shifted, rel=1e-9)
    knn_shift = embedding_entropy(x, estimator="knn") + d * math.log(c)
    assert embedding_entropy(x * c, estimator="knn") == pytest.approx(knn_shift, rel=1e-9)
    if c > 1:
        assert embedding_entropy(x * c) == pytest.approx(embedding_entropy(x, ridge=0.0) + d * math.log(c),
                                                         rel=1e-9)
    else:  # the ridge (1e-6) dominates eigenvalues of size 1e-340: H = D/2 log(2 pi e 1e-6)
        assert embedding_entropy(x * c) == pytest.approx(0.5 * d * math.log(2 * math.pi * math.e * 1e-6),
                                                         rel=1e-9)


def _views(seed: int = 30) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((60, 1, 6)) * np.array([3.0, 2.0, 1.0, 0.5, 0.3, 0.1])
    return means + 0.2 * rng.standard_normal((60, 3, 6))


def test_lidar_is_defined_at_extreme_scales() -> None:
    """Issue: LiDAR failed at 1e200. delta is an absolute ridge, so lidar(c V, delta) = lidar(V, delta / c^2):
    that identity is what the scaled computation must reproduce."""
    v = _views()
    assert lidar(v * 1e100) == pytest.approx(lidar(v, delta=1e-4 * 1e-200), rel=1e-8)
    assert lidar(v * 1e200) == pytest.approx(lidar(v, delta=1e-300), rel=1e-8)  # delta negligible either way
    assert lidar(v * 1e-170) == pytest.approx(lidar(v, delta=1e300), rel=1e-8)  # delta dominates either way
    assert math.isfinite(lidar(np.zeros((10, 3, 4)) + 1e300))


# ----------------------------------------------------------------------------- streaming order
def _outlier_data() -> np.ndarray:
    x = power_law(1000, 128, 1.0, seed=8, offset=0.3)
    x[0] += 1e5 * x[1:].std(axis=0)  # one unusual row, 1e5 standard deviations away
    return x


def test_accumulator_is_independent_of_batch_order_with_an_outlier_first() -> None:
    """Issue: a first batch of one unusual row, then the rest, gave alpha NaN (the full matrix: 1.08)."""
    x = _outlier_data()
    full = spectral_metrics(x)
    assert math.isfinite(full["alpha"]) and full["alpha_window_hi"] == 100.0
    orders = [
        [x[:1], x[1:]],
        [x[1:], x[:1]],
        [x[500:], x[:1], x[1:500]],
        list(np.array_split(x[np.random.default_rng(0).permutation(1000)], 37)),
    ]
    for batches in orders:
        acc = SpectralAccumulator(128)
        for b in batches:
            acc.update(torch.from_numpy(b).float() if len(b) % 2 else b)
        got = acc.metrics()
        for key in SCALE_FREE:  # float32 batches among them: 1e-5
            assert got[key] == pytest.approx(full[key], rel=1e-5), key


def test_one_outlier_row_does_not_cut_the_alpha_window() -> None:
    """Issue: one outlier row cut the alpha window to ranks 4-6 and nothing warned."""
    x = _outlier_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error", AlphaWindowWarning)
        fit = alpha_req(x)
        m = spectral_metrics(x.astype(np.float32))
    assert fit.window == (4, 100) and not fit.window_cut and fit.reason == ""
    assert m["alpha_window_hi"] == 100.0 and m["alpha_window_cut"] == 0.0


def test_a_cut_window_warns_and_is_recorded() -> None:
    rng = np.random.default_rng(9)
    x = rng.standard_normal((500, 20)) @ rng.standard_normal((20, 256))  # rank 20 < min(100, D)
    with pytest.warns(AlphaWindowWarning, match=r"cut to \(4, 20\): only 20 of 256"):
        fit = alpha_req(x)
    assert fit.window == (4, 20) and fit.window_cut and "only 20 of 256" in fit.reason
    with pytest.warns(AlphaWindowWarning):
        assert spectral_metrics(x)["alpha_window_cut"] == 1.0


# ----------------------------------------------------------------------------- parameters and inputs
@pytest.mark.parametrize(("call", "field"), [
    (lambda x: rankme(x, eps=-1e-7), "eps"),
    (lambda x: rankme(x, eps=math.nan), "eps"),
    (lambda x: rankme(x, eps=math.inf), "eps"),
    (lambda x: rankme_centered(x, eps=math.nan), "eps"),
    (lambda x: rankme_sq(x, eps=-1.0), "eps"),
    (lambda x: embedding_entropy(x, ridge=math.nan), "ridge"),
    (lambda x: embedding_entropy(x, ridge=-1.0), "ridge"),
    (lambda x: embedding_entropy(x, ridge=math.inf), "ridge"),
    (lambda x: embedding_entropy(x, estimator="knn", k=1.5), "k"),
    (lambda x: kmeans_silhouette(x, 2.7), "n_clusters"),
    (lambda x: clustering_agreement(x, 2.7), "n_clusters"),
    (lambda x: monitoring_metrics(x, 2.7), "n_clusters"),
    (lambda x: clustering_agreement(x, 3, seeds=("a", "b")), "seeds"),
    (lambda x: monitoring_metrics(x, 3, seeds=[0, 1.5]), "seeds"),
    (lambda x: clustering_agreement(x, 3, seeds=3), "seeds"),
    (lambda x: lidar(x.reshape(10, 4, 8), eps=math.nan), "eps"),
    (lambda x: lidar(x.reshape(10, 4, 8), delta=math.nan), "delta"),
    (lambda x: lidar(x.reshape(10, 4, 8), delta=math.inf), "delta"),
])
def test_invalid_parameters_raise_naming_the_parameter(call, field: str) -> None:
    """Issue: these gave NaN (eps < 0 or NaN, lidar eps NaN, ridge NaN), truncated 2.7, or a bare int()
    error."""
    x = np.random.default_rng(14).standard_normal((40, 8))
    with pytest.raises(MetricInputError, match=field):
        call(x)


@pytest.mark.parametrize("fn", [rankme, spectral_metrics, participation_ratio, embedding_entropy,
                                lambda x: kmeans_silhouette(x, 2)])
def test_zero_dimensional_input_is_reported_as_ndim_0(fn) -> None:
    """Issue: a 0-D input was reported as 'ndim=1'."""
    with pytest.raises(MetricInputError, match=r"ndim=0"):
        fn(np.array(3.0))
    with pytest.raises(MetricInputError, match=r"ndim=0"):
        fn(torch.tensor(3.0))


def test_integral_parameters_of_numpy_type_are_accepted() -> None:
    x = _blobs(1.0)
    assert kmeans_silhouette(x, np.int64(5)) > 0.9
    assert clustering_agreement(x, 5, seeds=np.arange(3)) == pytest.approx(1.0)

"""sweep.metrics on constructed inputs with known answers (exact spectra, not random magic numbers)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sweep.metrics import (
    DEFAULT_ALPHA_WINDOW,
    AlphaWindowWarning,
    SPECTRAL_KEYS,
    AlphaFit,
    MetricInputError,
    SpectralAccumulator,
    alpha_req,
    checkpoint_agreement,
    clustering_agreement,
    embedding_entropy,
    fit_power_law,
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

torch.set_num_threads(1)
EPS = 1e-7


# ----------------------------------------------------------------------------- constructions
def centred_orthonormal(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """n x d matrix with orthonormal columns that are all orthogonal to the ones vector."""
    a = rng.standard_normal((n, d))
    q, _ = np.linalg.qr(a - a.mean(axis=0))
    return q


def orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return q


def with_covariance_spectrum(
    lam: np.ndarray, n: int, rng: np.random.Generator, offset: float = 0.0
) -> np.ndarray:
    """X whose (N-1)-normalised sample covariance has exactly the eigenvalues lam."""
    d = lam.size
    u = centred_orthonormal(n, d, rng)
    return u @ np.diag(np.sqrt((n - 1) * lam)) @ orthogonal(d, rng).T + offset


def entropy_rank(weights: np.ndarray, eps: float) -> float:
    p = weights / weights.sum() + eps
    return math.exp(-float(np.sum(p * np.log(p))))


def svd_rankme(x: np.ndarray, eps: float = EPS) -> float:
    return entropy_rank(np.linalg.svd(x, compute_uv=False), eps)


# ----------------------------------------------------------------------------- RankMe
@pytest.mark.parametrize("k", [1, 5, 32])
@pytest.mark.parametrize("as_torch", [False, True])
def test_rankme_of_rank_k_equal_singular_values_is_k(k: int, as_torch: bool) -> None:
    rng = np.random.default_rng(k)
    n, d = 300, 64
    u = centred_orthonormal(n, k, rng) + 0.0
    x = 3.0 * u @ orthogonal(d, rng)[:, :k].T
    expected = entropy_rank(np.r_[np.ones(k), np.zeros(min(n, d) - k)], EPS)  # closed form with the eps
    got = rankme(torch.from_numpy(x) if as_torch else x)
    assert got == pytest.approx(expected, rel=1e-9)
    assert got == pytest.approx(k, rel=1e-3)


@pytest.mark.parametrize("shape", [(200, 30), (20, 50)])
def test_rankme_matches_paper_formula_on_svd(shape: tuple[int, int]) -> None:
    x = np.random.default_rng(1).standard_normal(shape) + 0.7
    assert rankme(x) == pytest.approx(svd_rankme(x), rel=1e-9)
    centred = x - x.mean(axis=0)
    assert rankme_centered(x) == pytest.approx(svd_rankme(centred), rel=1e-9)
    assert rankme_sq(x) == pytest.approx(entropy_rank(np.linalg.svd(x, compute_uv=False) ** 2, EPS), rel=1e-9)
    s2c = np.linalg.svd(centred, compute_uv=False) ** 2
    assert rankme_sq(x, center=True) == pytest.approx(entropy_rank(s2c, EPS), rel=1e-7)


def test_rankme_is_not_centred() -> None:
    """An offset along a 4th direction with the same norm as the other singular values: RankMe 4."""
    rng = np.random.default_rng(2)
    n, v = 100, orthogonal(10, rng)
    x = 2.0 * centred_orthonormal(n, 3, rng) @ v[:, :3].T
    offset = 2.0 / math.sqrt(n) * v[:, 3]  # the ones column times this row has singular value 2
    assert rankme(x) == pytest.approx(3.0, rel=1e-3)
    assert rankme(x + offset) == pytest.approx(4.0, rel=1e-3)
    assert rankme_centered(x + offset) == pytest.approx(rankme_centered(x), rel=1e-9)


# ----------------------------------------------------------------------------- alpha-ReQ
@pytest.mark.parametrize("a", [0.5, 1.0, 2.0])
def test_alpha_recovers_constructed_power_law(a: float) -> None:
    d = 128
    lam = np.arange(1, d + 1, dtype=float) ** -a
    x = with_covariance_spectrum(lam, 400, np.random.default_rng(3), offset=4.0)
    fit = alpha_req(x)
    assert fit.alpha == pytest.approx(a, abs=0.02)
    assert fit.alpha == pytest.approx(a, abs=1e-6)  # the covariance spectrum is exact by construction
    assert fit.r2 == pytest.approx(1.0, abs=1e-9)
    assert fit.window == DEFAULT_ALPHA_WINDOW
    assert not fit.collapsed


def test_alpha_of_sampled_gaussian_within_tolerance() -> None:
    """Sampling noise: N = 20 D keeps the fitted exponent within 0.05 of the population's."""
    rng = np.random.default_rng(4)
    d, a = 64, 1.0
    lam = np.arange(1, d + 1, dtype=float) ** -a
    x = (rng.standard_normal((20 * d, d)) * np.sqrt(lam)) @ orthogonal(d, rng).T
    assert alpha_req(x, (4, 40)).alpha == pytest.approx(a, abs=0.05)


def test_fit_power_law_is_pure_and_clips_window() -> None:
    k = np.arange(1, 51, dtype=float)
    eigs = 7.0 * k**-1.3
    shuffled = eigs[np.random.default_rng(5).permutation(50)]
    before = shuffled.copy()
    fit = fit_power_law(shuffled, (4, 100))
    np.testing.assert_array_equal(shuffled, before)
    assert fit == AlphaFit(alpha=pytest.approx(1.3, abs=1e-12), r2=pytest.approx(1.0), window=(4, 50))
    eigs[30:] = 0.0
    assert fit_power_law(eigs, (4, 100)).window == (4, 30)
    assert fit_power_law(np.full(10, 2.0), (1, 10)) == AlphaFit(0.0, 1.0, (1, 10))


def test_fit_power_law_weighted_r2_known_answer() -> None:
    """Three points: slope and weighted R^2 of the 1/k-weighted line, computed by hand."""
    lam = np.array([1.0, np.exp(-1.0), np.exp(-1.0)])  # log lambda = [0, -1, -1] at log k = [0, ln2, ln3]
    x, y, w = np.log([1.0, 2.0, 3.0]), np.array([0.0, -1.0, -1.0]), np.array([1.0, 0.5, 1.0 / 3.0])
    xm, ym = (w @ x) / w.sum(), (w @ y) / w.sum()
    slope = (w * (x - xm)) @ (y - ym) / ((w * (x - xm)) @ (x - xm))
    r2 = 1 - (w @ (y - ym - slope * (x - xm)) ** 2) / (w @ (y - ym) ** 2)
    fit = fit_power_law(lam, (1, 3))
    assert fit.alpha == pytest.approx(-slope, rel=1e-12)
    assert fit.r2 == pytest.approx(r2, rel=1e-12)
    assert 0.0 < fit.r2 < 1.0


@pytest.mark.parametrize(
    ("eigs", "window", "message"),
    [
        (np.r_[np.ones(5), np.zeros(5)], (4, 100), "leaves 2 positive eigenvalues"),
        (np.ones(10), (0, 5), "1 <= lo"),
        (np.ones(10), (4, 5), "at least 3"),
        (np.ones(10), "ab", "pair"),
        (np.ones((2, 5)), (1, 3), "1-D"),
        (np.r_[1.0, np.nan, 0.5], (1, 3), "NaN or inf"),
    ],
)
def test_fit_power_law_errors(eigs: np.ndarray, window: object, message: str) -> None:
    with pytest.raises(MetricInputError, match=message):
        fit_power_law(eigs, window)  # type: ignore[arg-type]


@pytest.mark.parametrize("d", [2, 3, 4, 5])
def test_alpha_window_larger_than_dimension_gives_nan_with_reason(d: int) -> None:
    """D = 2..5 is valid data: alpha is undefined for the (4, 100) window (NaN, the reason, a warning), the
    rest of the spectral metrics are defined (issue 8; it used to raise and lose RankMe)."""
    x = np.random.default_rng(0).standard_normal((50, d)) + 0.5
    with pytest.warns(AlphaWindowWarning, match=f"D={d} < 6"):
        fit = alpha_req(x)
    assert math.isnan(fit.alpha) and math.isnan(fit.r2) and fit.window_cut and not fit.collapsed
    assert f"D={d} < 6" in fit.reason
    with pytest.warns(AlphaWindowWarning):
        m = spectral_metrics(x)
    assert math.isnan(m["alpha"]) and m["alpha_window_cut"] == 1.0
    assert m["rankme"] == pytest.approx(svd_rankme(x), rel=1e-9)
    assert m["stable_rank"] == pytest.approx(np.sum(np.linalg.svd(x, compute_uv=False) ** 2)
                                             / np.linalg.svd(x, compute_uv=False)[0] ** 2, rel=1e-9)
    assert 1.0 <= m["participation_ratio"] <= d and 1.0 <= m["nesum"] <= d
    acc = SpectralAccumulator(d).update(x[:20]).update(x[20:])
    with pytest.warns(AlphaWindowWarning):
        assert acc.metrics()["rankme"] == pytest.approx(m["rankme"], rel=1e-9)


# ----------------------------------------------------------------------------- stable rank, PR, NESum
def test_stable_rank_pr_nesum_on_hand_computed_spectrum() -> None:
    """Singular values (3, 2, 1, 0, 0, 0) of a centred X: Gram eigenvalues (9, 4, 1)."""
    rng = np.random.default_rng(6)
    x = centred_orthonormal(40, 3, rng) @ np.diag([3.0, 2.0, 1.0]) @ orthogonal(6, rng)[:, :3].T
    assert stable_rank(x) == pytest.approx(14.0 / 9.0, rel=1e-12)
    assert participation_ratio(x) == pytest.approx(196.0 / 98.0, rel=1e-12)
    assert nesum(x) == pytest.approx(14.0 / 9.0, rel=1e-12)
    assert rankme(x) == pytest.approx(entropy_rank(np.array([3.0, 2.0, 1.0, 0.0, 0.0, 0.0]), EPS), rel=1e-9)


def test_isotropic_spectrum_gives_full_dimension() -> None:
    x = with_covariance_spectrum(np.ones(16), 200, np.random.default_rng(7))
    assert participation_ratio(x) == pytest.approx(16.0, rel=1e-10)
    assert nesum(x) == pytest.approx(16.0, rel=1e-10)
    assert stable_rank(x) == pytest.approx(16.0, rel=1e-10)  # centred: Gram = (N-1) * covariance


# ----------------------------------------------------------------------------- collapse
def _collapsed_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(8)
    rank1 = np.outer(rng.standard_normal(256) + 2.0, rng.standard_normal(64))
    return {
        "zeros": np.zeros((128, 64)),
        "constant_rows": np.tile(rng.standard_normal(64), (128, 1)),
        "rank1": rank1,
        "rank1_float32": rank1.astype(np.float32),
    }


@pytest.mark.parametrize("name", ["zeros", "constant_rows", "rank1", "rank1_float32"])
def test_collapse_is_a_defined_result(name: str) -> None:
    m = spectral_metrics(_collapsed_inputs()[name])
    assert set(m) == set(SPECTRAL_KEYS)
    assert m["rankme"] == pytest.approx(1.0, abs=1e-3)
    assert m["stable_rank"] == pytest.approx(1.0, abs=1e-9)
    assert m["participation_ratio"] == pytest.approx(1.0, abs=1e-9)
    assert m["nesum"] == pytest.approx(1.0, abs=1e-9)
    assert math.isnan(m["alpha"]) and math.isnan(m["alpha_r2"])
    fit = alpha_req(_collapsed_inputs()[name])
    assert fit.collapsed and math.isnan(fit.alpha)


def test_all_zero_rankme_is_exactly_one() -> None:
    assert rankme(np.zeros((10, 4))) == 1.0


def test_float32_rank_k_is_not_inflated_by_round_off() -> None:
    rng = np.random.default_rng(9)
    x = (rng.standard_normal((4096, 8)) @ rng.standard_normal((8, 256))).astype(np.float32)
    assert rankme(x) == pytest.approx(rankme(x.astype(np.float64)), rel=1e-4)
    assert spectral_metrics(x)["participation_ratio"] <= 8.0 + 1e-6


# ----------------------------------------------------------------------------- streaming
def _assert_metrics_close(a: dict[str, float], b: dict[str, float], rel: float) -> None:
    assert set(a) == set(b) == set(SPECTRAL_KEYS)
    for key in SPECTRAL_KEYS:
        assert a[key] == pytest.approx(b[key], rel=rel, nan_ok=True), key


def test_streaming_equals_full_matrix_with_ragged_batches() -> None:
    lam = np.arange(1, 65, dtype=float) ** -1.2
    x = with_covariance_spectrum(lam, 1000, np.random.default_rng(10), offset=3.0)
    acc = SpectralAccumulator(64)
    bounds = [0, 1, 8, 308, 308, 1000]  # sizes 1, 7, 300, 0, 692
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        acc.update(x[lo:hi] if i % 2 else torch.from_numpy(x[lo:hi]))
    assert acc.n == 1000
    np.testing.assert_allclose(acc.gram.numpy(), x.T @ x, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(acc.mean.numpy(), x.mean(axis=0), rtol=1e-12)
    for window in [DEFAULT_ALPHA_WINDOW, (2, 30)]:
        _assert_metrics_close(acc.metrics(window), spectral_metrics(x, window), rel=1e-6)


def test_streaming_float32_torch_batches_match_full_matrix() -> None:
    x = torch.from_numpy(with_covariance_spectrum(np.arange(1, 33.0) ** -0.8, 600, np.random.default_rng(11)))
    x32 = (x + 1.0).float()
    acc = SpectralAccumulator(32)
    for chunk in torch.split(x32, [100, 250, 1, 249]):
        acc.update(chunk)
    _assert_metrics_close(acc.metrics((2, 30)), spectral_metrics(x32, (2, 30)), rel=1e-5)


def test_torch_and_numpy_inputs_agree() -> None:
    x = with_covariance_spectrum(np.arange(1, 129.0) ** -1.0, 300, np.random.default_rng(12), offset=1.0)
    _assert_metrics_close(spectral_metrics(torch.from_numpy(x)), spectral_metrics(x), rel=1e-12)
    _assert_metrics_close(spectral_metrics(x.astype(np.float32)), spectral_metrics(x), rel=1e-4)
    assert rankme(torch.from_numpy(x).requires_grad_()) == pytest.approx(rankme(x), rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_multiplied_in_float32(dtype: torch.dtype) -> None:
    x = torch.from_numpy(with_covariance_spectrum(np.arange(1, 65.0) ** -0.7, 500, np.random.default_rng(27)))
    low = x.to(dtype)
    _assert_metrics_close(spectral_metrics(low), spectral_metrics(low.double()), rel=1e-5)
    as_input = low.numpy() if dtype == torch.float16 else low  # numpy has no bfloat16
    _assert_metrics_close(spectral_metrics(as_input), spectral_metrics(x), rel=0.05)


def test_rejected_batch_leaves_accumulator_unchanged() -> None:
    x = with_covariance_spectrum(np.arange(1, 17.0) ** -1.0, 300, np.random.default_rng(28))
    acc = SpectralAccumulator(16).update(x[:200])
    bad = x[200:].copy()
    bad[-1, 0] = np.inf
    with pytest.raises(MetricInputError, match="NaN or inf"):
        acc.update(bad)
    assert acc.n == 200
    _assert_metrics_close(acc.metrics((2, 10)), spectral_metrics(x[:200], (2, 10)), rel=1e-9)


def test_single_metrics_agree_with_spectral_metrics() -> None:
    x = with_covariance_spectrum(np.arange(1, 129.0) ** -1.5, 256, np.random.default_rng(13))
    m = spectral_metrics(x)
    fit = alpha_req(x)
    assert (m["alpha"], m["alpha_r2"], m["alpha_window_lo"], m["alpha_window_hi"]) == (
        fit.alpha,
        fit.r2,
        *map(float, fit.window),
    )
    assert (m["rankme"], m["stable_rank"], m["participation_ratio"], m["nesum"]) == (
        rankme(x),
        stable_rank(x),
        participation_ratio(x),
        nesum(x),
    )


# ----------------------------------------------------------------------------- bad input
def _good() -> np.ndarray:
    return np.random.default_rng(14).standard_normal((40, 8))


MATRIX_FUNCTIONS = {
    "rankme": rankme,
    "rankme_centered": rankme_centered,
    "rankme_sq": rankme_sq,
    "stable_rank": stable_rank,
    "participation_ratio": participation_ratio,
    "nesum": nesum,
    "alpha_req": lambda x: alpha_req(x, (1, 5)),
    "spectral_metrics": lambda x: spectral_metrics(x, (1, 5)),
    "embedding_entropy": embedding_entropy,
    "embedding_entropy_knn": lambda x: embedding_entropy(x, estimator="knn", k=1),
    "kmeans_silhouette": lambda x: kmeans_silhouette(x, 2),
    "clustering_agreement": lambda x: clustering_agreement(x, 2),
    "monitoring_metrics": lambda x: monitoring_metrics(x, 2),
}


def _bad_inputs() -> dict[str, tuple[object, str]]:
    nan, inf = _good(), _good()
    nan[3, 2] = np.nan
    inf[0, 0] = -np.inf
    return {
        "nan": (nan, r"contains NaN or inf values \(1 non-finite"),
        "inf_torch": (torch.from_numpy(inf).float(), r"contains NaN or inf values \(1 non-finite"),
        "one_row": (_good()[:1], r"N >= 2 samples, got N=1"),
        "one_column": (_good()[:, :1], r"D >= 2 features, got D=1"),
        "1d": (_good()[0], r"2-D \(N, D\) array, got ndim=1"),
        "3d": (_good()[None], r"2-D \(N, D\) array, got ndim=3"),
        "list": (_good().tolist(), r"numpy.ndarray or torch.Tensor, got list"),
        "strings": (np.array([["a", "b"], ["c", "d"]]), "real numeric dtype"),
    }


@pytest.mark.parametrize("case", list(_bad_inputs()))
@pytest.mark.parametrize("fn_name", list(MATRIX_FUNCTIONS))
def test_bad_input_raises_named_error(fn_name: str, case: str) -> None:
    x, message = _bad_inputs()[case]
    with pytest.raises(MetricInputError, match=message):
        MATRIX_FUNCTIONS[fn_name](x)


def test_full_matrix_errors_name_the_argument() -> None:
    x = _good()
    x[1, 1] = np.nan
    with pytest.raises(MetricInputError, match=r"^z contains NaN"):
        rankme(x)
    with pytest.raises(MetricInputError, match=r"^x contains NaN"):
        spectral_metrics(x)


def test_metric_input_error_is_value_error() -> None:
    assert issubclass(MetricInputError, ValueError)


def test_accumulator_errors() -> None:
    with pytest.raises(MetricInputError, match="dim needs D >= 2"):
        SpectralAccumulator(1)
    acc = SpectralAccumulator(8)
    with pytest.raises(MetricInputError, match="seen no rows"):
        acc.metrics()
    with pytest.raises(MetricInputError, match=r"shape \(B, 8\), got shape \(4, 7\)"):
        acc.update(np.zeros((4, 7)))
    bad = _good()
    bad[5, 5] = np.nan
    with pytest.raises(MetricInputError, match=r"batch contains NaN or inf values \(1 non-finite"):
        acc.update(bad)
    acc2 = SpectralAccumulator(8).update(_good()[:1])
    with pytest.raises(MetricInputError, match="N >= 2 samples, got N=1"):
        acc2.metrics()


def test_bad_arguments_name_the_field() -> None:
    x = _good()
    expected = "n_clusters must satisfy 2 <= n_clusters < N=40, got n_clusters=1$"
    with pytest.raises(MetricInputError, match=expected):
        kmeans_silhouette(x, 1)
    with pytest.raises(MetricInputError, match="seeds needs at least 2"):
        clustering_agreement(x, 3, seeds=[0])
    with pytest.raises(MetricInputError, match="seeds must be distinct"):
        clustering_agreement(x, 3, seeds=[1, 1])
    with pytest.raises(MetricInputError, match="estimator must be one of"):
        embedding_entropy(x, estimator="histogram")
    with pytest.raises(MetricInputError, match="previous_labels must have one label per sample"):
        monitoring_metrics(x, 3, previous_labels=np.zeros(39, dtype=int))
    with pytest.raises(MetricInputError, match="labels_now must have one label per sample"):
        checkpoint_agreement(np.zeros(4), np.zeros(5))


# ----------------------------------------------------------------------------- purity
def test_inputs_are_not_mutated() -> None:
    x_np = _good() + 2.0
    x_t = torch.from_numpy(x_np.copy()).float()
    views = np.random.default_rng(15).standard_normal((10, 3, 8))
    saved = (x_np.copy(), x_t.clone(), views.copy())
    for fn in MATRIX_FUNCTIONS.values():
        fn(x_np)
        fn(x_t)
    SpectralAccumulator(8).update(x_np).update(x_t).metrics((1, 5))
    lidar(views)
    np.testing.assert_array_equal(x_np, saved[0])
    assert torch.equal(x_t, saved[1])
    np.testing.assert_array_equal(views, saved[2])


def test_read_only_numpy_input_is_accepted() -> None:
    x = _good()
    x.setflags(write=False)
    assert rankme(x) == pytest.approx(svd_rankme(x), rel=1e-9)


# ----------------------------------------------------------------------------- LiDAR
def _lda_views(b: np.ndarray, w: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Views (N, 2, D) whose between / within covariances are exactly V diag(b) V^T, V diag(w) V^T."""
    d = b.size
    v = orthogonal(d, rng)
    means = math.sqrt(n) * centred_orthonormal(n, d, rng) @ np.diag(np.sqrt(b)) @ v.T
    q, _ = np.linalg.qr(rng.standard_normal((n, d)))
    dev = math.sqrt(n) * q @ np.diag(np.sqrt(w)) @ v.T  # views mean +- dev: within covariance = dev^T dev / N
    return np.stack([means + dev, means - dev], axis=1)


@pytest.mark.parametrize("k", [1, 3])
def test_lidar_known_value_with_noise_free_directions(k: int) -> None:
    d, delta, eps = 8, 1e-4, 1e-8
    w = np.r_[np.zeros(k), np.ones(d - k)]
    views = _lda_views(np.ones(d), w, 50, np.random.default_rng(16 + k))
    expected = entropy_rank(np.r_[np.full(k, 1.0 / delta), np.full(d - k, 1.0 / (1.0 + delta))], eps)
    assert lidar(views, delta=delta, eps=eps) == pytest.approx(expected, rel=1e-8)
    assert k <= lidar(views) < k + 0.01  # views that do not vary in k directions: LiDAR ~ k
    assert lidar(torch.from_numpy(views).float()) == pytest.approx(expected, rel=1e-4)


def test_lidar_isotropic_is_full_rank() -> None:
    views = _lda_views(np.full(6, 2.0), np.full(6, 0.5), 30, np.random.default_rng(20))
    assert lidar(views) == pytest.approx(entropy_rank(np.ones(6), 1e-8), rel=1e-8)


@pytest.mark.parametrize(
    ("views", "kwargs", "message"),
    [
        (np.zeros((10, 8)), {}, r"3-D \(N, Q, D\) array, got ndim=2"),
        (np.zeros((10, 1, 8)), {}, "Q >= 2 augmented views"),
        (np.zeros((1, 3, 8)), {}, "N >= 2 samples"),
        (np.zeros((10, 3, 1)), {}, "D >= 2 features"),
        (np.full((10, 3, 4), np.nan), {}, "NaN or inf"),
        (np.zeros((10, 3, 4)), {"delta": 0.0}, "delta must be > 0"),
    ],
)
def test_lidar_bad_input(views: np.ndarray, kwargs: dict, message: str) -> None:
    with pytest.raises(MetricInputError, match=message):
        lidar(views, **kwargs)


def test_lidar_of_identical_views_is_defined() -> None:
    views = np.zeros((10, 4, 6))
    assert lidar(views) == 1.0


# ----------------------------------------------------------------------------- monitoring
def _blobs(n_per: int = 40, k: int = 5, d: int = 8, seed: int = 21) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = 20.0 * np.eye(k, d)
    x = np.concatenate([c + 0.3 * rng.standard_normal((n_per, d)) for c in centres])
    return x, np.repeat(np.arange(k), n_per)


def test_clustering_on_separated_blobs_vs_noise() -> None:
    blobs, truth = _blobs()
    noise = np.random.default_rng(22).standard_normal(blobs.shape)
    assert kmeans_silhouette(blobs, 5, seed=0) > 0.9
    assert kmeans_silhouette(noise, 5, seed=0) < 0.2
    assert clustering_agreement(blobs, 5, seeds=[0, 1, 2]) == pytest.approx(1.0)
    assert clustering_agreement(noise, 5, seeds=[0, 1, 2]) < 0.9


def test_checkpoint_agreement_known_answers() -> None:
    labels = np.repeat(np.arange(4), 25)
    assert checkpoint_agreement(labels, (labels + 1) % 4) == pytest.approx(1.0)  # renamed clusters
    independent = np.random.default_rng(23).integers(0, 4, 100)
    assert abs(checkpoint_agreement(labels, independent)) < 0.05
    assert checkpoint_agreement(torch.from_numpy(labels), labels) == pytest.approx(1.0)


def test_monitoring_metrics_keys_and_chaining() -> None:
    blobs, truth = _blobs()
    first, labels = monitoring_metrics(blobs, 5, seeds=[0, 1])
    assert set(first) == {"silhouette", "ami", "entropy"}
    assert labels.shape == (blobs.shape[0],)
    assert checkpoint_agreement(truth, labels) == pytest.approx(1.0)
    second, labels2 = monitoring_metrics(torch.from_numpy(blobs), 5, seeds=[0, 1], previous_labels=labels)
    assert set(second) == {"silhouette", "ami", "ami_checkpoint", "entropy"}
    assert second["ami_checkpoint"] == pytest.approx(1.0)
    assert second == pytest.approx(first | {"ami_checkpoint": 1.0})
    single, _ = monitoring_metrics(blobs, 5, seeds=[3])
    assert math.isnan(single["ami"])


def test_monitoring_metrics_on_collapsed_embeddings() -> None:
    x = np.ones((50, 8))
    out, labels = monitoring_metrics(x, 4, seeds=[0, 1])
    assert out["silhouette"] == 0.0
    assert out["ami"] == pytest.approx(1.0)  # every run puts all points together: they agree
    assert math.isfinite(out["entropy"])


# ----------------------------------------------------------------------------- entropy
def test_gaussian_entropy_exact_on_constructed_covariance() -> None:
    lam = np.array([1.0, 2.0, 3.0, 0.5])
    x = with_covariance_spectrum(lam, 100, np.random.default_rng(24), offset=7.0)
    closed_form = 0.5 * np.sum(np.log(2 * np.pi * np.e * lam))
    assert embedding_entropy(x, ridge=0.0) == pytest.approx(closed_form, rel=1e-12)
    assert embedding_entropy(x) == pytest.approx(closed_form, abs=1e-5)


@pytest.mark.parametrize(("estimator", "n", "tol"), [("gaussian", 20000, 0.03), ("knn", 3000, 0.1)])
def test_entropy_of_sampled_gaussian_close_to_closed_form(estimator: str, n: int, tol: float) -> None:
    rng = np.random.default_rng(25)
    q = orthogonal(4, rng)
    cov = q @ np.diag([1.0, 2.0, 3.0, 0.5]) @ q.T
    x = rng.multivariate_normal(np.zeros(4), cov, size=n)
    closed_form = 0.5 * np.linalg.slogdet(2 * np.pi * np.e * cov)[1]
    assert embedding_entropy(x, estimator=estimator) == pytest.approx(closed_form, abs=tol)


def test_entropy_is_finite_on_collapse_with_ridge() -> None:
    x = np.zeros((20, 4))
    assert embedding_entropy(x) == pytest.approx(2.0 * np.log(2 * np.pi * np.e * 1e-6))
    assert embedding_entropy(x, ridge=0.0) == -math.inf


# ----------------------------------------------------------------------------- config and devices
def test_default_alpha_window_is_the_schema_default() -> None:
    from sweep.config.schema import MetricsConfig

    assert tuple(MetricsConfig().alpha_window) == DEFAULT_ALPHA_WINDOW


def test_accumulator_state_device_is_respected() -> None:
    x = _good()
    acc = SpectralAccumulator(8, device="cpu").update(torch.from_numpy(x))
    assert acc.gram.device.type == "cpu" and acc.gram.dtype == torch.float64


@pytest.mark.gpu
def test_cuda_batches_match_cpu_full_matrix() -> None:
    x = with_covariance_spectrum(np.arange(1, 129.0) ** -1.0, 2000, np.random.default_rng(26), offset=1.0)
    acc = SpectralAccumulator(128)
    for chunk in torch.split(torch.from_numpy(x).cuda(), [700, 1300]):
        acc.update(chunk)
    assert acc.gram.device.type == "cuda"
    _assert_metrics_close(acc.metrics(), spectral_metrics(x), rel=1e-6)
    x32 = torch.from_numpy(x).float()
    _assert_metrics_close(spectral_metrics(x32.cuda()), spectral_metrics(x32), rel=1e-4)

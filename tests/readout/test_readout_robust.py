"""Issue 8 regressions for sweep.readout: scale invariance, arbitrary label ids, thread selection, and the
path solver's agreement with scikit-learn's optimum (no timings here: benchmarks/readout.py measures speed).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

import sweep.readout._lbfgs as solver_module
import sweep.readout._linear as linear_module
import sweep.readout._threads as threads_module
from sweep.readout import (
    ReadoutInputError,
    fit_linear_classifier,
    knn_predict,
    knn_probe,
    linear_probe,
    risk_decomposition,
)
from sweep.readout._threads import JOBS_ENV, SMALL_WORK, THREADS_ENV, limit_threads, readout_threads


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The test machine's cores are shared: one thread, unless a test sets its own policy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv(THREADS_ENV, "1")
    yield
    torch.set_num_threads(before)


def blobs(rng: np.random.Generator, n: int, k: int = 3, d: int = 6, sep: float = 3.0
          ) -> tuple[np.ndarray, np.ndarray]:
    y = np.arange(n) % k
    return sep * np.eye(k, d)[y] + rng.normal(size=(n, d)), y


def splits(seed: int = 0, n: int = 240, k: int = 3, d: int = 6, sep: float = 3.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    parts = (blobs(rng, n, k, d, sep), blobs(rng, n // 2, k, d, sep), blobs(rng, n // 2, k, d, sep))
    return [a for part in parts for a in part]


def scaled(args: list[np.ndarray], c: float, dtype: type = np.float64) -> list[np.ndarray]:
    return [(a * c).astype(dtype) if i % 2 == 0 else a for i, a in enumerate(args)]


# ----------------------------------------------------------------------------- scale
@pytest.mark.parametrize("c", [1e-13, 1e-170, 1e200, 1e300, 2.0**-600])
def test_linear_probe_is_invariant_to_feature_scale(c: float) -> None:
    """Issue: features * 1e-13 or * 1e200 gave chance accuracy (a fixed 1e-12 'constant' threshold)."""
    args = splits(1, sep=2.0)
    base = linear_probe(*args, l2_grid=[1e-4, 1e-2, 1.0], device="cpu")
    got = linear_probe(*scaled(args, c), l2_grid=[1e-4, 1e-2, 1.0], device="cpu")
    assert base.test_accuracy > 0.8
    assert got.best_l2 == base.best_l2
    assert got.val_accuracy_by_l2 == base.val_accuracy_by_l2
    assert got.test_accuracy == base.test_accuracy and got.train_accuracy == base.train_accuracy


@pytest.mark.parametrize("c", [1e-25, 1e25, 2.0**-120])
def test_linear_probe_is_invariant_to_float32_feature_scale(c: float) -> None:
    args = splits(2, sep=2.0)
    base = linear_probe(*scaled(args, 1.0, np.float32), l2_grid=[1e-3, 1e-1], device="cpu")
    got = linear_probe(*scaled(args, c, np.float32), l2_grid=[1e-3, 1e-1], device="cpu")
    assert got.best_l2 == base.best_l2 and got.test_accuracy == base.test_accuracy


def test_per_column_scales_do_not_matter_and_constant_columns_are_relative() -> None:
    """Columns of wildly different size are each standardised; a column that is constant on train (at any
    size) is centred, not scaled, and a column varying at 1e-13 is a feature, not a constant."""
    args = splits(3, sep=2.0)
    base = linear_probe(*args, l2_grid=[1e-2], device="cpu")
    col = np.array([1e-150, 1.0, 1e100, 1e-13, 3.0, 1e250])
    mixed = [a * col if i % 2 == 0 else a for i, a in enumerate(args)]
    assert linear_probe(*mixed, l2_grid=[1e-2], device="cpu").test_accuracy == base.test_accuracy
    with_const = [np.column_stack([a, np.full(len(a), 7e200)]) if i % 2 == 0 else a
                  for i, a in enumerate(args)]
    assert linear_probe(*with_const, l2_grid=[1e-2], device="cpu").test_accuracy == base.test_accuracy
    model = fit_linear_classifier(with_const[0], args[1], l2=1e-2, device="cpu")
    assert float(model.scale[-1]) == 1.0 and float(model.scale[0]) != 1.0


@pytest.mark.parametrize(("c", "dtype"), [(1e19, np.float32), (1e-30, np.float32), (1e39, np.float64),
                                          (1e300, np.float64), (1e-300, np.float64)])
def test_knn_is_invariant_to_feature_scale(c: float, dtype: type) -> None:
    """Issue: knn_probe on features * 1e19 gave chance (float32 norm overflow); * 1e39 (float64) said
    'contains NaN or inf' for finite input."""
    rng = np.random.default_rng(6)
    (xtr, ytr), (xte, yte) = blobs(rng, 120), blobs(rng, 60)
    base = knn_probe(xtr, ytr, xte, yte, k=5, device="cpu")
    assert base > 0.9
    assert knn_probe((xtr * c).astype(dtype), ytr, (xte * c).astype(dtype), yte, k=5, device="cpu") == base
    preds = knn_predict((xtr * c).astype(dtype), ytr, (xte * c).astype(dtype), k=5, device="cpu")
    np.testing.assert_array_equal(preds, knn_predict(xtr, ytr, xte, k=5, device="cpu"))


def test_rows_of_very_different_norms_keep_their_direction_in_knn() -> None:
    rng = np.random.default_rng(7)
    (xtr, ytr), (xte, yte) = blobs(rng, 90), blobs(rng, 45)
    row_scale = 10.0 ** rng.integers(-200, 200, size=(90, 1))
    assert knn_probe(xtr * row_scale, ytr, xte, yte, k=3, device="cpu") == knn_probe(xtr, ytr, xte, yte, k=3,
                                                                                      device="cpu")


# ----------------------------------------------------------------------------- labels
@pytest.mark.parametrize("ids", [[0, 1000, 2000], [7, 3, 10**9], [2**62, 5, 11]])
def test_arbitrary_label_ids_are_remapped(ids: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue: labels {0, 1000, 2000} built 2001 classes (29x slower); a label 10**9 tried to allocate 128 GB
    (kNN 1.2 TB). Classes are the ids present, in sorted order: results equal those of labels 0..C-1."""
    args = splits(4, sep=2.0)
    order = np.argsort(ids)  # class c of the 0..2 problem gets the c-th smallest id: same tie-breaking
    table = np.array(ids)[order]
    relabelled = [table[a] if i % 2 else a for i, a in enumerate(args)]
    seen: list[int] = []
    real = linear_module._Problem.__init__

    def spy(self, z, y, n_classes):  # type: ignore[no-untyped-def]
        seen.append(n_classes)
        real(self, z, y, n_classes)

    monkeypatch.setattr(linear_module._Problem, "__init__", spy)
    base = linear_probe(*args, l2_grid=[1e-3, 1e-1], device="cpu")
    got = linear_probe(*relabelled, l2_grid=[1e-3, 1e-1], device="cpu")
    assert seen == [3, 3]
    assert got == base
    model = fit_linear_classifier(relabelled[0], relabelled[1], l2=1e-3, device="cpu")
    assert tuple(model.weight.shape) == (6, 3) and model.classes.tolist() == sorted(ids)
    assert set(model.predict(relabelled[2]).tolist()) <= set(ids)
    assert model.accuracy(relabelled[2], relabelled[3]) == pytest.approx(
        fit_linear_classifier(args[0], args[1], l2=1e-3, device="cpu").accuracy(args[2], args[3]), abs=1e-12)
    xtr, ytr, xte, yte = relabelled[0], relabelled[1], relabelled[4], relabelled[5]
    plain = knn_probe(args[0], args[1], args[4], args[5], k=5, device="cpu")
    assert knn_probe(xtr, ytr, xte, yte, k=5, device="cpu") == plain
    assert set(knn_predict(xtr, ytr, xte, k=5, device="cpu").tolist()) <= set(ids)


def test_classes_missing_from_train_count_as_errors() -> None:
    args = splits(5, sep=4.0)
    base = linear_probe(*args, l2_grid=[1e-2], device="cpu")
    yte = args[5].copy()
    yte[:10] = 99  # a class the probe never saw
    got = linear_probe(*args[:5], yte, l2_grid=[1e-2], device="cpu")
    wrong_before = round((1 - base.test_accuracy) * len(yte))
    assert got.test_accuracy <= base.test_accuracy
    assert round((1 - got.test_accuracy) * len(yte)) <= wrong_before + 10
    assert knn_probe(args[0], args[1], args[4], yte, k=3, device="cpu") <= 1 - 10 / len(yte) + 1e-12


def test_risk_decomposition_accepts_arbitrary_label_ids() -> None:
    args = splits(6, sep=2.0)
    ids = np.array([5, 500, 5_000_000])
    x, y = args[0], args[1]
    base = risk_decomposition(x[:80], y[:80], x[80:], y[80:], args[4], args[5], x[:80] * 2, x[80:] * 2,
                              device="cpu")
    got = risk_decomposition(x[:80], ids[y[:80]], x[80:], ids[y[80:]], args[4], ids[args[5]], x[:80] * 2,
                             x[80:] * 2, device="cpu")
    assert got.risks == pytest.approx(base.risks, abs=1e-12)


# ----------------------------------------------------------------------------- solver
def _sklearn_fit(z: np.ndarray, y: np.ndarray, l2: float) -> LogisticRegression:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LogisticRegression(C=1.0 / (len(y) * l2), tol=1e-10, max_iter=20_000).fit(z, y)


@pytest.mark.parametrize("n", [300, 5000])  # 5000 x 64: the float32-products path (N * D >= 2**18)
def test_path_solutions_match_sklearn_optimum(n: int) -> None:
    """Warm-started, preconditioned path vs sklearn's lbfgs per L2 to a tight tolerance: same optimum."""
    rng = np.random.default_rng(n)
    d, k = 64, 5
    mix = rng.standard_normal((d, d)) / 4 + np.eye(d)  # correlated features
    y = rng.integers(0, k, n)
    x = (rng.standard_normal((n, d)) + 0.7 * np.eye(k, d)[y]) @ mix
    z = (x - x.mean(0)) / x.std(0)
    grid = [1e-1, 1e-2, 1e-3]
    prep = linear_module._prepare(torch.from_numpy(x), torch.from_numpy(y), torch.float64)
    prob = linear_module._Problem(prep.z, prep.y, k)
    assert (prob.z32 is not None) == (n * d >= 2**18)
    fits = linear_module._fit_path(prob, grid, max_iter=500, tol=1e-8)
    for l2 in grid:
        ref = _sklearn_fit(z, y, l2)
        fit = fits[l2]
        assert fit.converged
        np.testing.assert_allclose(fit.weight.numpy(), ref.coef_.T, atol=2e-5)
        np.testing.assert_allclose(fit.bias.numpy() - fit.bias.numpy().mean(),
                                   ref.intercept_ - ref.intercept_.mean(), atol=2e-5)


def test_linear_probe_agrees_with_per_l2_cold_fits() -> None:
    """The path (warm starts, carried curvature pairs) changes the speed, not the models: same accuracies as
    independent single-L2 fits."""
    args = splits(8, n=400, d=10, sep=1.2)
    grid = [1e-5, 1e-3, 1e-1, 10.0]
    result = linear_probe(*args, l2_grid=grid, device="cpu", tol=1e-8, max_iter=1000)
    for l2 in grid:
        model = fit_linear_classifier(args[0], args[1], l2=l2, device="cpu", tol=1e-8, max_iter=1000)
        assert model.converged
        assert result.val_accuracy_by_l2[l2] == model.accuracy(args[2], args[3])


# ----------------------------------------------------------------------------- threads
def test_thread_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.delenv(JOBS_ENV, raising=False)
    monkeypatch.setattr(threads_module, "available_cores", lambda: 8)
    monkeypatch.setattr(threads_module, "busy_cores", lambda: 0)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    assert readout_threads(SMALL_WORK - 1) == 1  # small problems: one thread
    assert readout_threads(SMALL_WORK) == 8
    monkeypatch.setenv(JOBS_ENV, "3")
    assert readout_threads(1e9) == 2  # cores // concurrent jobs
    monkeypatch.setattr(threads_module, "busy_cores", lambda: 7)
    assert readout_threads(1e9) == 1  # never more than the free cores
    monkeypatch.setenv(THREADS_ENV, "5")
    assert readout_threads(10) == 5  # the runner / user fixes it
    assert readout_threads(10, threads=3) == 3  # the argument wins
    monkeypatch.setenv(THREADS_ENV, "zero")
    with pytest.raises(ReadoutInputError, match=THREADS_ENV):
        readout_threads(10)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ReadoutInputError, match="threads"):
            readout_threads(10, threads=bad)  # type: ignore[arg-type]


def test_limit_threads_restores_torch_threads() -> None:
    torch.set_num_threads(1)
    with limit_threads(2):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == 1


def test_probe_uses_the_resolved_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    used: list[int] = []
    real = linear_module.limit_threads

    def spy(n: int):  # type: ignore[no-untyped-def]
        used.append(n)
        return real(n)

    monkeypatch.setattr(linear_module, "limit_threads", spy)
    monkeypatch.delenv(THREADS_ENV, raising=False)
    linear_probe(*splits(9), l2_grid=[1e-2], device="cpu")  # small: 1 thread whatever the machine
    linear_probe(*splits(9), l2_grid=[1e-2], device="cpu", threads=2)
    assert used == [1, 2]
    with pytest.raises(ReadoutInputError, match="threads"):
        linear_probe(*splits(9), l2_grid=[1e-2], device="cpu", threads=0)


def test_busy_and_available_cores_are_sane() -> None:
    assert threads_module.available_cores() >= 1
    assert threads_module.busy_cores() >= 0
    assert not math.isnan(float(threads_module.busy_cores()))


def test_solver_is_picked_by_size_and_both_reach_the_same_optimum() -> None:
    """Small CPU problems use scipy's L-BFGS-B on whitened variables, large ones the torch loop: same objective,
    same stopping rule, so the same optimum (to the tolerance) from the same start."""
    rng = np.random.default_rng(7)
    n, d, k = 400, 16, 4
    y = rng.integers(0, k, n)
    x = (rng.standard_normal((n, d)) + np.eye(k, d)[y]) @ (rng.standard_normal((d, d)) / 3 + np.eye(d))
    prep = linear_module._prepare(torch.from_numpy(x), torch.from_numpy(y), torch.float64)
    prob = linear_module._Problem(prep.z, prep.y, k)
    assert solver_module._uses_lbfgsb(prob)
    big = linear_module._Problem(torch.zeros(4096, 64, dtype=torch.float64), torch.zeros(4096, dtype=torch.long), 2)
    assert not solver_module._uses_lbfgsb(big)
    w0, b0 = torch.zeros(d, k, dtype=torch.float64), torch.zeros(k, dtype=torch.float64)
    for l2 in (1e-1, 1e-3):
        small = solver_module._solve_small(prob, l2, w0, b0, max_iter=500, tol=1e-8)
        loop = solver_module._solve(prob, l2, w0, b0, max_iter=500, tol=1e-8)
        assert small.converged and loop.converged
        np.testing.assert_allclose(small.weight.numpy(), loop.weight.numpy(), atol=1e-6)
        np.testing.assert_allclose(small.bias.numpy() - small.bias.numpy().mean(),
                                   loop.bias.numpy() - loop.bias.numpy().mean(), atol=1e-6)

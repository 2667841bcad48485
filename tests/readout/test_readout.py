"""Readouts: linear probe (val picks L2, test reports), kNN probe, Dubois et al. risk decomposition.

Known answers where they exist (separable -> 1.0, random labels -> chance, sklearn's optimum, a numpy kNN),
constructed cases for the L2 choice, and independent recomputation of every risk component.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

import sweep.readout._knn as knn_module
from sweep.config.schema import ReadoutConfig
from sweep.readout import (
    RISK_KEYS,
    ProbeResult,
    ReadoutInputError,
    decompose,
    fit_linear_classifier,
    knn_predict,
    knn_probe,
    linear_probe,
    resolve_device,
    risk_decomposition,
    select_l2,
    split_heldout,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """The test machine's cores are shared: keep torch to one thread here, restore afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- data
def blobs(rng: np.random.Generator, n: int, k: int = 3, d: int = 6, sep: float = 8.0, noise: float = 1.0
          ) -> tuple[np.ndarray, np.ndarray]:
    """k Gaussian clusters at sep * e_c; sep=8, noise=1 leaves no overlap in practice (8 sigma apart)."""
    y = np.arange(n) % k
    x = sep * np.eye(k, d)[y] + noise * rng.normal(size=(n, d))
    return x, y


def shortcut_data(rng: np.random.Generator, n: int, shortcut: str) -> tuple[np.ndarray, np.ndarray]:
    """x0: robust but noisy signal; x1: on train a near-perfect shortcut, elsewhere pure noise or flipped.

    On train the max-margin direction (small L2) puts its weight on the shortcut x1, while heavy L2 drives
    the weights towards the class-mean difference, which uses x0 as much as x1.
    """
    y = np.repeat([0, 1], n // 2)
    s = 2.0 * y - 1.0
    x0 = s + rng.normal(scale=0.5, size=n)
    x1 = {"train": s + rng.normal(scale=0.01, size=n), "noise": rng.normal(size=n), "kept": s}[shortcut]
    if shortcut == "kept":  # shortcut survives, the robust feature is anti-correlated: small L2 wins
        x0 = -x0
    return np.column_stack([x0, x1]), y


# ----------------------------------------------------------------------------- linear probe
def test_probe_learns_separable_problem() -> None:
    rng = np.random.default_rng(0)
    (xtr, ytr), (xva, yva), (xte, yte) = blobs(rng, 150), blobs(rng, 90), blobs(rng, 90)
    result = linear_probe(xtr, ytr, xva, yva, xte, yte, device="cpu")
    assert result.test_accuracy == 1.0
    assert result.val_accuracy == 1.0
    assert result.train_accuracy == 1.0
    assert set(result.val_accuracy_by_l2) == set(ReadoutConfig().l2_grid)


def test_probe_is_at_chance_on_random_labels() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1600, 10))
    y = rng.integers(0, 2, size=1600)
    result = linear_probe(x[:400], y[:400], x[400:600], y[400:600], x[600:], y[600:], device="cpu")
    # 1000 test labels independent of everything: accuracy ~ Binomial(1000, 0.5)/1000, sd 0.016
    assert abs(result.test_accuracy - 0.5) < 0.06
    assert result.train_accuracy > result.test_accuracy  # it does fit the noise it was given


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_large_l2_is_chosen_when_val_prefers_it(seed: int) -> None:
    rng = np.random.default_rng(seed)
    train, val = shortcut_data(rng, 100, "train"), shortcut_data(rng, 500, "noise")
    test = shortcut_data(rng, 500, "noise")
    result = linear_probe(*train, *val, *test, l2_grid=[1e-6, 1e-3, 10.0], device="cpu")
    assert result.best_l2 == 10.0
    assert result.val_accuracy_by_l2[10.0] > result.val_accuracy_by_l2[1e-6] + 0.05
    assert result.val_accuracy == result.val_accuracy_by_l2[10.0]


def test_small_l2_is_chosen_when_val_prefers_it() -> None:
    """Same train split, other val split: the choice follows val, not a built-in preference."""
    rng = np.random.default_rng(0)
    train, val = shortcut_data(rng, 100, "train"), shortcut_data(rng, 500, "kept")
    test = shortcut_data(rng, 500, "noise")
    result = linear_probe(*train, *val, *test, l2_grid=[1e-6, 1e-3, 10.0], device="cpu")
    assert result.best_l2 == 1e-6
    assert result.val_accuracy == 1.0


def test_test_split_never_influences_selection() -> None:
    rng = np.random.default_rng(3)
    train, val = shortcut_data(rng, 100, "train"), shortcut_data(rng, 500, "noise")
    xte, yte = shortcut_data(rng, 500, "noise")
    clean = linear_probe(*train, *val, xte, yte, l2_grid=[1e-6, 1e-3, 10.0], device="cpu")
    corrupted = linear_probe(*train, *val, rng.normal(size=xte.shape) * 100, 1 - yte,
                             l2_grid=[1e-6, 1e-3, 10.0], device="cpu")
    assert corrupted.best_l2 == clean.best_l2
    assert corrupted.val_accuracy_by_l2 == clean.val_accuracy_by_l2
    assert corrupted.train_accuracy == clean.train_accuracy
    flipped = linear_probe(*train, *val, xte, 1 - yte, l2_grid=[1e-6, 1e-3, 10.0], device="cpu")
    assert flipped.best_l2 == clean.best_l2
    assert flipped.test_accuracy == pytest.approx(1.0 - clean.test_accuracy, abs=1e-12)  # same model


def test_select_l2_breaks_ties_towards_larger_l2() -> None:
    assert select_l2({1e-4: 0.9, 1e-2: 0.95, 1e-1: 0.95, 1.0: 0.8}) == 1e-1
    assert select_l2({1e-4: 0.97, 1e-2: 0.95}) == 1e-4


def test_fit_matches_sklearn_optimum() -> None:
    """Same objective as sklearn's L2 logistic regression with C = 1 / (n * l2) on standardised features."""
    rng = np.random.default_rng(4)
    x, y = blobs(rng, 120, k=3, d=5, sep=1.5)
    l2 = 1e-2
    model = fit_linear_classifier(x, y, l2=l2, tol=1e-8, max_iter=500, device="cpu")
    assert model.converged
    z = (x - x.mean(0)) / x.std(0)
    reference = LogisticRegression(C=1.0 / (len(y) * l2), tol=1e-12, max_iter=10_000).fit(z, y)
    np.testing.assert_allclose(model.weight.numpy(), reference.coef_.T, atol=1e-5)
    bias = model.bias.numpy()
    ref_bias = reference.intercept_
    np.testing.assert_allclose(bias - bias.mean(), ref_bias - ref_bias.mean(), atol=1e-5)  # softmax shift
    probs = torch.softmax(model.logits(x), dim=1).numpy()
    np.testing.assert_allclose(probs, reference.predict_proba(z), atol=1e-6)


def test_probe_is_deterministic_and_accepts_tensors() -> None:
    rng = np.random.default_rng(5)
    splits = [blobs(rng, n, sep=2.0) for n in (90, 60, 60)]
    args = [a for split in splits for a in split]
    first = linear_probe(*args, l2_grid=[1e-3, 1e-1], device="cpu")
    again = linear_probe(*args, l2_grid=[1e-3, 1e-1], device="cpu")
    as_tensors = linear_probe(*[torch.from_numpy(a) for a in args], l2_grid=[1e-3, 1e-1], device="cpu")
    assert first == again == as_tensors


def test_probe_result_is_frozen_and_serialisable() -> None:
    result = ProbeResult(val_accuracy=0.5, test_accuracy=0.25, best_l2=1e-3, val_accuracy_by_l2={1e-3: 0.5},
                         train_accuracy=0.75)
    with pytest.raises(AttributeError):
        result.best_l2 = 1.0  # type: ignore[misc]
    record = json.loads(json.dumps(result.to_dict()))
    assert record == {"val_accuracy": 0.5, "test_accuracy": 0.25, "best_l2": 1e-3,
                      "val_accuracy_by_l2": {"0.001": 0.5}, "train_accuracy": 0.75}


# ----------------------------------------------------------------------------- kNN
def knn_reference(xtr: np.ndarray, ytr: np.ndarray, xq: np.ndarray, k: int, temperature: float | None
                  ) -> np.ndarray:
    """Brute force in float64: full similarity matrix, argsort, bincount vote, first max on ties."""
    a = xtr / np.linalg.norm(xtr, axis=1, keepdims=True)
    b = xq / np.linalg.norm(xq, axis=1, keepdims=True)
    sims = b @ a.T
    preds = []
    for row in sims:
        nearest = np.argsort(-row, kind="stable")[:k]
        weights = np.ones(k) if temperature is None else np.exp(row[nearest] / temperature)
        preds.append(int(np.argmax(np.bincount(ytr[nearest], weights=weights, minlength=ytr.max() + 1))))
    return np.array(preds)


def test_knn_on_separated_clusters_is_perfect() -> None:
    rng = np.random.default_rng(6)
    (xtr, ytr), (xte, yte) = blobs(rng, 120), blobs(rng, 60)
    assert knn_probe(xtr, ytr, xte, yte, k=5, device="cpu") == 1.0
    assert knn_probe(xtr, ytr, xte, yte, k=20, temperature=0.07, device="cpu") == 1.0


@pytest.mark.parametrize(("k", "temperature"), [(1, None), (4, None), (7, None), (7, 0.07), (10, 0.5)])
def test_knn_matches_bruteforce_reference(k: int, temperature: float | None) -> None:
    rng = np.random.default_rng(7)
    xtr, ytr = rng.normal(size=(60, 5)), rng.integers(0, 3, size=60)
    xq = rng.normal(size=(37, 5))
    got = knn_predict(xtr, ytr, xq, k=k, temperature=temperature, chunk_size=8, device="cpu")
    np.testing.assert_array_equal(got, knn_reference(xtr, ytr, xq, k, temperature))


def test_knn_similarity_is_built_chunk_by_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(8)
    xtr, ytr = rng.normal(size=(50, 4)), rng.integers(0, 2, size=50)
    xq, yq = rng.normal(size=(23, 4)), rng.integers(0, 2, size=23)
    shapes: list[tuple[int, int]] = []
    real_vote = knn_module._vote

    def spy(sims: torch.Tensor, *args: object) -> torch.Tensor:
        shapes.append(tuple(sims.shape))
        return real_vote(sims, *args)

    monkeypatch.setattr(knn_module, "_vote", spy)
    chunked = knn_probe(xtr, ytr, xq, yq, k=3, chunk_size=5, device="cpu")
    assert shapes == [(5, 50)] * 4 + [(3, 50)]
    shapes.clear()
    assert knn_probe(xtr, ytr, xq, yq, k=3, chunk_size=1000, device="cpu") == chunked
    assert shapes == [(23, 50)]


# ----------------------------------------------------------------------------- risk decomposition
def risk_problem(seed: int = 9) -> dict[str, np.ndarray]:
    """S (150 seen rows), T (60 unseen); the SSL encoder is noisier than the supervised one, worse on T."""
    rng = np.random.default_rng(seed)
    k, d = 3, 8
    y_seen, y_test = np.arange(150) % k, np.arange(60) % k
    means = 2.0 * np.eye(k, d)
    return {
        "y_seen": y_seen, "y_test": y_test,
        "sup_seen": 2 * means[y_seen] + 0.5 * rng.normal(size=(150, d)),
        "ssl_seen": means[y_seen] + 1.0 * rng.normal(size=(150, d)),
        "ssl_test": means[y_test] + 1.4 * rng.normal(size=(60, d)),
    }


def error(model: object, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(model.predict(x).numpy() != y))  # type: ignore[attr-defined]


def test_split_heldout_is_stratified_and_disjoint() -> None:
    y = np.repeat([0, 1, 2], [40, 40, 20])
    fit_idx, held_idx = split_heldout(y, heldout_size=20, seed=0)
    assert len(held_idx) == 20 and len(fit_idx) == 80
    assert set(fit_idx).isdisjoint(held_idx) and set(fit_idx) | set(held_idx) == set(range(100))
    assert np.bincount(y[held_idx]).tolist() == [8, 8, 4]


def test_risk_components_sum_to_total_and_match_independent_recomputation() -> None:
    p, l2 = risk_problem(), 1e-3
    fit, held = split_heldout(p["y_seen"], heldout_size=len(p["y_test"]), seed=0)
    y = p["y_seen"]
    result = risk_decomposition(p["ssl_seen"][fit], y[fit], p["ssl_seen"][held], y[held], p["ssl_test"],
                                p["y_test"], p["sup_seen"][fit], p["sup_seen"][held], l2=l2, device="cpu")

    # independent recomputation: fit each probe on its split (S in its original row order), count in numpy
    sup_all = fit_linear_classifier(p["sup_seen"], y, l2=l2, device="cpu")
    ssl_all = fit_linear_classifier(p["ssl_seen"], y, l2=l2, device="cpu")
    ssl_fit = fit_linear_classifier(p["ssl_seen"][fit], y[fit], l2=l2, device="cpu")
    r_sup, r_ssl = error(sup_all, p["sup_seen"], y), error(ssl_all, p["ssl_seen"], y)
    r_held, r_test = error(ssl_fit, p["ssl_seen"][held], y[held]), error(ssl_fit, p["ssl_test"], p["y_test"])

    assert result.approximation == pytest.approx(r_sup, abs=1e-12)
    assert result.usability == pytest.approx(r_ssl - r_sup, abs=1e-12)
    assert result.probe_generalization == pytest.approx(r_held - r_ssl, abs=1e-12)
    assert result.encoder_generalization == pytest.approx(r_test - r_held, abs=1e-12)
    assert result.total == pytest.approx(r_test, abs=1e-12)
    assert sum(result.components().values()) == pytest.approx(result.total, abs=1e-9)
    assert dict(zip(RISK_KEYS, (r_sup, r_ssl, r_held, r_test))) == pytest.approx(result.risks, abs=1e-12)
    # a meaningful case: the SSL encoder is less usable than the supervised one and worse on unseen data
    assert result.usability > 0 and result.encoder_generalization > 0
    # total is the test error of the standard probe (train on S_fit, this L2)
    probe = linear_probe(p["ssl_seen"][fit], y[fit], p["ssl_seen"][held], y[held], p["ssl_test"], p["y_test"],
                         l2_grid=[l2], device="cpu")
    assert result.total == pytest.approx(1.0 - probe.test_accuracy, abs=1e-12)


def test_risk_components_sum_for_log_loss_and_vanish_for_identical_encoders() -> None:
    p = risk_problem(seed=10)
    fit, held = split_heldout(p["y_seen"], heldout_size=0.3, seed=1)
    y = p["y_seen"]
    result = risk_decomposition(p["sup_seen"][fit], y[fit], p["sup_seen"][held], y[held], p["ssl_test"],
                                p["y_test"], p["sup_seen"][fit], p["sup_seen"][held], loss="log_loss",
                                device="cpu")
    assert result.usability == 0.0  # the SSL features ARE the reference features: same probe, same risk
    assert result.approximation > 0  # log loss of a finite-l2 probe is never exactly 0
    assert sum(result.components().values()) == pytest.approx(result.total, abs=1e-9)
    assert json.loads(json.dumps(result.to_dict()))["loss"] == "log_loss"


def test_decompose_arithmetic_on_known_numbers() -> None:
    parts = decompose(0.125, 0.25, 0.5, 0.625)
    assert (parts.approximation, parts.usability, parts.probe_generalization, parts.encoder_generalization,
            parts.total) == (0.125, 0.125, 0.25, 0.125, 0.625)


# ----------------------------------------------------------------------------- bad inputs
def _probe_args() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    (xtr, ytr), (xva, yva), (xte, yte) = blobs(rng, 30), blobs(rng, 30), blobs(rng, 30)
    return {"train_x": xtr, "train_y": ytr, "val_x": xva, "val_y": yva, "test_x": xte, "test_y": yte}


def _with(args: dict, **changes: object) -> dict:
    return {**args, **changes}


@pytest.mark.parametrize(("change", "field"), [
    (lambda a: {"val_x": np.where(np.arange(30)[:, None] == 3, np.nan, a["val_x"])}, "val_x"),
    (lambda a: {"test_x": a["test_x"][:, :4]}, "test_x"),
    (lambda a: {"train_x": a["train_x"][0]}, "train_x"),
    (lambda a: {"train_x": a["train_x"].astype(np.int64)}, "train_x"),
    (lambda a: {"train_y": a["train_y"].astype(np.float64)}, "train_y"),
    (lambda a: {"test_y": a["test_y"][:, None]}, "test_y"),
    (lambda a: {"val_y": a["val_y"][:-1]}, "val_y"),
    (lambda a: {"train_y": -a["train_y"]}, "train_y"),
    (lambda a: {"val_y": np.zeros(30, dtype=np.int64)}, "val split"),
    (lambda a: {"train_y": np.ones(30, dtype=np.int64)}, "train split"),
    (lambda a: {"l2_grid": []}, "l2_grid"),
    (lambda a: {"l2_grid": [1e-3, -1.0]}, "l2_grid"),
    (lambda a: {"l2_grid": [1e-3, 1e-3]}, "l2_grid"),
    (lambda a: {"max_iter": 0}, "max_iter"),
    (lambda a: {"device": "gpu"}, "device"),
    (lambda a: {"tol": 0.0}, "tol"),
])
def test_linear_probe_rejects_bad_inputs(change, field: str) -> None:
    args = _probe_args()
    with pytest.raises(ValueError, match=field):
        linear_probe(**_with(args, **change(args)))


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"k": 0}, "k"),
    ({"k": 31}, "k"),
    ({"temperature": 0.0}, "temperature"),
    ({"chunk_size": 0}, "chunk_size"),
    ({"test_y": np.arange(29)}, "test_y"),
    ({"train_x": np.full((30, 6), np.inf)}, "train_x"),
])
def test_knn_rejects_bad_inputs(kwargs: dict, field: str) -> None:
    a = _probe_args()
    args = {"train_x": a["train_x"], "train_y": a["train_y"], "test_x": a["test_x"], "test_y": a["test_y"]}
    with pytest.raises(ValueError, match=field):
        knn_probe(**{**args, **kwargs}, device="cpu")


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"supervised_heldout_x": np.zeros((5, 8))}, "supervised_heldout_x"),
    ({"ssl_test_x": np.zeros((60, 7))}, "ssl_test_x"),
    ({"heldout_y": np.zeros(60, dtype=np.int64)}, "heldout split"),
    ({"loss": "hinge"}, "loss"),
    ({"l2": -1.0}, "l2"),
])
def test_risk_decomposition_rejects_bad_inputs(kwargs: dict, field: str) -> None:
    p = risk_problem()
    args = {"ssl_fit_x": p["ssl_seen"][:90], "fit_y": p["y_seen"][:90], "ssl_heldout_x": p["ssl_seen"][90:],
            "heldout_y": p["y_seen"][90:], "ssl_test_x": p["ssl_test"], "test_y": p["y_test"],
            "supervised_fit_x": p["sup_seen"][:90], "supervised_heldout_x": p["sup_seen"][90:]}
    with pytest.raises(ValueError, match=field):
        risk_decomposition(**{**args, **kwargs}, device="cpu")


def test_split_heldout_rejects_bad_size() -> None:
    with pytest.raises(ReadoutInputError, match="heldout_size"):
        split_heldout(np.arange(10) % 2, heldout_size=10)


# ----------------------------------------------------------------------------- GPU
def test_auto_device_follows_cuda_availability() -> None:
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.gpu
def test_cuda_probe_agrees_with_cpu() -> None:
    """CUDA (float32 products) vs CPU: a point near a boundary may flip, the L2 choice must not."""
    rng = np.random.default_rng(12)
    train, val = shortcut_data(rng, 100, "train"), shortcut_data(rng, 500, "noise")
    test = shortcut_data(rng, 500, "noise")
    cpu = linear_probe(*train, *val, *test, l2_grid=[1e-6, 1e-3, 10.0], device="cpu")
    gpu = linear_probe(*train, *val, *test, l2_grid=[1e-6, 1e-3, 10.0], device="cuda")
    assert gpu.best_l2 == cpu.best_l2 == 10.0
    for l2, accuracy in cpu.val_accuracy_by_l2.items():
        assert math.isclose(gpu.val_accuracy_by_l2[l2], accuracy, abs_tol=2 / 500)
    assert math.isclose(gpu.test_accuracy, cpu.test_accuracy, abs_tol=2 / 500)
    (xtr, ytr), (xte, yte) = blobs(rng, 120), blobs(rng, 60)
    assert knn_probe(xtr, ytr, xte, yte, device="cuda") == knn_probe(xtr, ytr, xte, yte, device="cpu") == 1.0

"""SSL losses against independent numpy/loop references, known answers, symmetry, and 20-step descent."""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch

from sweep.ssl import losses

torch.set_num_threads(1)


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ----------------------------------------------------------------------------- references (loops / numpy)
def ref_nt_xent(z1: np.ndarray, z2: np.ndarray, t: float) -> float:
    z = np.concatenate([z1, z2])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        partner = (i + n2 // 2) % n2
        denom = sum(math.exp(float(z[i] @ z[j]) / t) for j in range(n2) if j != i)
        total += -math.log(math.exp(float(z[i] @ z[partner]) / t) / denom)
    return total / n2


def ref_barlow(z1: np.ndarray, z2: np.ndarray, lambd: float, eps: float = 1e-5) -> float:
    a = (z1 - z1.mean(0)) / np.sqrt(z1.var(0) + eps)
    b = (z2 - z2.mean(0)) / np.sqrt(z2.var(0) + eps)
    n, d = a.shape
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(a[k, i] * b[k, j] for k in range(n)) / n
            loss += (1 - c) ** 2 if i == j else lambd * c**2
    return loss


def ref_vicreg(z1: np.ndarray, z2: np.ndarray, s: float, v: float, c: float, eps: float = 1e-4) -> float:
    inv = float(np.mean((z1 - z2) ** 2))
    var = sum(float(np.mean(np.maximum(0, 1 - np.sqrt(z.var(0, ddof=1) + eps)))) for z in (z1, z2)) / 2
    cov = 0.0
    for z in (z1, z2):
        m = np.cov(z, rowvar=False)
        cov += (float((m**2).sum()) - float((np.diag(m) ** 2).sum())) / z.shape[1]
    return s * inv + v * var + c * cov


def ref_negative_cosine(p: np.ndarray, z: np.ndarray) -> float:
    return -float(np.mean([a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) for a, b in zip(p, z)]))


def ref_moco(q: np.ndarray, k: np.ndarray, queue: np.ndarray, t: float) -> float:
    total = 0.0
    for qi, ki in zip(q, k):
        qi, ki = qi / np.linalg.norm(qi), ki / np.linalg.norm(ki)
        logits = np.array([qi @ ki] + [qi @ kq for kq in queue]) / t
        total += -(logits[0] - np.log(np.exp(logits).sum()))
    return total / len(q)


# ----------------------------------------------------------------------------- agreement with the references
def test_nt_xent_matches_loop_reference() -> None:
    z1, z2 = _rand(6, 5, seed=1), _rand(6, 5, seed=2)
    expected = ref_nt_xent(z1.numpy(), z2.numpy(), 0.3)
    assert losses.nt_xent(z1, z2, 0.3).item() == pytest.approx(expected, rel=1e-10)


def test_barlow_matches_loop_reference() -> None:
    z1, z2 = _rand(7, 4, seed=3), _rand(7, 4, seed=4)
    got = losses.barlow_twins_loss(z1, z2, lambd=0.05, scale_loss=2.0).item()
    assert got == pytest.approx(2.0 * ref_barlow(z1.numpy(), z2.numpy(), 0.05), rel=1e-10)


def test_vicreg_matches_numpy_reference() -> None:
    z1, z2 = 0.3 * _rand(9, 5, seed=5), 0.3 * _rand(9, 5, seed=6)  # std < 1 so the variance hinge is active
    got = losses.vicreg_loss(z1, z2, 25.0, 15.0, 2.0).item()
    assert got == pytest.approx(ref_vicreg(z1.numpy(), z2.numpy(), 25.0, 15.0, 2.0), rel=1e-10)


def test_negative_cosine_matches_loop_reference() -> None:
    p, z = _rand(5, 3, seed=7), _rand(5, 3, seed=8)
    expected = ref_negative_cosine(p.numpy(), z.numpy())
    assert losses.negative_cosine(p, z).item() == pytest.approx(expected, rel=1e-12)


def test_moco_matches_loop_reference() -> None:
    q, k = _rand(4, 6, seed=9), _rand(4, 6, seed=10)
    queue = torch.nn.functional.normalize(_rand(11, 6, seed=11), dim=1)
    got = losses.moco_infonce(q, k, queue, 0.1).item()
    assert got == pytest.approx(ref_moco(q.numpy(), k.numpy(), queue.numpy(), 0.1), rel=1e-10)


# ----------------------------------------------------------------------------- exact known answers
def test_nt_xent_known_answer_for_orthogonal_pairs() -> None:
    # two samples, each view identical to its partner, samples orthogonal: the positive has cos 1, the
    # two negatives cos 0, so every anchor gives -log(e^{1/T} / (e^{1/T} + 2)).
    z = torch.eye(2, dtype=torch.float64)
    t = 0.5
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2))
    assert losses.nt_xent(z, z.clone(), t).item() == pytest.approx(expected, rel=1e-12)


def _decorrelated(scale: float) -> torch.Tensor:
    return scale * torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)


def test_barlow_is_zero_for_identical_decorrelated_views() -> None:
    z = _decorrelated(3.0)  # cross-correlation is exactly the identity (up to the BN eps)
    assert losses.barlow_twins_loss(z, z.clone(), lambd=1.0).item() == pytest.approx(0.0, abs=1e-9)


def test_barlow_counts_the_diagonal_for_anticorrelated_views() -> None:
    z = _decorrelated(1.0)  # C = -I: each diagonal term is (1 - (-1))^2 = 4, D = 2
    assert losses.barlow_twins_loss(z, -z, lambd=1.0).item() == pytest.approx(8.0, rel=1e-5)


def test_vicreg_is_zero_for_identical_spread_decorrelated_views() -> None:
    z = _decorrelated(2.0)  # std > 1 per dimension, zero covariance, zero distance
    assert losses.vicreg_loss(z, z.clone()).item() == 0.0


def test_vicreg_collapsed_views_pay_the_full_variance_hinge() -> None:
    z = torch.zeros(8, 4, dtype=torch.float64)  # every std is 0: hinge = 1 - sqrt(eps) per dim, per view
    assert losses.vicreg_loss(z, z, 25.0, 25.0, 1.0).item() == pytest.approx(25.0 * (1 - math.sqrt(1e-4)))


def test_negative_cosine_bounds() -> None:
    p = _rand(4, 3)
    assert losses.negative_cosine(p, 2 * p).item() == pytest.approx(-1.0)
    assert losses.negative_cosine(p, -p).item() == pytest.approx(1.0)


def test_moco_with_key_equal_to_query_and_orthogonal_queue() -> None:
    q = torch.eye(3, dtype=torch.float64)[:1]  # query e1 = key; queue e2, e3 (cos 0)
    queue = torch.eye(3, dtype=torch.float64)[1:]
    t = 0.2
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2))
    assert losses.moco_infonce(q, q.clone(), queue, t).item() == pytest.approx(expected, rel=1e-12)


# ------------------------------------------------------------------------- symmetry, stop-gradient, errors
@pytest.mark.parametrize("fn", [
    lambda a, b: losses.nt_xent(a, b, 0.2),
    lambda a, b: losses.barlow_twins_loss(a, b, 0.005),
    lambda a, b: losses.vicreg_loss(a, b),
], ids=["nt_xent", "barlow_twins", "vicreg"])
def test_symmetric_losses(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    a, b = _rand(10, 6, seed=12), _rand(10, 6, seed=13)
    assert fn(a, b).item() == pytest.approx(fn(b, a).item(), rel=1e-12)


def test_stop_gradient_on_targets() -> None:
    p, z = _rand(4, 3).requires_grad_(), _rand(4, 3, seed=1).requires_grad_()
    losses.negative_cosine(p, z).backward()
    assert p.grad is not None and z.grad is None
    q, k = _rand(4, 3, seed=2).requires_grad_(), _rand(4, 3, seed=3).requires_grad_()
    losses.moco_infonce(q, k, torch.eye(3, dtype=torch.float64), 0.2).backward()
    assert q.grad is not None and k.grad is None


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="temperature"):
        losses.nt_xent(_rand(4, 3), _rand(4, 3), 0.0)
    with pytest.raises(ValueError, match="equal shape"):
        losses.vicreg_loss(_rand(4, 3), _rand(5, 3))
    with pytest.raises(ValueError, match="queue"):
        losses.moco_infonce(_rand(4, 3), _rand(4, 3), _rand(7, 5), 0.2)


# ----------------------------------------------------------------------------- descent (solo-learn style)
def _descend(loss_of: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor,
             steps: int = 20) -> list[float]:
    z = z.clone().float().requires_grad_()
    opt = torch.optim.Adam([z], lr=0.05)
    history = []
    for _ in range(steps):
        loss = loss_of(z)
        history.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return history


@pytest.mark.parametrize("name", ["nt_xent", "barlow_twins", "vicreg", "negative_cosine", "moco"])
def test_loss_decreases_when_optimising_embeddings(name: str) -> None:
    target = _rand(32, 16, seed=20).float()
    queue = torch.nn.functional.normalize(_rand(64, 16, seed=21).float(), dim=1)
    fns: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "nt_xent": lambda z: losses.nt_xent(z, target, 0.2),
        "barlow_twins": lambda z: losses.barlow_twins_loss(z, target, 0.005),
        "vicreg": lambda z: losses.vicreg_loss(z, target),
        "negative_cosine": lambda z: losses.negative_cosine(z, target),
        "moco": lambda z: losses.moco_infonce(z, target, queue, 0.2),
    }
    history = _descend(fns[name], _rand(32, 16, seed=22))
    assert all(b < a for a, b in itertools.pairwise(history)), history
    assert history[-1] < history[0] - 0.3 * abs(history[0]), history

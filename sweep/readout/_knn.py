"""k-nearest-neighbour probe on cosine similarity, batched over the query rows.

A kNN readout needs no optimisation and no hyperparameter search, so it is a cheap second opinion next to
the linear probe. Vote rules:

* ``temperature=None`` (the default, ``ReadoutConfig.knn_temperature``): majority vote of the k most
  cosine-similar training points; a tie between classes goes to the smallest class index.
* ``temperature=T > 0``: the weighted vote of Wu et al. (2018), as used in DINO's kNN eval (T = 0.07 there):
  class score = sum over the k neighbours of that class of ``exp(cos / T)``.

Memory: the similarity matrix is built ``chunk_size`` query rows at a time, so at most
``chunk_size x N_train`` similarities exist at once, never ``N_test x N_train``; votes are tallied over the
classes present in train (label ids are arbitrary non-negative integers, remapped to 0..C-1), so a label id of
10**9 costs nothing.

Scale: cosine similarity ignores the norm of each row, so every row is first divided by the power of two
nearest above its largest |value| (exact, in the input's precision) and only then converted to float32 and
normalised: features of size 1e19 (whose float32 norm would overflow) or float64 features of size 1e39
(beyond float32's range) give the same neighbours as unit-scale ones.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from sweep.config.schema import ReadoutConfig
from sweep.readout._inputs import (
    ArrayLike,
    ReadoutInputError,
    encode_labels,
    labels_tensor,
    pow2_exponents,
    pow2_scale,
    require_positive_int,
    require_same_dim,
    require_two_classes,
    resolve_device,
    source_tensor,
)
from sweep.readout._threads import limit_threads, readout_threads

_DEFAULTS = ReadoutConfig()


def _check_temperature(temperature: Optional[float]) -> None:
    if temperature is None:
        return
    ok = not isinstance(temperature, bool) and isinstance(temperature, (int, float))
    if not ok or not math.isfinite(temperature) or temperature <= 0:
        raise ReadoutInputError("temperature must be None (majority vote) or a finite number > 0; "
                                f"got {temperature!r}")


def _vote(sims: torch.Tensor, train_y: torch.Tensor, k: int, n_classes: int, temperature: Optional[float]
          ) -> torch.Tensor:
    """Class predictions for one block of query-vs-train similarities (rows = queries)."""
    top_sims, top_idx = sims.topk(k, dim=1)
    neighbour_labels = train_y[top_idx]
    weights = torch.ones_like(top_sims) if temperature is None else torch.exp(top_sims / temperature)
    scores = torch.zeros(sims.shape[0], n_classes, dtype=sims.dtype, device=sims.device)
    scores.scatter_add_(1, neighbour_labels, weights)
    return scores.argmax(dim=1)  # first maximum: ties go to the smallest class index


def knn_predict(
    train_x: ArrayLike,
    train_y: ArrayLike,
    query_x: ArrayLike,
    k: int = _DEFAULTS.knn_k,
    temperature: Optional[float] = _DEFAULTS.knn_temperature,
    chunk_size: int = _DEFAULTS.knn_chunk_size,
    device: str = _DEFAULTS.device,
    threads: Optional[int] = None,
) -> np.ndarray:
    """Predicted label id (int64, shape (N_query,)) of each query row; ``threads``: see
    :mod:`sweep.readout._threads` (None: automatic)."""
    dev = resolve_device(device)
    ztr = source_tensor(train_x, "train_x", dev)
    ytr = labels_tensor(train_y, "train_y", ztr.shape[0], dev)
    zq = source_tensor(query_x, "test_x", dev)
    require_same_dim({"train_x": ztr, "test_x": zq})
    require_two_classes(ytr, "train split (train_y)")
    require_positive_int(k, "k")
    if k > ztr.shape[0]:
        raise ReadoutInputError(f"k={k} exceeds the number of training points ({ztr.shape[0]}); "
                                "use 1 <= k <= N_train")
    require_positive_int(chunk_size, "chunk_size")
    _check_temperature(temperature)
    classes = torch.unique(ytr)
    n_threads = readout_threads(float(ztr.shape[0]) * zq.shape[0] * ztr.shape[1], threads)
    with limit_threads(n_threads):
        preds = _predict(_unit_rows(ztr), encode_labels(classes, ytr), _unit_rows(zq), k, temperature,
                         chunk_size, classes.numel())
    return classes[torch.from_numpy(preds).to(classes.device)].cpu().numpy()


def _unit_rows(t: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm in float32, exactly rescaled by powers of two first (see module doc)."""
    return F.normalize(pow2_scale(t, pow2_exponents(t, 1), 1, torch.float32), dim=1)


def _predict(train_unit: torch.Tensor, train_y: torch.Tensor, query_unit: torch.Tensor, k: int,
             temperature: Optional[float], chunk_size: int, n_classes: Optional[int] = None) -> np.ndarray:
    """Column indices (0..n_classes-1 of ``train_y``'s encoding) predicted for each query row."""
    n_classes = int(train_y.max()) + 1 if n_classes is None else n_classes
    preds = [
        _vote(query_unit[start:start + chunk_size] @ train_unit.T, train_y, k, n_classes, temperature)
        for start in range(0, query_unit.shape[0], chunk_size)
    ]
    return torch.cat(preds).cpu().numpy()


def knn_probe(
    train_x: ArrayLike,
    train_y: ArrayLike,
    test_x: ArrayLike,
    test_y: ArrayLike,
    k: int = _DEFAULTS.knn_k,
    temperature: Optional[float] = _DEFAULTS.knn_temperature,
    chunk_size: int = _DEFAULTS.knn_chunk_size,
    device: str = _DEFAULTS.device,
    threads: Optional[int] = None,
) -> float:
    """Test accuracy of the cosine kNN classifier built on (train_x, train_y) (label ids: any non-negative
    integers; test rows of classes absent from train count as errors)."""
    if not isinstance(test_x, (np.ndarray, torch.Tensor)) or test_x.ndim != 2:
        source_tensor(test_x, "test_x", torch.device("cpu"))  # raises, naming test_x
    labels = labels_tensor(test_y, "test_y", int(test_x.shape[0]), torch.device("cpu"))
    require_two_classes(labels, "test split (test_y)")
    preds = knn_predict(train_x, train_y, test_x, k, temperature, chunk_size, device, threads)
    return float((preds == labels.numpy()).mean())

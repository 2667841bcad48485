"""Small metrics tables in the shape of benchmarks/data/testbed.parquet, for the selection tests.

One row per trial: trial, method, config_id, seed, repeat, state, failure_reason, the hyperparameters, the
final label-free metrics, the readouts (fractions) and the cost columns; ``repeat > 0`` rows are extra seeds
of the same config_id with their own trial id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np
import pandas as pd

METHODS = ("simclr", "barlow_twins", "vicreg")
HYPERPARAMETERS = ("lr", "weight_decay", "out_dim", "temperature", "lambd", "var_weight", "cov_weight")
METRICS = ("rankme", "rankme_normalized", "alpha", "alpha_r2", "stable_rank", "participation_ratio", "nesum",
           "rankme_backbone", "alpha_projector", "silhouette", "ami_checkpoint", "entropy", "loss")
READOUTS = ("val_accuracy", "test_accuracy", "knn_accuracy", "fewshot_val_accuracy", "fewshot_test_accuracy",
            "val_accuracy_e2", "test_accuracy_e2", "val_accuracy_e4", "test_accuracy_e4")


def make_testbed(
    n_configs: int = 8,
    methods: Sequence[str] = METHODS,
    repeats: int = 1,
    seed: int = 0,
    exact: bool = True,
    failed: Sequence[int] = (),
    alphas: Optional[Sequence[float]] = None,
) -> pd.DataFrame:
    """``n_configs`` configs per method (plus ``repeats - 1`` extra seeds each). ``exact``: val = test =
    a strictly increasing function of RankMe (so RankMe ranks accuracy perfectly); otherwise RankMe is drawn
    independently of accuracy. ``failed``: trial ids (of the first pass) that end in state FAIL, NaN metrics
    and readouts. ``alphas``: alpha per config (cycled), default in [0.5, 2.0]."""
    rng = np.random.default_rng(seed)
    rows = []
    trial = 0
    for m, method in enumerate(methods):
        for config in range(n_configs):
            rankme = float(rng.uniform(5.0, 120.0))
            accuracy = 0.5 + rankme / 400.0 if exact else float(rng.uniform(0.5, 0.8))
            alpha = float(alphas[config % len(alphas)]) if alphas is not None else float(rng.uniform(0.5, 2.0))
            for repeat in range(repeats):
                rows.append(_row(trial, method, config, repeat, rankme, alpha, accuracy, trial in failed, rng))
                trial += 1
    return pd.DataFrame(rows)


def _row(trial: int, method: str, config: int, repeat: int, rankme: float, alpha: float, accuracy: float,
         fail: bool, rng: np.random.Generator) -> dict[str, object]:
    nan = float("nan")
    row: dict[str, object] = {
        "trial": trial, "method": method, "config_id": config, "seed": repeat, "repeat": repeat,
        "state": "FAIL" if fail else "COMPLETE", "failure_reason": "loss is NaN" if fail else None,
        "lr": 10 ** rng.uniform(-4, -2), "weight_decay": 1e-5, "out_dim": 128,
        "temperature": 0.5 if method == "simclr" else nan, "lambd": 0.005 if method == "barlow_twins" else nan,
        "var_weight": 25.0 if method == "vicreg" else nan, "cov_weight": 1.0 if method == "vicreg" else nan,
    }
    row.update({name: float(rng.uniform(0.0, 1.0)) for name in METRICS})
    row.update(rankme=rankme, rankme_normalized=rankme / 128.0, alpha=alpha)
    row.update({name: float(np.clip(accuracy + rng.normal(0.0, 0.02), 0.0, 1.0)) for name in READOUTS})
    row.update(val_accuracy=accuracy, test_accuracy=accuracy)
    if fail:
        row.update({name: nan for name in (*METRICS, *READOUTS)})
    row.update(epochs=20, train_s=float(rng.uniform(10, 20)), total_s=float(rng.uniform(20, 30)))
    return row

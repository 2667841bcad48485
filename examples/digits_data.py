"""The embedded 8x8 digits (scikit-learn's ``load_digits``, no download) split the way an SSL run needs them:
an unlabelled training set, a held-out unlabelled set for the label-free metrics, and labelled train / val /
test sets that only the readouts use. Shared by both examples."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits

SPLIT_SIZES = {"monitor": 300, "val": 200, "test": 300}  # the rest of the 1797 images train (SSL and probe)


def digits_splits(seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{"ssl" | "monitor" | "train" | "val" | "test": (images (N, 64) in [0, 1], labels (N,))}; "ssl" and the
    probe's "train" are the same images (labels unused by training), "monitor" is never trained on."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    x = torch.tensor(x[order] / 16.0, dtype=torch.float32)
    y = torch.tensor(y[order], dtype=torch.int64)
    out, start = {}, 0
    for name, size in SPLIT_SIZES.items():
        out[name] = (x[start : start + size], y[start : start + size])
        start += size
    out["train"] = out["ssl"] = (x[start:], y[start:])
    return out


def augment(x: torch.Tensor, noise: float, generator: torch.Generator) -> torch.Tensor:
    """One random view: pixel dropout (20%) and Gaussian noise of std ``noise``."""
    keep = torch.rand(x.shape, generator=generator) > 0.2
    return x * keep + noise * torch.randn(x.shape, generator=generator)

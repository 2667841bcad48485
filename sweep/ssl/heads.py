"""Projector and predictor MLPs (Linear -> [BN] -> ReLU per hidden layer, then a plain Linear)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn


def mlp(in_dim: int, hidden_dims: Sequence[int], out_dim: int, batchnorm: bool = True) -> nn.Sequential:
    """Hidden layers with BN+ReLU and a linear output: the head shape shared by all six methods."""
    if in_dim < 1 or out_dim < 1 or any(int(h) < 1 for h in hidden_dims):
        raise ValueError(f"mlp: dims must be >= 1, got in_dim={in_dim}, hidden_dims={list(hidden_dims)}, "
                         f"out_dim={out_dim}")
    layers: list[nn.Module] = []
    prev = in_dim
    for h in hidden_dims:
        layers.append(nn.Linear(prev, int(h), bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm1d(int(h)))
        layers.append(nn.ReLU(inplace=True))
        prev = int(h)
    layers.append(nn.Linear(prev, out_dim))
    return nn.Sequential(*layers)


def build_projector(cfg: Any, in_dim: int) -> nn.Sequential:
    """Projector from a ProjectorConfig (or any object / DictConfig with hidden_dims, out_dim, batchnorm)."""
    return mlp(in_dim, list(cfg.hidden_dims), int(cfg.out_dim), bool(getattr(cfg, "batchnorm", True)))


def build_predictor(dim: int, hidden_dim: int) -> nn.Sequential:
    """SimSiam / BYOL predictor: dim -> hidden_dim (BN, ReLU) -> dim."""
    if hidden_dim < 1:
        raise ValueError(f"predictor_hidden_dim must be >= 1, got {hidden_dim}")
    return mlp(dim, [hidden_dim], dim, batchnorm=True)

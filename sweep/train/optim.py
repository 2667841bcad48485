"""Optimisers (Adam, AdamW, SGD, LARS) and the per-step warmup + cosine learning-rate schedule."""
from __future__ import annotations

import math
from typing import Callable, Iterable, Optional

import torch
from torch import nn

from sweep.config.schema import OptimConfig
from sweep.registry import Registry

OptimizerBuilder = Callable[[list[torch.Tensor], OptimConfig], torch.optim.Optimizer]
# name (``optim.name``) -> builder(trainable params, cfg); a new optimiser is ``@OPTIMIZERS.register("name")``
OPTIMIZERS: Registry[OptimizerBuilder] = Registry("optimizer", field="optim.name")


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise trust ratios (You et al. 2017), as used by SimCLR/BYOL/Barlow Twins.

    Matrices and conv kernels (ndim > 1) get weight decay and the trust ratio eta * ||w|| / ||g + wd w||;
    biases and norm parameters (ndim <= 1) get neither, the usual exclusion in SSL recipes.
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float, momentum: float = 0.9,
                 weight_decay: float = 0.0, trust_coefficient: float = 0.001) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      trust_coefficient=trust_coefficient))

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group)
        return loss

    def _update(self, p: torch.Tensor, group: dict) -> None:
        g = p.grad
        if p.ndim > 1:
            g = g.add(p, alpha=group["weight_decay"])
            w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
            trust = torch.where((w_norm > 0) & (g_norm > 0), group["trust_coefficient"] * w_norm / g_norm,
                                torch.ones_like(w_norm))
            g = g.mul(trust)
        state = self.state[p]
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = torch.clone(g).detach()
        else:
            buf.mul_(group["momentum"]).add_(g)
        p.add_(buf, alpha=-group["lr"])


@OPTIMIZERS.register("adam")
def _adam(params: list[torch.Tensor], cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("adamw")
def _adamw(params: list[torch.Tensor], cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("sgd")
def _sgd(params: list[torch.Tensor], cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("lars")
def _lars(params: list[torch.Tensor], cfg: OptimConfig) -> torch.optim.Optimizer:
    return LARS(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                trust_coefficient=cfg.trust_coefficient)


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """The optimiser named by ``cfg.name`` over the trainable parameters (EMA targets excluded)."""
    return OPTIMIZERS.get(cfg.name)([p for p in model.parameters() if p.requires_grad], cfg)


def lr_factor(step: int, total_steps: int, warmup_steps: int, scheduler: str) -> float:
    """Base-lr multiplier at optimiser step ``step`` (0-based): linear warmup, then cosine to 0 or flat."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if scheduler == "constant":
        return 1.0
    if scheduler != "cosine":
        raise ValueError(f"optim.scheduler={scheduler!r}: allowed one of ['constant', 'cosine']")
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    return 0.5 * (1.0 + math.cos(math.pi * t))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, steps_per_epoch: int,
                    epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step LambdaLR; its state (the step count) goes into the checkpoint."""
    total, warmup = steps_per_epoch * epochs, steps_per_epoch * cfg.warmup_epochs
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup, cfg.scheduler))

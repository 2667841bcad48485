"""The six SSL methods behind one small contract: loss(view1, view2), after_step(progress), features, embed.

Target networks (MoCo key encoder, BYOL target) are deep copies without gradients and live in the
module's state_dict, as does the MoCo queue, so a checkpoint resumes the exact training state.
Each method is registered in ``METHODS`` by its ``method.name`` and built from its config group by
``from_config``; a new method is a subclass plus ``@METHODS.register`` (docs/ARCHITECTURE.md, "Registries").
"""
from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sweep.registry import Registry
from sweep.ssl import losses
from sweep.ssl._gather import global_batch
from sweep.ssl.heads import build_predictor, build_projector


class SSLMethod(nn.Module):
    """Backbone + projector; subclasses define the loss and any per-step target update."""

    def __init__(self, backbone: nn.Module, projector: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = projector

    def features(self, x: Tensor) -> Tensor:
        """Backbone output: what alpha-ReQ and the linear readout see."""
        return self.backbone(x)

    def embed(self, x: Tensor) -> Tensor:
        """Projector output (never the predictor): what RankMe sees."""
        return self.projector(self.backbone(x))

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        raise NotImplementedError

    def after_step(self, progress: float) -> None:
        """Called after each optimiser step with progress in [0, 1]; only methods with targets override it."""

    @classmethod
    def from_config(cls, cfg: Any, backbone: nn.Module, projector: nn.Module) -> "SSLMethod":
        """The method from its config group (``cfg.<hyperparameter>``; ``cfg.projector.out_dim`` is the
        projector's output width); each registered method implements it."""
        raise NotImplementedError(f"{cls.__name__}.from_config")


# name (``method.name``) -> SSLMethod subclass; a new method is ``@METHODS.register("name")`` on its class
METHODS: Registry[type[SSLMethod]] = Registry("method", field="method.name")


@METHODS.register("simclr")
class SimCLR(SSLMethod):
    def __init__(self, backbone: nn.Module, projector: nn.Module, temperature: float) -> None:
        super().__init__(backbone, projector)
        self.temperature = temperature

    @classmethod
    def from_config(cls, cfg: Any, backbone: nn.Module, projector: nn.Module) -> "SimCLR":
        return cls(backbone, projector, float(cfg.temperature))

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        return losses.nt_xent(global_batch(self.embed(view1)), global_batch(self.embed(view2)), self.temperature)


@METHODS.register("barlow_twins")
class BarlowTwins(SSLMethod):
    def __init__(self, backbone: nn.Module, projector: nn.Module, lambd: float, scale_loss: float) -> None:
        super().__init__(backbone, projector)
        self.lambd, self.scale_loss = lambd, scale_loss

    @classmethod
    def from_config(cls, cfg: Any, backbone: nn.Module, projector: nn.Module) -> "BarlowTwins":
        return cls(backbone, projector, float(cfg.lambd), float(cfg.scale_loss))

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        z1, z2 = global_batch(self.embed(view1)), global_batch(self.embed(view2))
        return losses.barlow_twins_loss(z1, z2, self.lambd, self.scale_loss)


@METHODS.register("vicreg")
class VICReg(SSLMethod):
    def __init__(self, backbone: nn.Module, projector: nn.Module, sim_weight: float, var_weight: float,
                 cov_weight: float) -> None:
        super().__init__(backbone, projector)
        self.weights = (sim_weight, var_weight, cov_weight)

    @classmethod
    def from_config(cls, cfg: Any, backbone: nn.Module, projector: nn.Module) -> "VICReg":
        return cls(backbone, projector, float(cfg.sim_weight), float(cfg.var_weight), float(cfg.cov_weight))

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        return losses.vicreg_loss(global_batch(self.embed(view1)), global_batch(self.embed(view2)), *self.weights)


@METHODS.register("simsiam")
class SimSiam(SSLMethod):
    """Predictor on one branch, stop-gradient on the other; the paper's 1/2 (D(p1, z2) + D(p2, z1))."""

    def __init__(self, backbone: nn.Module, projector: nn.Module, predictor: nn.Module) -> None:
        super().__init__(backbone, projector)
        self.predictor = predictor

    @classmethod
    def from_config(cls, cfg: Any, backbone: nn.Module, projector: nn.Module) -> "SimSiam":
        return cls(backbone, projector, build_predictor(int(cfg.projector.out_dim), int(cfg.predictor_hidden_dim)))

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        z1, z2 = self.embed(view1), self.embed(view2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        return 0.5 * (losses.negative_cosine(p1, z2) + losses.negative_cosine(p2, z1))


def _frozen_copy(module: nn.Module) -> nn.Module:
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * online, parameters only (as MoCo / BYOL do).

    The target's BatchNorm statistics come from its own forward passes.
    """
    for t, o in zip(target.parameters(), online.parameters()):
        t.mul_(momentum).add_(o.detach(), alpha=1 - momentum)


def cosine_momentum(base: float, progress: float) -> float:
    """BYOL's schedule: tau = 1 - (1 - base) (cos(pi * progress) + 1) / 2, from ``base`` at 0 to 1."""
    progress = min(max(progress, 0.0), 1.0)
    return 1 - (1 - base) * (math.cos(math.pi * progress) + 1) / 2


@METHODS.register("mocov2")
class MoCoV2(SSLMethod):
    """Momentum key encoder + FIFO queue of normalised keys; loss as in the paper (query view1, key view2).

    ``loss`` remembers the batch's keys; ``after_step`` enqueues them and moves the key encoder, so a loss
    computed without a following step (e.g. monitoring) never touches the queue.
    """

    queue: Tensor
    queue_ptr: Tensor

    def __init__(self, backbone: nn.Module, projector: nn.Module, temperature: float, queue_size: int,
                 momentum: float, dim: int) -> None:
        super().__init__(backbone, projector)
        if queue_size < 1:
            raise ValueError(f"method.queue_size must be >= 1, got {queue_size}")
        self.temperature, self.momentum = temperature, momentum
        self.key_backbone = _frozen_copy(backbone)
        self.key_projector = _frozen_copy(projector)
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self._pending: Tensor | None = None

    @classmethod
    def from_config(cls, cfg: Any, backbone: nn.Module, projector: nn.Module) -> "MoCoV2":
        return cls(backbone, projector, float(cfg.temperature), int(cfg.queue_size), float(cfg.momentum),
                   int(cfg.projector.out_dim))

    @torch.no_grad()
    def keys(self, x: Tensor) -> Tensor:
        return F.normalize(self.key_projector(self.key_backbone(x)), dim=1)

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        k = self.keys(view2)
        self._pending = k
        return losses.moco_infonce(self.embed(view1), k, self.queue, self.temperature)

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Overwrite the oldest entries (wraps); a batch larger than the queue keeps its last keys."""
        size = self.queue.shape[0]
        keys = keys[-size:]
        idx = (self.queue_ptr + torch.arange(keys.shape[0], device=keys.device)) % size
        self.queue[idx] = keys.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + keys.shape[0]) % size)

    def after_step(self, progress: float) -> None:
        if self._pending is not None:
            self.enqueue(self._pending)
            self._pending = None
        ema_update(self.key_backbone, self.backbone, self.momentum)
        ema_update(self.key_projector, self.projector, self.momentum)


@METHODS.register("byol")
class BYOL(SSLMethod):
    """Online predictor regresses the EMA target's projection; sum of the two 2 - 2 cos terms (paper)."""

    def __init__(self, backbone: nn.Module, projector: nn.Module, predictor: nn.Module,
                 base_momentum: float) -> None:
        super().__init__(backbone, projector)
        self.predictor = predictor
        self.base_momentum = base_momentum
        self.target_backbone = _frozen_copy(backbone)
        self.target_projector = _frozen_copy(projector)

    @classmethod
    def from_config(cls, cfg: Any, backbone: nn.Module, projector: nn.Module) -> "BYOL":
        return cls(backbone, projector, build_predictor(int(cfg.projector.out_dim), int(cfg.predictor_hidden_dim)),
                   float(cfg.momentum))

    @torch.no_grad()
    def targets(self, x: Tensor) -> Tensor:
        return self.target_projector(self.target_backbone(x))

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        p1, p2 = self.predictor(self.embed(view1)), self.predictor(self.embed(view2))
        t1, t2 = self.targets(view1), self.targets(view2)
        return (2 + 2 * losses.negative_cosine(p1, t2)) + (2 + 2 * losses.negative_cosine(p2, t1))

    def after_step(self, progress: float) -> None:
        tau = cosine_momentum(self.base_momentum, progress)
        ema_update(self.target_backbone, self.backbone, tau)
        ema_update(self.target_projector, self.projector, tau)


def build_method(method_cfg: Any, backbone: nn.Module, feat_dim: int) -> SSLMethod:
    """Method named by ``method_cfg.name`` (see ``METHODS``); reads attributes only, so dataclasses and
    DictConfigs work."""
    method = METHODS.get(method_cfg.name)
    return method.from_config(method_cfg, backbone, build_projector(method_cfg.projector, feat_dim))

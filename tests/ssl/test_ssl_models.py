"""Backbones, heads and the six SSL methods: shapes, known parameter counts, targets, queue, dispatch."""
from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from sweep.config.schema import (
    METHOD_SCHEMAS,
    BackboneConfig,
    BYOLConfig,
    MoCoV2Config,
    ProjectorConfig,
    SimSiamConfig,
)
from sweep.ssl import (
    BYOL,
    MoCoV2,
    SSLMethod,
    build_backbone,
    build_method,
    build_predictor,
    build_projector,
    cosine_momentum,
)

torch.set_num_threads(1)
SMALL_PROJ = ProjectorConfig(hidden_dims=[32], out_dim=16)
CLASS_NAMES = {"simclr": "SimCLR", "barlow_twins": "BarlowTwins", "vicreg": "VICReg", "simsiam": "SimSiam",
               "mocov2": "MoCoV2", "byol": "BYOL"}


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _small_method(name: str, **kw: Any) -> SSLMethod:
    torch.manual_seed(0)
    backbone, feat_dim = build_backbone(BackboneConfig(name="small_cnn", width=4), (1, 8, 8))
    cfg = METHOD_SCHEMAS[name](projector=SMALL_PROJ, **kw)
    return build_method(cfg, backbone, feat_dim)


# ----------------------------------------------------------------------------- backbones
@pytest.mark.parametrize("name,shape,feat", [
    ("mlp", (1, 8, 8), 64), ("small_cnn", (1, 8, 8), 32), ("small_cnn", (3, 32, 32), 32),
    ("resnet18", (3, 32, 32), 512), ("resnet18", (1, 8, 8), 512),
])
def test_backbone_output_shape(name: str, shape: tuple[int, int, int], feat: int) -> None:
    net, feat_dim = build_backbone(BackboneConfig(name=name, width=8, hidden_dims=[32, 64]), shape)
    assert feat_dim == feat
    assert net(torch.rand(3, *shape)).shape == (3, feat)


def test_resnet_parameter_counts_match_torchvision_without_fc() -> None:
    # torchvision: resnet18 11,689,512 and resnet50 25,557,032 params including the 1000-way fc
    # (513,000 and 2,049,000). The CIFAR stem swaps the 7x7x3x64 conv (9,408) for 3x3x3x64 (1,728).
    r18, _ = build_backbone(BackboneConfig(name="resnet18", cifar_stem=False), (3, 224, 224))
    r18c, _ = build_backbone(BackboneConfig(name="resnet18", cifar_stem=True), (3, 32, 32))
    r50, d50 = build_backbone(BackboneConfig(name="resnet50", cifar_stem=False), (3, 224, 224))
    assert _n_params(r18) == 11_689_512 - 513_000
    assert _n_params(r18c) == 11_689_512 - 513_000 - 9_408 + 1_728
    assert _n_params(r50) == 25_557_032 - 2_049_000 and d50 == 2048


def test_cifar_stem_keeps_resolution_standard_stem_divides_by_four() -> None:
    x = torch.rand(2, 3, 32, 32)
    cifar, _ = build_backbone(BackboneConfig(name="resnet18", cifar_stem=True), (3, 32, 32))
    standard, _ = build_backbone(BackboneConfig(name="resnet18", cifar_stem=False), (3, 32, 32))
    assert cifar.stem(x).shape[-2:] == (32, 32)  # type: ignore[operator]
    assert standard.stem(x).shape[-2:] == (8, 8)  # type: ignore[operator]
    assert not any(isinstance(m, nn.MaxPool2d) for m in cifar.modules())


def test_unknown_backbone_lists_allowed_names() -> None:
    with pytest.raises(ValueError, match=r"backbone.name='vit'.*allowed \['mlp', 'small_cnn', 'resnet18', 'resnet50'\]"):
        build_backbone(BackboneConfig(name="vit"), (3, 32, 32))


# ----------------------------------------------------------------------------- heads
def test_projector_layers_and_dims() -> None:
    proj = build_projector(ProjectorConfig(hidden_dims=[32, 24], out_dim=8), 10)
    kinds = [type(m).__name__ for m in proj]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert proj(torch.rand(5, 10)).shape == (5, 8)
    no_bn = build_projector(ProjectorConfig(hidden_dims=[32], out_dim=8, batchnorm=False), 10)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in no_bn)


def test_predictor_is_a_bottleneck_back_to_the_projection_dim() -> None:
    pred = build_predictor(16, 4)
    assert pred[0].out_features == 4 and pred[-1].out_features == 16  # type: ignore[union-attr]


# ----------------------------------------------------------------------------- methods: dispatch and contract
@pytest.mark.parametrize("name", list(METHOD_SCHEMAS))
def test_method_contract(name: str) -> None:
    model = _small_method(name)
    x1, x2 = torch.rand(12, 1, 8, 8), torch.rand(12, 1, 8, 8)
    loss = model.loss(x1, x2)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.backbone.parameters())
    model.after_step(0.5)
    assert model.features(x1).shape == (12, 16) and model.embed(x1).shape == (12, 16)


@pytest.mark.parametrize("name", list(METHOD_SCHEMAS))
def test_build_method_accepts_dictconfig(name: str) -> None:
    cfg = OmegaConf.structured(METHOD_SCHEMAS[name](projector=SMALL_PROJ))
    backbone, feat_dim = build_backbone(BackboneConfig(name="mlp", hidden_dims=[8]), (1, 4, 4))
    model = build_method(cfg, backbone, feat_dim)
    assert type(model).__name__ == CLASS_NAMES[name]


def test_unknown_method_lists_allowed_names() -> None:
    backbone, feat_dim = build_backbone(BackboneConfig(name="mlp"), (1, 8, 8))
    allowed = r"\['simclr', 'barlow_twins', 'vicreg', 'simsiam', 'mocov2', 'byol'\]"
    with pytest.raises(ValueError, match=f"method.name.*dino.*{allowed}"):
        build_method(OmegaConf.create({"name": "dino", "projector": {"hidden_dims": [8], "out_dim": 4}}),
                     backbone, feat_dim)


@pytest.mark.parametrize("name", ["simsiam", "byol"])
def test_embed_is_the_projector_output_not_the_predictor(name: str) -> None:
    model = _small_method(name).eval()
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(model.embed(x), model.projector(model.backbone(x)))
    assert not torch.equal(model.embed(x), model.predictor(model.embed(x)))  # type: ignore[operator]


@pytest.mark.parametrize("name", list(METHOD_SCHEMAS))
def test_training_lowers_the_loss(name: str) -> None:
    """20 Adam steps on fresh batches of two noisy views of a fixed pool of 64 random images.

    The pool is larger than a batch so that MoCo's queue holds keys of other images (true negatives).
    """
    model = _small_method(name, **({"queue_size": 32} if name == "mocov2" else {}))
    gen = torch.Generator().manual_seed(1)
    pool = torch.rand(64, 1, 8, 8, generator=gen)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    history = []
    for step in range(20):
        x = pool[torch.randperm(64, generator=gen)[:16]]
        x1, x2 = ((x + 0.1 * torch.randn(x.shape, generator=gen)).clamp(0, 1) for _ in range(2))
        loss = model.loss(x1, x2)
        history.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.after_step(step / 20)
    assert sum(history[-5:]) / 5 < sum(history[:5]) / 5, history


# ----------------------------------------------------------------------------- targets: MoCo, BYOL
@pytest.mark.parametrize("name", ["mocov2", "byol"])
def test_target_networks_are_frozen_deep_copies(name: str) -> None:
    model = _small_method(name)
    prefix = "key" if isinstance(model, MoCoV2) else "target"
    pairs = (getattr(model, f"{prefix}_backbone"), getattr(model, f"{prefix}_projector"))
    for target, online in zip(pairs, (model.backbone, model.projector)):
        assert target is not online
        for t, o in zip(target.parameters(), online.parameters()):
            assert not t.requires_grad and torch.equal(t, o) and t.data_ptr() != o.data_ptr()


def test_cosine_momentum_schedule() -> None:
    assert cosine_momentum(0.99, 0.0) == pytest.approx(0.99)
    assert cosine_momentum(0.99, 0.5) == pytest.approx(0.995)
    assert cosine_momentum(0.99, 1.0) == pytest.approx(1.0)


def test_byol_ema_follows_the_annealed_momentum() -> None:
    model = _small_method("byol", momentum=0.9)
    assert isinstance(model, BYOL)
    before = [p.clone() for p in model.target_projector.parameters()]
    with torch.no_grad():
        for p in model.projector.parameters():
            p.add_(1.0)
    online = [p.clone() for p in model.projector.parameters()]
    model.after_step(0.5)  # tau = 1 - 0.1 * (cos(pi/2) + 1) / 2 = 0.95
    for t, b, o in zip(model.target_projector.parameters(), before, online):
        torch.testing.assert_close(t, 0.95 * b + 0.05 * o)


def test_moco_key_encoder_uses_constant_momentum() -> None:
    model = _small_method("mocov2", momentum=0.8)
    assert isinstance(model, MoCoV2)
    before = [p.clone() for p in model.key_backbone.parameters()]
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.mul_(2.0)
    online = [p.clone() for p in model.backbone.parameters()]
    model.after_step(0.9)
    for t, b, o in zip(model.key_backbone.parameters(), before, online):
        torch.testing.assert_close(t, 0.8 * b + 0.2 * o)


def test_moco_queue_fifo_wraps_and_is_checkpointed() -> None:
    model = _small_method("mocov2", queue_size=5)
    assert isinstance(model, MoCoV2)
    keys = torch.arange(7 * 16, dtype=torch.float32).view(7, 16)
    model.enqueue(keys[:3])
    assert int(model.queue_ptr) == 3 and torch.equal(model.queue[:3], keys[:3])
    model.enqueue(keys[3:7])  # 4 keys: slots 3, 4, then wrap to 0, 1
    assert int(model.queue_ptr) == 2
    assert torch.equal(model.queue, torch.stack([keys[5], keys[6], keys[2], keys[3], keys[4]]))
    state = model.state_dict()
    assert "queue" in state and "queue_ptr" in state and any(k.startswith("key_backbone.") for k in state)


def test_moco_after_step_enqueues_the_keys_of_the_last_loss() -> None:
    model = _small_method("mocov2", queue_size=64)
    assert isinstance(model, MoCoV2)
    x1, x2 = torch.rand(8, 1, 8, 8), torch.rand(8, 1, 8, 8)
    old = model.queue.clone()
    model.loss(x1, x2)
    assert torch.equal(model.queue, old)  # the loss alone never touches the queue
    expected = model.keys(x2)
    model.after_step(0.0)
    torch.testing.assert_close(model.queue[:8], expected)
    assert torch.equal(model.queue[8:], old[8:]) and int(model.queue_ptr) == 8


def test_state_dict_round_trip_reproduces_the_loss() -> None:
    a = _small_method("mocov2")
    torch.manual_seed(5)  # different initial weights and queue
    b = build_method(MoCoV2Config(projector=SMALL_PROJ), *build_backbone(BackboneConfig(width=4), (1, 8, 8)))
    x1, x2 = torch.rand(8, 1, 8, 8), torch.rand(8, 1, 8, 8)
    a.loss(x1, x2)
    a.after_step(0.1)
    assert not torch.equal(a.loss(x1, x2), b.loss(x1, x2))
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    assert torch.equal(a.loss(x1, x2), b.loss(x1, x2))


def test_simsiam_and_byol_predictor_dims_follow_config() -> None:
    s = _small_method("simsiam", predictor_hidden_dim=7)
    y = _small_method("byol", predictor_hidden_dim=9)
    assert s.predictor[0].out_features == 7  # type: ignore[index, union-attr]
    assert y.predictor[0].out_features == 9  # type: ignore[index, union-attr]
    assert isinstance(SimSiamConfig().predictor_hidden_dim, int) and isinstance(BYOLConfig().momentum, float)

"""Encoders from (B, C, H, W) images to (B, feat_dim) features: MLP, small CNN, ResNet-18/50 (own code)."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from sweep.registry import Registry

# name (``backbone.name``) -> builder(cfg, input_shape (C, H, W)) -> module with a ``feat_dim`` attribute
BACKBONES: Registry[Callable[[Any, tuple[int, int, int]], nn.Module]] = Registry("backbone", field="backbone.name")


class MLPBackbone(nn.Module):
    """Flattens the image and applies Linear-BN-ReLU layers; for 8x8 digits and quick tests."""

    def __init__(self, input_shape: tuple[int, int, int], hidden_dims: Sequence[int]) -> None:
        super().__init__()
        if not hidden_dims:
            raise ValueError("backbone.hidden_dims: mlp needs at least one hidden layer, got []")
        layers: list[nn.Module] = [nn.Flatten()]
        prev = math.prod(input_shape)
        for h in hidden_dims:
            layers += [nn.Linear(prev, int(h)), nn.BatchNorm1d(int(h)), nn.ReLU(inplace=True)]
            prev = int(h)
        self.net = nn.Sequential(*layers)
        self.feat_dim = prev

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def _conv_bn_relu(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """Three conv stages (width, 2w, 4w; strides 1, 2, 2) and global average pooling: fits 8x8 to 32x32."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"backbone.width must be >= 1, got {width}")
        self.net = nn.Sequential(
            *_conv_bn_relu(in_channels, width, 1), *_conv_bn_relu(width, 2 * width, 2),
            *_conv_bn_relu(2 * width, 4 * width, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feat_dim = 4 * width

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class BasicBlock(nn.Module):
    """ResNet-18/34 block: two 3x3 convs plus a (projected when needed) shortcut."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn_relu(cin, planes, stride),
            nn.Conv2d(planes, planes, 3, 1, 1, bias=False), nn.BatchNorm2d(planes))
        self.shortcut = _shortcut(cin, planes * self.expansion, stride)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    """ResNet-50 block: 1x1 reduce, 3x3 (carries the stride, as in torchvision v1.5), 1x1 expand x4."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        out = planes * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(inplace=True),
            *_conv_bn_relu(planes, planes, stride),
            nn.Conv2d(planes, out, 1, bias=False), nn.BatchNorm2d(out))
        self.shortcut = _shortcut(cin, out, stride)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


def _stem(in_channels: int, cifar_stem: bool) -> nn.Sequential:
    """CIFAR stem keeps 32x32 resolution (3x3 stride 1, no max-pool); the ImageNet stem divides it by 4."""
    if cifar_stem:
        return nn.Sequential(*_conv_bn_relu(in_channels, 64, 1))
    return nn.Sequential(nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                         nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))


class ResNet(nn.Module):
    """ResNet without the classifier: stem, four stages (64..512 planes), global average pooling."""

    def __init__(self, block: type[BasicBlock | Bottleneck], layers: Sequence[int], in_channels: int,
                 cifar_stem: bool) -> None:
        super().__init__()
        self.stem = _stem(in_channels, cifar_stem)
        stages: list[nn.Module] = []
        cin = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            for j in range(blocks):
                stages.append(block(cin, planes, 2 if (i > 0 and j == 0) else 1))
                cin = planes * block.expansion
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feat_dim = cin
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.stages(self.stem(x)))


def resnet18(in_channels: int = 3, cifar_stem: bool = True) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), in_channels, cifar_stem)


def resnet50(in_channels: int = 3, cifar_stem: bool = True) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), in_channels, cifar_stem)


@BACKBONES.register("mlp")
def _mlp(cfg: Any, input_shape: tuple[int, int, int]) -> nn.Module:
    return MLPBackbone(input_shape, list(cfg.hidden_dims))


@BACKBONES.register("small_cnn")
def _small_cnn(cfg: Any, input_shape: tuple[int, int, int]) -> nn.Module:
    return SmallCNN(input_shape[0], int(cfg.width))


@BACKBONES.register("resnet18")
def _resnet18(cfg: Any, input_shape: tuple[int, int, int]) -> nn.Module:
    return resnet18(input_shape[0], bool(cfg.cifar_stem))


@BACKBONES.register("resnet50")
def _resnet50(cfg: Any, input_shape: tuple[int, int, int]) -> nn.Module:
    return resnet50(input_shape[0], bool(cfg.cifar_stem))


def build_backbone(cfg: Any, input_shape: Sequence[int]) -> tuple[nn.Module, int]:
    """Backbone named by ``cfg.name`` (BackboneConfig or DictConfig; see ``BACKBONES``) for images of shape
    (C, H, W)."""
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"input_shape must be (C, H, W) with positive sizes, got {tuple(input_shape)}")
    builder = BACKBONES.get(cfg.name)
    net = builder(cfg, (int(input_shape[0]), int(input_shape[1]), int(input_shape[2])))
    return net, int(net.feat_dim)  # type: ignore[arg-type]

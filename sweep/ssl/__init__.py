"""SSL building blocks: pure losses, backbones, projector/predictor heads, methods, tensor augmentations."""
from sweep.ssl import losses
from sweep.ssl.augment import Augmenter
from sweep.ssl.backbones import (BACKBONES, BasicBlock, Bottleneck, MLPBackbone, ResNet, SmallCNN, build_backbone,
                                 resnet18, resnet50)
from sweep.ssl.heads import build_predictor, build_projector, mlp
from sweep.ssl.losses import barlow_twins_loss, moco_infonce, negative_cosine, nt_xent, vicreg_loss
from sweep.ssl.methods import (BYOL, METHODS, BarlowTwins, MoCoV2, SimCLR, SimSiam, SSLMethod, VICReg,
                               build_method, cosine_momentum, ema_update)

__all__ = [
    "BACKBONES", "BYOL", "METHODS", "Augmenter", "BarlowTwins", "BasicBlock", "Bottleneck", "MLPBackbone", "MoCoV2",
    "ResNet",
    "SSLMethod", "SimCLR", "SimSiam", "SmallCNN", "VICReg", "barlow_twins_loss", "build_backbone",
    "build_method", "build_predictor", "build_projector", "cosine_momentum", "ema_update", "losses", "mlp",
    "moco_infonce", "negative_cosine", "nt_xent", "resnet18", "resnet50", "vicreg_loss",
]

"""The torchvision ResNet-50 stem and first three stages (output stride 16), as loose modules.

STM-family encoders (HMMN) keep these pieces as direct attributes (`conv1`, `bn1`, `res2`, `res3`,
`res4`), so their checkpoints name them at that level; this helper only builds them.
"""
from __future__ import annotations

from typing import NamedTuple

import torch.nn as nn
from torchvision import models


class ResNet50Stages(NamedTuple):
    conv1: nn.Conv2d     # 7x7 stride 2, 3 -> 64
    bn1: nn.BatchNorm2d
    relu: nn.ReLU
    maxpool: nn.MaxPool2d
    layer1: nn.Sequential  # 1/4, 256 channels
    layer2: nn.Sequential  # 1/8, 512 channels
    layer3: nn.Sequential  # 1/16, 1024 channels


def resnet50_stages(imagenet: bool = False) -> ResNet50Stages:
    """Stem and layer1..layer3 of torchvision's ResNet-50.

    `imagenet=True` starts from torchvision's ImageNet weights (a download; only useful for
    training). Leave it False whenever a full checkpoint will be loaded over the network.
    """
    weights = models.ResNet50_Weights.IMAGENET1K_V1 if imagenet else None
    net = models.resnet50(weights=weights)
    return ResNet50Stages(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3)

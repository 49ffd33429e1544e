"""The torchvision ResNet-50 stem and first three stages (output stride 16), as loose modules.

STM-family encoders (HMMN) keep these pieces as direct attributes (`conv1`, `bn1`, `res2`, `res3`,
`res4`), so their checkpoints name them at that level; this helper only builds them.
"""
from __future__ import annotations

from typing import NamedTuple

import torch.nn as nn
from torchvision import models
from torchvision.models.resnet import Bottleneck


class ResNet50Stages(NamedTuple):
    conv1: nn.Conv2d     # 7x7 stride 2, 3 -> 64
    bn1: nn.BatchNorm2d
    relu: nn.ReLU
    maxpool: nn.MaxPool2d
    layer1: nn.Sequential  # 1/4, 256 channels
    layer2: nn.Sequential  # 1/8, 512 channels
    layer3: nn.Sequential  # 1/16, 1024 channels


def _stage(in_channels: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """torchvision's `ResNet._make_layer` for Bottleneck blocks (same module tree and keys)."""
    out_channels = planes * Bottleneck.expansion
    downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                               nn.BatchNorm2d(out_channels))
    return nn.Sequential(Bottleneck(in_channels, planes, stride, downsample),
                         *[Bottleneck(out_channels, planes) for _ in range(blocks - 1)])


def resnet50_stages(imagenet: bool = False) -> ResNet50Stages:
    """Stem and layer1..layer3 of torchvision's ResNet-50.

    `imagenet=True` starts from torchvision's ImageNet weights (a download; only useful for
    training). Otherwise the stages are built directly, without the unused layer4 and classifier,
    and initialised as torchvision does (Kaiming-normal convs, unit BatchNorm); leave it False
    whenever a full checkpoint will be loaded over the network.
    """
    if imagenet:
        net = models.resnet50(weights=models.ResNet50_Weights.IMAGENET1K_V1)
        return ResNet50Stages(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3)
    stages = ResNet50Stages(
        nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        _stage(64, 64, 3, 1), _stage(256, 128, 4, 2), _stage(512, 256, 6, 2))
    for stage in stages:
        for module in stage.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)
    return stages


def zero_init_residual(module: nn.Module) -> int:
    """Zero the scale of the last BatchNorm of every bottleneck in `module`, so that each residual block starts
    as the identity (torchvision's `zero_init_residual`; Goyal et al. 2017, "Accurate, Large Minibatch SGD",
    section 5.1). For training from a random start only: it overwrites trained weights. Returns how many."""
    blocks = [m for m in module.modules() if isinstance(m, Bottleneck)]
    for block in blocks:
        nn.init.zeros_(block.bn3.weight)
    return len(blocks)

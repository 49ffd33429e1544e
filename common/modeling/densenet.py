"""DenseNet-121 trunk to denseblock3 (strides 4, 8, 16) used by BMVOS, EMVOS and TBD."""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn as nn
import torchvision

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DenseNetEncoder(nn.Module):
    """ImageNet-normalised DenseNet-121 features; state_dict keys match the official `Encoder`.

    `imagenet_pretrained=True` downloads torchvision's ImageNet weights (what training starts
    from); leave it False when a full checkpoint or parity weights will be loaded anyway.
    """

    def __init__(self, imagenet_pretrained: bool = False) -> None:
        super().__init__()
        weights = torchvision.models.DenseNet121_Weights.IMAGENET1K_V1 if imagenet_pretrained else None
        trunk = torchvision.models.densenet121(weights=weights).features
        self.conv0 = trunk.conv0
        self.norm0 = trunk.norm0
        self.relu0 = trunk.relu0
        self.pool0 = trunk.pool0
        self.denseblock1 = trunk.denseblock1
        self.transition1 = trunk.transition1
        self.denseblock2 = trunk.denseblock2
        self.transition2 = trunk.transition2
        self.denseblock3 = trunk.denseblock3
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, img: torch.Tensor) -> Dict[str, torch.Tensor]:
        """`img` is RGB in [0, 1], `[B, 3, H, W]`; returns features at strides 4, 8 and 16."""
        x = (img - self.mean) / self.std
        x = self.pool0(self.relu0(self.norm0(self.conv0(x))))
        s4 = self.denseblock1(x)
        s8 = self.denseblock2(self.transition1(s4))
        s16 = self.denseblock3(self.transition2(s8))
        return {"s4": s4, "s8": s8, "s16": s16}

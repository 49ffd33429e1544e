"""The three-stage CBAM decoder shared by EMVOS and TBD (they differ only in matching channels)."""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.modeling.layers import Conv, ConvRelu, DeConv


class CBAM(nn.Module):
    """3x3 conv, then channel attention (shared MLP over avg+max pools), then spatial attention."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = Conv(c, c, 3, 1, 1)
        self.conv2 = nn.Sequential(ConvRelu(c, c, 1, 1, 0), Conv(c, c, 1, 1, 0))
        self.conv3 = nn.Sequential(ConvRelu(2, 16, 3, 1, 1), Conv(16, 1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        channel = torch.sigmoid(self.conv2(F.adaptive_avg_pool2d(x, 1)) + self.conv2(F.adaptive_max_pool2d(x, 1)))
        x = x * channel
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.max(dim=1, keepdim=True)[0]], dim=1)
        return x * torch.sigmoid(self.conv3(pooled))


class CBAMDecoder(nn.Module):
    """s16 features + matching scores + previous 1/16 seg -> 2-channel logits at full resolution."""

    def __init__(self, matching_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvRelu(1024, 256, 1, 1, 0)
        self.blend1 = ConvRelu(256 + matching_channels + 2, 256, 3, 1, 1)
        self.cbam1 = CBAM(256)
        self.deconv1 = DeConv(256, 2, 4, 2, 1)
        self.conv2 = ConvRelu(512, 256, 1, 1, 0)
        self.blend2 = ConvRelu(256 + 2, 256, 3, 1, 1)
        self.cbam2 = CBAM(256)
        self.deconv2 = DeConv(256, 2, 4, 2, 1)
        self.conv3 = ConvRelu(256, 256, 1, 1, 0)
        self.blend3 = ConvRelu(256 + 2, 256, 3, 1, 1)
        self.cbam3 = CBAM(256)
        self.deconv3 = DeConv(256, 2, 6, 4, 1)

    def forward(self, feats: Dict[str, torch.Tensor], matching_score: torch.Tensor,
                prev_seg_16: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.conv1(feats["s16"]), matching_score, prev_seg_16], dim=1)
        s8 = self.deconv1(self.cbam1(self.blend1(x)))
        s4 = self.deconv2(self.cbam2(self.blend2(torch.cat([self.conv2(feats["s8"]), s8], dim=1))))
        return self.deconv3(self.cbam3(self.blend3(torch.cat([self.conv3(feats["s4"]), s4], dim=1))))

"""Convolution wrappers of the BMVOS/EMVOS/TBD family.

They exist for their state_dict layout (`<name>.conv.weight`, `<name>.deconv.weight`) and their
initialisation (Kaiming-uniform weights, zero bias), both of which the official checkpoints and
training recipe depend on.
"""
from __future__ import annotations

import torch.nn as nn


def _kaiming_init(module: nn.Module) -> None:
    nn.init.kaiming_uniform_(module.weight)
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)


class Conv(nn.Sequential):
    def __init__(self, *conv_args) -> None:
        super().__init__()
        self.add_module("conv", nn.Conv2d(*conv_args))
        _kaiming_init(self.conv)


class ConvRelu(nn.Sequential):
    def __init__(self, *conv_args) -> None:
        super().__init__()
        self.add_module("conv", nn.Conv2d(*conv_args))
        self.add_module("relu", nn.ReLU())
        _kaiming_init(self.conv)


class DeConv(nn.Sequential):
    def __init__(self, *conv_args) -> None:
        super().__init__()
        self.add_module("deconv", nn.ConvTranspose2d(*conv_args))
        _kaiming_init(self.deconv)

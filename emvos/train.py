"""EMVOS's part of the shared training pipeline: its clip forward and its official two-stage schedule."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn


def emvos_forward_clip(model: nn.Module, imgs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The official trainer's call: `model(imgs, masks[:, :1], None)['scores']` -> `[B, L-1, 2, H, W]`."""
    return model(imgs, masks[:, :1], None)["scores"]

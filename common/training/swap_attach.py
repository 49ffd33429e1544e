"""Swap-and-attach augmentation (TBD, also in the EMVOS trainer): paste each clip's object onto the next clip.

With m' = the masks rolled by one along the batch (clip b receives clip b-1's object, clip 0 receives the
last clip's), the images become (1 - m') * imgs + m' * roll(imgs * masks) and the masks (1 - m') * masks,
frame by frame, so the pasted object occludes the clip's own target. The arithmetic (and the dtypes:
float images times int64 masks) is the official one.
"""
from __future__ import annotations

import random
from typing import Tuple

import torch

SWAP_ATTACH_PROBABILITY = 0.2  # upstream: `if random.random() > 0.8`


def swap_and_attach(imgs: torch.Tensor, masks: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """`imgs` float `[B, L, 3, H, W]`, `masks` int64 `[B, L, 1, H, W]` in {0, 1}."""
    objects = torch.roll(imgs * masks, dims=0, shifts=1)
    object_masks = torch.roll(masks, dims=0, shifts=1)
    imgs = (1 - object_masks) * imgs + object_masks * objects
    masks = (1 - object_masks) * masks
    return imgs, masks


def maybe_swap_and_attach(imgs: torch.Tensor, masks: torch.Tensor, probability: float = SWAP_ATTACH_PROBABILITY,
                          rng=random) -> Tuple[torch.Tensor, torch.Tensor]:
    """Apply `swap_and_attach` with `probability`; one `rng.random()` draw per batch, as upstream."""
    if rng.random() > 1 - probability:
        return swap_and_attach(imgs, masks)
    return imgs, masks

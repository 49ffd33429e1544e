"""Pad frames to a multiple of the network stride and crop results back.

BMVOS, EMVOS and TBD pad each side so both sides grow to a multiple of 16, with the larger half of an
odd padding on the left/top, and reflect-pad the given label maps too (as float, then back to long,
so the padded border may carry object labels).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

Padding = Tuple[int, int, int, int]  # (left, right, top, bottom), the order F.pad expects


def centered_padding(height: int, width: int, multiple: int) -> Padding:
    """Padding that brings (height, width) to multiples of `multiple`; odd remainders go left/top."""
    h_pad = (multiple - height % multiple) % multiple
    w_pad = (multiple - width % multiple) % multiple
    return ((w_pad + 1) // 2, w_pad // 2, (h_pad + 1) // 2, h_pad // 2)


def pad_video(
    imgs: torch.Tensor, given_masks: Sequence[Optional[torch.Tensor]], padding: Padding
) -> Tuple[torch.Tensor, List[Optional[torch.Tensor]]]:
    """Reflect-pad `[B, L, C, H, W]` frames and every given `[B, 1, H, W]` label map."""
    if padding == (0, 0, 0, 0):
        return imgs, list(given_masks)
    b, l, c, h, w = imgs.shape
    padded = F.pad(imgs.reshape(b * l, c, h, w), list(padding), mode="reflect")
    padded = padded.reshape(b, l, c, padded.shape[-2], padded.shape[-1])
    masks = [
        None if m is None else F.pad(m.float(), list(padding), mode="reflect").long() for m in given_masks
    ]
    return padded, masks


def unpad(x: torch.Tensor, padding: Padding) -> torch.Tensor:
    """Crop the last two dimensions of `x` back to the size before `pad_video`."""
    left, right, top, bottom = padding
    h, w = x.shape[-2:]
    return x[..., top:h - bottom, left:w - right]

"""Running EMVOS on one video the way the official evaluator does.

The official `Evaluator` resizes a video whose short side is not 480 so that it is (bicubic frames,
nearest masks, other side `int(ratio * side)`), unless a given object would then have fewer than 1000
pixels, in which case the original size is kept. It writes the masks at the size it ran at; here they
are resized back (nearest) to the frame size, because result PNGs must match the dataset's frames (this
only matters for videos that are not 480p, i.e. YouTube-VOS, never for DAVIS 480p).
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from common.datasets import Video

SHORT_SIDE = 480
MIN_OBJECT_PIXELS = 1000


def video_tensors(video: Video, device: torch.device):
    """`imgs` float `[1, T, 3, H, W]` in [0, 1] (contiguous, as ToTensor + stack give) and the given masks
    as a length-T list of int64 `[1, 1, H, W]` or None."""
    frames = torch.from_numpy(video.load_frames())
    imgs = frames.permute(0, 3, 1, 2).contiguous().float().div(255).unsqueeze(0).to(device)
    given = video.load_given_masks()
    masks: List[Optional[torch.Tensor]] = [
        torch.from_numpy(given[t]).long().view(1, 1, *given[t].shape).to(device) if t in given else None
        for t in range(len(video))]
    return imgs, masks


def resize_to_480p(imgs: torch.Tensor, given_masks: List[Optional[torch.Tensor]]):
    """The evaluator's resize rule; returns the inputs unchanged when it does not apply."""
    h, w = imgs.shape[-2:]
    if min(h, w) == SHORT_SIDE:
        return imgs, given_masks
    ratio = SHORT_SIDE / min(h, w)
    size = (int(ratio * h), SHORT_SIDE) if h > w else (SHORT_SIDE, int(ratio * w))
    resized = F.interpolate(imgs[0], size=size, mode="bicubic", align_corners=False).unsqueeze(0)
    masks = [None if m is None else F.interpolate(m.float(), size=size, mode="nearest").long() for m in given_masks]
    for m in masks:
        if m is None:
            continue
        for k in m.unique().tolist():
            if k != 0 and int((m == k).sum()) < MIN_OBJECT_PIXELS:
                return imgs, given_masks  # a tiny object would vanish: keep the original size
    return resized, masks


@torch.no_grad()
def segment_video(model: Callable[..., Dict[str, torch.Tensor]], video: Video, device: torch.device,
                  resize: bool = True) -> Dict[int, np.ndarray]:
    """`{frame index: uint8 [H, W] label map}` for every frame of `video` (frame 0 = the given mask).

    `model` is an `EMVOS` (faithful) or an `emvos.fast.FastEMVOS` (same call)."""
    imgs, given = video_tensors(video, device)
    height, width = imgs.shape[-2:]
    if resize:
        imgs, given = resize_to_480p(imgs, given)
    # val_frame_ids=None: every frame is returned; the runner keeps the frames the benchmark scores,
    # which is what the official `val_frame_ids` selection produces.
    masks = model(imgs, given, None)["masks"][0]  # [T, 1, h, w]
    if masks.shape[-2:] != (height, width):
        masks = F.interpolate(masks.float(), size=(height, width), mode="nearest").long()
    masks = masks[:, 0].to(torch.uint8).cpu().numpy()
    return {t: masks[t] for t in range(len(masks))}

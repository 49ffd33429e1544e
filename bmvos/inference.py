"""From a dataset `Video` to label maps: what the official `evaluation/evaluator.py` does around the model.

Per video: RGB frames as float in [0, 1] (`ToTensor`), the given masks as long label maps, the
evaluator's resize to a 480-pixel short side (bicubic frames, nearest masks) unless that would leave
some given object with fewer than 1000 pixels, then `BMVOS.forward` with the benchmark's output frames.

One deliberate difference: the official evaluator saves the masks at the resized size; here they are
resized back (nearest) to the video's own size, which the benchmarks' ground truth and servers use.
DAVIS 480p frames already have a 480-pixel short side, so nothing is resized there.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from bmvos.model import BMVOS, FastBMVOS
from common.datasets import Video

SHORT_SIDE = 480
MIN_OBJECT_PIXELS = 1000

GivenMasks = List[Optional[torch.Tensor]]
Segmenter = Union[BMVOS, FastBMVOS]  # faithful (default) or fast mode: same inputs, same outputs


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 `[T, H, W, 3]` -> contiguous float `[1, T, 3, H, W]` in [0, 1], as `ToTensor` + stack give."""
    return (torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous().float() / 255).unsqueeze(0)


def given_mask_list(masks: Dict[int, np.ndarray], length: int) -> GivenMasks:
    """{frame: uint8 [H, W]} -> one long `[1, 1, H, W]` entry per frame (None where nothing is given)."""
    return [torch.from_numpy(masks[i]).long()[None, None] if i in masks else None for i in range(length)]


def resized_size(height: int, width: int, short_side: int = SHORT_SIDE) -> Optional[Tuple[int, int]]:
    """The evaluator's target (H, W): short side to `short_side`, long side `int(ratio * long)`; None = keep."""
    if height > width:
        return None if width == short_side else (int(short_side / width * height), short_side)
    return None if height == short_side else (short_side, int(short_side / height * width))


def resize_like_official(imgs: torch.Tensor, given_masks: GivenMasks, short_side: int = SHORT_SIDE,
                         min_object_pixels: int = MIN_OBJECT_PIXELS) -> Tuple[torch.Tensor, GivenMasks, bool]:
    """The official evaluator's resize; returns (imgs, given_masks, resized).

    Frames are resized bicubically (values are not clamped) and masks by nearest neighbour. If any
    object of any given mask would keep fewer than `min_object_pixels` pixels, the originals are
    used instead, so small objects are segmented at full detail.
    """
    size = resized_size(imgs.shape[-2], imgs.shape[-1], short_side)
    if size is None:
        return imgs, given_masks, False
    masks = [None if m is None else F.interpolate(m.float(), size=size, mode="nearest").long() for m in given_masks]
    for m in masks:
        if m is None:
            continue
        ids = [k for k in m.unique().tolist() if k != 0]
        if any(int((m == k).sum()) < min_object_pixels for k in ids):
            return imgs, given_masks, False
    # frame by frame: the same numbers as one batched call, without a second full-size float copy
    resized = torch.stack([F.interpolate(imgs[:, t], size=size, mode="bicubic") for t in range(imgs.shape[1])], 1)
    return resized, masks, True


@torch.no_grad()
def segment_video(model: Segmenter, video: Video, short_side: Optional[int] = SHORT_SIDE) -> Dict[int, np.ndarray]:
    """Label maps (uint8 `[H, W]` at the video's size) of every frame the model outputs.

    `short_side=None` skips the evaluator's resize (the model then runs at the stored size).
    """
    device = next(model.parameters()).device
    frames = video.load_frames()
    height, width = frames.shape[1:3]
    imgs = frames_to_tensor(frames)
    del frames
    given = given_mask_list(video.load_given_masks(), imgs.shape[1])
    if short_side is not None:
        imgs, given, _ = resize_like_official(imgs.to(device), [None if m is None else m.to(device) for m in given],
                                              short_side)
    out = model(imgs, given, video.output_frames)
    masks = out.masks[0]  # [L', 1, h, w]
    if masks.shape[-2:] != (height, width):
        masks = F.interpolate(masks.float(), size=(height, width), mode="nearest").long()
    masks = masks[:, 0].to(torch.uint8).cpu().numpy()
    return {frame: masks[n] for n, frame in enumerate(out.frame_ids)}


def make_segmenter(model: Segmenter,
                   short_side: Optional[int] = SHORT_SIDE) -> Callable[[Video], Dict[int, np.ndarray]]:
    return lambda video: segment_video(model, video, short_side)

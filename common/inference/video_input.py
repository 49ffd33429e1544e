"""From a dataset `Video` to model inputs and back: the evaluator convention of BMVOS, EMVOS and TBD.

The three papers (same author) run their models through the same official `evaluation/evaluator.py`:

* frames: uint8 RGB -> float in [0, 1] (`ToTensor`, on the CPU), stacked to one `[1, T, 3, H, W]` tensor;
* given masks: a list of length T holding an int64 `[1, 1, H, W]` label map on every annotated frame and
  None elsewhere;
* resize: a video whose short side is not 480 is resized so that it is (the other side becomes
  `int(480 / short * long)`), frames bicubically (values not clamped), masks by nearest neighbour --
  unless some object of some given mask would then cover fewer than 1000 pixels, in which case the whole
  video keeps its size so that small objects are segmented at full detail.

One deliberate departure: the evaluator saves the label maps at the size the model ran at; here they are
resized back (nearest) to the frame size, which the benchmarks' ground truth and servers use. Only videos
that are not 480p (YouTube-VOS) are affected; DAVIS 480p frames already have a 480-pixel short side.
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from common.data.datasets import Video

SHORT_SIDE = 480
MIN_OBJECT_PIXELS = 1000  # counted after resizing; a smaller given object keeps the video at its size

GivenMasks = List[Optional[torch.Tensor]]


class VideoInputs(NamedTuple):
    imgs: torch.Tensor        # float [1, T, 3, h, w] in [0, 1], at the size the model runs at
    given_masks: GivenMasks   # T entries: int64 [1, 1, h, w] or None
    frame_size: Tuple[int, int]  # (H, W) of the stored frames, the size results are returned at


def bytes_to_unit_float(pixels: np.ndarray) -> torch.Tensor:
    """uint8 array -> float32 CPU tensor of the same shape, divided by 255 on the CPU.

    Every official loader divides on the CPU (`ToTensor`, numpy); CUDA divides by a scalar through its
    reciprocal, which is one ulp off for about half of the 256 byte values, so move the result, not
    the bytes, to the device."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).float().div_(255)


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 `[T, H, W, 3]` -> contiguous float `[1, T, 3, H, W]` in [0, 1], as `ToTensor` + stack give."""
    return bytes_to_unit_float(frames).permute(0, 3, 1, 2).contiguous().unsqueeze(0)


def given_mask_list(masks: Dict[int, np.ndarray], length: int) -> GivenMasks:
    """{frame: uint8 `[H, W]`} -> one int64 `[1, 1, H, W]` entry per frame (None where nothing is given)."""
    return [torch.from_numpy(masks[t]).long()[None, None] if t in masks else None for t in range(length)]


def resized_size(height: int, width: int, short_side: int = SHORT_SIDE) -> Optional[Tuple[int, int]]:
    """The evaluator's target (H, W): short side to `short_side`, the other `int(ratio * side)`; None = keep."""
    if height > width:
        return None if width == short_side else (int(short_side / width * height), short_side)
    return None if height == short_side else (short_side, int(short_side / height * width))


def resize_like_evaluator(imgs: torch.Tensor, given_masks: Sequence[Optional[torch.Tensor]],
                          short_side: int = SHORT_SIDE, min_object_pixels: int = MIN_OBJECT_PIXELS
                          ) -> Tuple[torch.Tensor, GivenMasks, bool]:
    """The evaluator's resize of `[B, T, 3, H, W]` frames and their given masks -> (imgs, masks, resized).

    When the rule does not apply (short side already `short_side`, or a given object would fall under
    `min_object_pixels`), the inputs are returned as they are and `resized` is False.
    """
    size = resized_size(imgs.shape[-2], imgs.shape[-1], short_side)
    if size is None:
        return imgs, list(given_masks), False
    masks = [None if m is None else F.interpolate(m.float(), size=size, mode="nearest").long() for m in given_masks]
    for m in masks:
        if m is not None and any(int((m == k).sum()) < min_object_pixels for k in m.unique().tolist() if k != 0):
            return imgs, list(given_masks), False
    # All frames in one call, as the evaluator interpolates `[T, 3, H, W]`; every output pixel depends on
    # its own frame only, so this equals resizing frame by frame (tests/test_video_input.py checks it).
    b, t, c = imgs.shape[:3]
    resized = F.interpolate(imgs.flatten(0, 1), size=size, mode="bicubic").view(b, t, c, *size)
    return resized, masks, True


def load_video_inputs(video: Video, device: torch.device, short_side: Optional[int] = SHORT_SIDE) -> VideoInputs:
    """`video`'s frames and given masks as the evaluator feeds them, on `device` (where the resize runs).

    `short_side=None` skips the resize: the model then runs at the stored size.
    """
    frames = video.load_frames()
    frame_size = (int(frames.shape[1]), int(frames.shape[2]))
    imgs = frames_to_tensor(frames).to(device)
    del frames  # the uint8 copy is not needed any more; videos can be long
    given = [None if m is None else m.to(device) for m in given_mask_list(video.load_given_masks(), imgs.shape[1])]
    if short_side is not None:
        imgs, given, _ = resize_like_evaluator(imgs, given, short_side)
    return VideoInputs(imgs, given, frame_size)


def labels_at_frame_size(masks: torch.Tensor, frame_size: Tuple[int, int]) -> np.ndarray:
    """Label maps `[N, 1, h, w]` -> uint8 numpy `[N, H, W]` at `frame_size` (nearest, when h, w differ)."""
    if tuple(masks.shape[-2:]) != tuple(frame_size):
        masks = F.interpolate(masks.float(), size=frame_size, mode="nearest")
    return masks[:, 0].to(torch.uint8).cpu().numpy()

"""TBD on one video, the way the official evaluator (`evaluation/evaluator.py`) feeds the model.

Per video: all frames as one `[1, T, 3, H, W]` tensor in [0, 1]; videos whose short side is not 480 are
resized so it is (bicubic for frames, nearest for masks, other side `int(ratio * side)`) unless a given
object would then cover fewer than 1000 pixels, in which case the original size is kept; the distance
matrix is built for the size actually fed to the model. One departure: results are resized back to the
original frame size (nearest), because benchmark servers and `common.runner` expect it (the evaluator
saves them at the model's size, which only matters for YouTube-VOS, whose testing upstream is disabled).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from common.datasets import Video
from common.errors import UserError
from tbd.model import TBD, distance_matrix

if TYPE_CHECKING:
    from tbd.fast import FastTBD

SHORT_SIDE = 480
MIN_OBJECT_PIXELS = 1000  # after resizing; smaller objects keep the video at its original size


def resized_size(height: int, width: int, short_side: int = SHORT_SIDE) -> Optional[tuple]:
    """The evaluator's 480p target size, or None when the short side already is 480."""
    if height > width:
        return None if width == short_side else (int(short_side / width * height), short_side)
    return None if height == short_side else (short_side, int(short_side / height * width))


def prepare_inputs(frames: np.ndarray, given: Dict[int, np.ndarray], device: torch.device,
                   resize: bool = True) -> tuple:
    """uint8 frames `[T, H, W, 3]` + {frame: uint8 labels} -> (imgs `[1, T, 3, h, w]`, list of given masks)."""
    imgs = torch.from_numpy(frames).to(device).permute(0, 3, 1, 2).contiguous().float().div_(255).unsqueeze(0)
    masks: List[Optional[torch.Tensor]] = [None] * imgs.shape[1]
    for t, labels in given.items():
        masks[t] = torch.from_numpy(labels.astype(np.int64)).to(device)[None, None]
    target = resized_size(*imgs.shape[-2:]) if resize else None
    if target is None:
        return imgs, masks
    # The evaluator interpolates `imgs[0]`, i.e. `[T, 3, H, W]` (bicubic, no clamping).
    r_imgs = F.interpolate(imgs[0], size=target, mode="bicubic").unsqueeze(0)
    r_masks = [None if m is None else F.interpolate(m.float(), size=target, mode="nearest").long() for m in masks]
    tiny = any((m == k).sum().item() < MIN_OBJECT_PIXELS
               for m in r_masks if m is not None for k in m.unique().tolist() if k != 0)
    return (imgs, masks) if tiny else (r_imgs, r_masks)


@torch.no_grad()
def segment_video(model: Union[TBD, "FastTBD"], video: Video, device: torch.device,
                  resize: bool = True) -> Dict[int, np.ndarray]:
    """{frame index: uint8 label map at the frame size} for frame 0, given frames and scored frames.

    `model` is the faithful `TBD` or its fast wrapper `tbd.fast.FastTBD` (same call)."""
    if 0 not in video.mask_paths:
        raise UserError(f"video {video.name} has no annotation for its first frame ({video.frame_names[0]}); "
                        f"TBD starts from a given first-frame mask")
    frames = video.load_frames()
    height, width = frames.shape[1:3]
    imgs, given = prepare_inputs(frames, video.load_given_masks(), device, resize)
    dist = distance_matrix(imgs.shape[-2], imgs.shape[-1], device).unsqueeze(0)
    scored = video.output_frames
    # Positions relative to frame 0 play the role of the official absolute frame numbers.
    masks = model(imgs, given, dist, scored)["masks"][0, :, 0]
    out_ids = [0] + [i for i in range(1, len(video)) if given[i] is not None or scored is None or i in scored]
    assert len(out_ids) == masks.shape[0]
    if masks.shape[-2:] != (height, width):
        masks = F.interpolate(masks[:, None].float(), size=(height, width), mode="nearest")[:, 0].long()
    labels = masks.to(torch.uint8).cpu().numpy()
    return {i: labels[n] for n, i in enumerate(out_ids)}


def make_segment(model: Union[TBD, "FastTBD"], device: torch.device, resize: bool = True) -> Callable[[Video], Dict[int, np.ndarray]]:
    """`segment(video)` for `common.runner.run_videos`."""
    return lambda video: segment_video(model, video, device, resize)

"""TBD on one video, the way the official evaluator (`evaluation/evaluator.py`) feeds the model.

The evaluator's convention (frames in [0, 1], given masks as long label maps, its 480p resize with the
small-object exception, results back at the frame size) is shared with BMVOS and EMVOS and lives in
`common.inference.video_input`. TBD adds the distance matrix, built for the size actually fed to the model.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict, Union

import numpy as np
import torch

from common.data.datasets import Video
from common.runtime.errors import UserError
from common.inference.video_input import SHORT_SIDE, labels_at_frame_size, load_video_inputs
from tbd.model import TBD, distance_matrix

if TYPE_CHECKING:
    from tbd.fast import FastTBD


@torch.no_grad()
def segment_video(model: Union[TBD, "FastTBD"], video: Video, device: torch.device,
                  resize: bool = True) -> Dict[int, np.ndarray]:
    """{frame index: uint8 label map at the frame size} for frame 0, given frames and scored frames.

    `model` is the faithful `TBD` or its fast wrapper `tbd.fast.FastTBD` (same call)."""
    if 0 not in video.mask_paths:
        raise UserError(f"video {video.name} has no annotation for its first frame ({video.frame_names[0]}); "
                        f"TBD starts from a given first-frame mask")
    imgs, given, frame_size = load_video_inputs(video, device, SHORT_SIDE if resize else None)
    dist = distance_matrix(imgs.shape[-2], imgs.shape[-1], device).unsqueeze(0)
    scored = video.output_frames
    # Positions relative to frame 0 play the role of the official absolute frame numbers.
    masks = model(imgs, given, dist, scored)["masks"][0]  # [L', 1, h, w]
    out_ids = [0] + [i for i in range(1, len(video)) if given[i] is not None or scored is None or i in scored]
    assert len(out_ids) == masks.shape[0]
    labels = labels_at_frame_size(masks, frame_size)
    return {i: labels[n] for n, i in enumerate(out_ids)}


def make_segment(model: Union[TBD, "FastTBD"], device: torch.device, resize: bool = True) -> Callable[[Video], Dict[int, np.ndarray]]:
    """`segment(video)` for `common.inference.runner.run_videos`."""
    return lambda video: segment_video(model, video, device, resize)

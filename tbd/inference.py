"""TBD on one video, the way the official evaluator (`evaluation/evaluator.py`) feeds the model.

The evaluator's convention (frames in [0, 1], given masks as long label maps, its 480p resize with the
small-object exception, results back at the frame size) is shared with BMVOS and EMVOS and lives in
`common.inference.video_input`. TBD adds the distance matrix, built for the size actually fed to the model.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Union

import numpy as np
import torch
import torch.nn as nn

from common.data.datasets import Video
from common.inference.fast import FastOptions
from common.inference.video_input import SHORT_SIDE, labels_at_frame_size, load_video_inputs
from common.modeling.densenet import DenseNetEncoder
from common.runtime.device import device_of
from common.runtime.errors import UserError
from tbd.fast import FastTBD
from tbd.model import TBD, distance_matrix, load_model

FRAME_ENCODER = DenseNetEncoder  # called once per frame (batch = frames): drives progress bars


@torch.no_grad()
def segment_video(model: Union[TBD, FastTBD], video: Video, *, resize: bool = True) -> Dict[int, np.ndarray]:
    """{frame index: uint8 label map at the frame size} for frame 0, given frames and scored frames.

    `model` is the faithful `TBD` or its fast wrapper `FastTBD` (same call); it runs on the device it is on.
    `resize=False` skips the evaluator's 480p rule."""
    if 0 not in video.mask_paths:
        raise UserError(f"video {video.name} has no annotation for its first frame ({video.frame_names[0]}); "
                        f"TBD starts from a given first-frame mask")
    device = device_of(model)
    imgs, given, frame_size = load_video_inputs(video, device, SHORT_SIDE if resize else None)
    dist = distance_matrix(imgs.shape[-2], imgs.shape[-1], device).unsqueeze(0)
    scored = video.output_frames
    # Positions relative to frame 0 play the role of the official absolute frame numbers.
    masks = model(imgs, given, dist, scored)["masks"][0]  # [L', 1, h, w]
    out_ids = [0] + [i for i in range(1, len(video)) if given[i] is not None or scored is None or i in scored]
    assert len(out_ids) == masks.shape[0]
    labels = labels_at_frame_size(masks, frame_size)
    return {i: labels[n] for n, i in enumerate(out_ids)}


def load_segmenter(weights: Optional[str], device: torch.device, fast: Optional[FastOptions] = None, *,
                   autocast_decoder: bool = False) -> nn.Module:
    """`load_model(weights, device)` (None = the official `tbd-davis`), wrapped in `FastTBD` when `fast` options
    are given (`autocast_decoder`: TBD's one extra fast-mode option)."""
    model = load_model(weights, device)
    return model if fast is None else FastTBD(model, fast, autocast_decoder=autocast_decoder)


def make_segmenter(weights: Optional[str], device: torch.device, *, fast: Optional[FastOptions] = None,
                   resize: bool = True) -> Callable[[Video], Dict[int, np.ndarray]]:
    """`segment(video)`: `load_segmenter(weights, device, fast)`, then `segment_video`."""
    model = load_segmenter(weights, device, fast)
    return lambda video: segment_video(model, video, resize=resize)

"""From a dataset `Video` to label maps: what the official `evaluation/evaluator.py` does around the model.

The evaluator's convention (frames in [0, 1], given masks as long label maps, its 480p resize with the
small-object exception, results back at the frame size) is shared with EMVOS and TBD and lives in
`common.inference.video_input`; this module feeds `BMVOS.forward` (or fast mode) the benchmark's output frames.
DAVIS 480p frames already have a 480-pixel short side, so nothing is resized there.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, Optional, Union

import numpy as np
import torch

from bmvos.fast import FastBMVOS
from bmvos.model import BMVOS, load_model
from common.data.datasets import Video
from common.inference.fast import FastOptions
from common.inference.video_input import SHORT_SIDE, labels_at_frame_size, load_video_inputs
from common.modeling.densenet import DenseNetEncoder
from common.runtime.device import device_of

FRAME_ENCODER = DenseNetEncoder  # called once per frame (batch = frames): drives progress bars

Segmenter = Union[BMVOS, FastBMVOS]  # faithful (default) or fast mode: same inputs, same outputs


@torch.no_grad()
def segment_video(model: Segmenter, video: Video, *, resize: bool = True) -> Dict[int, np.ndarray]:
    """Label maps (uint8 `[H, W]` at the video's size) of every frame the model outputs.

    `resize=False` skips the evaluator's 480p rule (the model then runs at the stored size).
    """
    short_side = SHORT_SIDE if resize else None
    # At the stored size the frames stay on the CPU: the model moves them to its device as it goes.
    inputs = load_video_inputs(video, device_of(model) if resize else torch.device("cpu"), short_side)
    out = model(inputs.imgs, inputs.given_masks, video.output_frames)
    labels = labels_at_frame_size(out.masks[0], inputs.frame_size)  # out.masks[0]: [L', 1, h, w]
    return {frame: labels[n] for n, frame in enumerate(out.frame_ids)}


def load_segmenter(weights: Optional[Union[str, os.PathLike]], device: torch.device,
                   fast: Optional[FastOptions] = None) -> Segmenter:
    """`load_model(weights, device)`, wrapped in `FastBMVOS` when `fast` options are given."""
    model = load_model(weights, device)
    return model if fast is None else FastBMVOS(model, fast)


def make_segmenter(weights: Optional[Union[str, os.PathLike]], device: torch.device, *,
                   fast: Optional[FastOptions] = None, resize: bool = True) -> Callable[[Video], Dict[int, np.ndarray]]:
    """Video -> label maps: `weights` (see `load_model`) loaded on `device`, in fast mode when `fast` is given,
    with the official evaluator's 480p rule unless `resize=False`."""
    model = load_segmenter(weights, device, fast)
    return lambda video: segment_video(model, video, resize=resize)

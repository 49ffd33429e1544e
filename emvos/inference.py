"""Running EMVOS on one video the way the official evaluator does.

The evaluator's convention (frames in [0, 1], given masks as long label maps, its 480p resize with the
small-object exception, results back at the frame size) is shared with BMVOS and TBD and lives in
`common.inference.video_input`.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, Optional, Union

import numpy as np
import torch
import torch.nn as nn

from common.data.datasets import Video
from common.inference.fast import FastOptions
from common.inference.video_input import SHORT_SIDE, labels_at_frame_size, load_video_inputs
from common.modeling.densenet import DenseNetEncoder
from common.runtime.device import device_of
from emvos.fast import FastEMVOS
from emvos.model import load_model

FRAME_ENCODER = DenseNetEncoder  # called once per frame (fast mode: per chunk of frames); drives progress bars


@torch.no_grad()
def segment_video(model: nn.Module, video: Video, *, resize: bool = True) -> Dict[int, np.ndarray]:
    """`{frame index: uint8 [H, W] label map}` for every frame of `video` (frame 0 = the given mask).

    `model` is an `EMVOS` (faithful) or an `emvos.fast.FastEMVOS` (same call); the video goes to its device.
    `resize=False` skips the evaluator's 480p rule (the model runs at the stored size)."""
    inputs = load_video_inputs(video, device_of(model), SHORT_SIDE if resize else None)
    # val_frame_ids=None: every frame is returned; the runner keeps the frames the benchmark scores,
    # which is what the official `val_frame_ids` selection produces.
    masks = model(inputs.imgs, inputs.given_masks, None)["masks"][0]  # [T, 1, h, w]
    labels = labels_at_frame_size(masks, inputs.frame_size)
    return {t: labels[t] for t in range(len(labels))}


def load_segmenter(weights: Optional[Union[str, os.PathLike]], device: torch.device,
                   fast: Optional[FastOptions] = None) -> nn.Module:
    """`load_model(weights, device)`, wrapped in `FastEMVOS` when `fast` options are given (else the faithful
    per-object loop)."""
    model = load_model(weights, device)
    return model if fast is None else FastEMVOS(model, fast)


def make_segmenter(weights: Optional[Union[str, os.PathLike]], device: torch.device, *,
                   fast: Optional[FastOptions] = None,
                   resize: bool = True) -> Callable[[Video], Dict[int, np.ndarray]]:
    """Video -> label maps with the official evaluator's settings (`load_segmenter`, then `segment_video`)."""
    model = load_segmenter(weights, device, fast)
    return lambda video: segment_video(model, video, resize=resize)

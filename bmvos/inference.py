"""From a dataset `Video` to label maps: what the official `evaluation/evaluator.py` does around the model.

The evaluator's convention (frames in [0, 1], given masks as long label maps, its 480p resize with the
small-object exception, results back at the frame size) is shared with EMVOS and TBD and lives in
`common.inference.video_input`; this module feeds `BMVOS.forward` (or fast mode) the benchmark's output frames.
DAVIS 480p frames already have a 480-pixel short side, so nothing is resized there.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Union

import numpy as np
import torch

from bmvos.model import BMVOS, FastBMVOS
from common.data.datasets import Video
from common.inference.video_input import SHORT_SIDE, labels_at_frame_size, load_video_inputs

Segmenter = Union[BMVOS, FastBMVOS]  # faithful (default) or fast mode: same inputs, same outputs


@torch.no_grad()
def segment_video(model: Segmenter, video: Video, short_side: Optional[int] = SHORT_SIDE) -> Dict[int, np.ndarray]:
    """Label maps (uint8 `[H, W]` at the video's size) of every frame the model outputs.

    `short_side=None` skips the evaluator's resize (the model then runs at the stored size).
    """
    device = next(model.parameters()).device
    # At the stored size the frames stay on the CPU: the model moves them to its device as it goes.
    inputs = load_video_inputs(video, device if short_side is not None else torch.device("cpu"), short_side)
    out = model(inputs.imgs, inputs.given_masks, video.output_frames)
    labels = labels_at_frame_size(out.masks[0], inputs.frame_size)  # out.masks[0]: [L', 1, h, w]
    return {frame: labels[n] for n, frame in enumerate(out.frame_ids)}


def make_segmenter(model: Segmenter,
                   short_side: Optional[int] = SHORT_SIDE) -> Callable[[Video], Dict[int, np.ndarray]]:
    return lambda video: segment_video(model, video, short_side)

"""Running EMVOS on one video the way the official evaluator does.

The evaluator's convention (frames in [0, 1], given masks as long label maps, its 480p resize with the
small-object exception, results back at the frame size) is shared with BMVOS and TBD and lives in
`common.inference.video_input`.
"""
from __future__ import annotations

from typing import Callable, Dict

import numpy as np
import torch

from common.data.datasets import Video
from common.inference.video_input import SHORT_SIDE, labels_at_frame_size, load_video_inputs


@torch.no_grad()
def segment_video(model: Callable[..., Dict[str, torch.Tensor]], video: Video, device: torch.device,
                  resize: bool = True) -> Dict[int, np.ndarray]:
    """`{frame index: uint8 [H, W] label map}` for every frame of `video` (frame 0 = the given mask).

    `model` is an `EMVOS` (faithful) or an `emvos.fast.FastEMVOS` (same call)."""
    inputs = load_video_inputs(video, device, SHORT_SIDE if resize else None)
    # val_frame_ids=None: every frame is returned; the runner keeps the frames the benchmark scores,
    # which is what the official `val_frame_ids` selection produces.
    masks = model(inputs.imgs, inputs.given_masks, None)["masks"][0]  # [T, 1, h, w]
    labels = labels_at_frame_size(masks, inputs.frame_size)
    return {t: labels[t] for t in range(len(labels))}

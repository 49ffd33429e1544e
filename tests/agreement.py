"""What the fast-mode agreement tests of BMVOS and EMVOS share: the J&F bound and the parity videos' inputs."""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np
import torch

from common.metrics import object_scores
from tests.parity.harness import load_case, parity_dir

JF_TOLERANCE = 0.1  # J&F points (percent): the "within noise"


def jf_percent(gt: np.ndarray, pred: np.ndarray) -> float:
    """J&F mean in % over the objects of `gt` `[T, H, W]` and the frames after the given first one."""
    ids = [k for k in np.unique(gt) if k != 0]
    j, f = object_scores(gt[1:], pred[1:], ids)
    return 100 * (j.mean() + f.mean()) / 2


def parity_video_inputs(paper: str, name: str) -> Tuple[torch.Tensor, List[Optional[torch.Tensor]]]:
    """A parity video case's model inputs: float `[1, T, 3, H, W]` in [0, 1] and the per-frame given masks."""
    inputs = load_case(parity_dir(paper) / name)["inputs"]
    frames = inputs["frames"]
    imgs = (frames.movedim(-1, -3).contiguous().float() / 255)[None]
    given = [inputs["given_masks"][t].long() if t in inputs["given_masks"] else None for t in range(len(frames))]
    return imgs, given

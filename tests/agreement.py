"""What the fast-mode agreement tests of BMVOS and EMVOS share: the J&F bound, the parity videos' inputs and
the top-two gaps that tell decided pixels from near ties."""
from __future__ import annotations

from types import ModuleType
from typing import List, Optional, Tuple

import numpy as np
import torch

from common.evaluation.metrics import object_scores
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


def record_top2_gaps(patch, module: ModuleType) -> List[torch.Tensor]:
    """Patch `module.aggregate_by_odds` (with the `monkeypatch` context `patch`) so that every call appends,
    per pixel, the gap between the two most likely labels of the aggregated distribution ([H, W] of the
    first video in the batch) to the returned list. Pixels with a small gap are near ties, where the winning
    label is a matter of each CPU's kernel rounding; comparisons are made only where the gap is large."""
    gaps: List[torch.Tensor] = []
    aggregate = module.aggregate_by_odds

    def recording(segs, object_ids):
        labels, aggregated = aggregate(segs, object_ids)
        fg = torch.cat([aggregated[k][:, 1:] for k in object_ids], dim=1)
        top2 = torch.cat([1 - fg.sum(dim=1, keepdim=True), fg], dim=1).topk(2, dim=1).values
        gaps.append(top2[0, 0] - top2[0, 1])
        return labels, aggregated

    patch.setattr(module, "aggregate_by_odds", recording)
    return gaps

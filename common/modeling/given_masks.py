"""Bookkeeping of the given masks that the BMVOS, EMVOS and TBD fast modes share.

The models take one entry per frame: an int64 `[1, 1, H, W]` label map where objects are given, None
elsewhere. The official code appends every id of a given mask to its list of tracked objects, so an id
given a second time is tracked (and aggregated) twice; the fast modes batch objects by id and leave such
videos to the faithful forward, which reproduces it.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch


def object_ids_in(labels: torch.Tensor) -> List[int]:
    """Ascending non-zero ids of a label map (the order in which the official code tracks objects)."""
    return [k for k in labels.unique().tolist() if k != 0]


def each_id_given_once(given_masks: Sequence[Optional[torch.Tensor]], *,
                       require_first_frame_objects: bool = False) -> bool:
    """True when no object id appears in the given masks of two frames, and, with
    `require_first_frame_objects`, frame 0 is given with at least one object."""
    if require_first_frame_objects and given_masks[0] is None:
        return False
    seen: set = set()
    for t, labels in enumerate(given_masks):
        if labels is None:
            continue
        ids = set(object_ids_in(labels))  # one device sync per given mask: few per video
        if (t == 0 and require_first_frame_objects and not ids) or ids & seen:
            return False
        seen |= ids
    return True


def two_channel_segs(labels: torch.Tensor, ids: Sequence[int]) -> torch.Tensor:
    """`[1, 1, H, W]` label map -> float `[N, 2, H, W]`, one (not k, k) pair per id in `ids`."""
    return torch.cat([torch.cat([labels != k, labels == k], dim=1) for k in ids], dim=0).float()

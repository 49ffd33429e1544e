"""Multi-object soft aggregation by normalised odds (BMVOS, EMVOS, TBD).

Each object's 2-channel [bg, fg] probability map is turned into odds fg/bg; a background "object"
whose bg probability is the minimum over objects joins them; the odds are normalised over
(background + objects). Every probability is clamped to [1e-7, 1 - 1e-7] first.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch

EPS = 1e-7


def aggregate_by_odds(
    segs: Dict[int, torch.Tensor], object_ids: List[int]
) -> Tuple[torch.Tensor, Dict[int, torch.Tensor]]:
    """Aggregate per-object `[B, 2, H, W]` probabilities.

    Returns the hard label map `[B, 1, H, W]` (argmax over [background, objects in `object_ids`
    order]; ties go to the first index, exactly like torch.argmax) and each object's aggregated
    2-channel seg `[1 - p, p]`.
    """
    bg = torch.stack([segs[k][:, 0] for k in object_ids], dim=1).min(dim=1)[0]
    background = torch.stack([1 - bg, bg], dim=1)
    odds = [
        seg[:, 1:].clamp(EPS, 1 - EPS) / seg[:, :1].clamp(EPS, 1 - EPS)
        for seg in [background] + [segs[k] for k in object_ids]
    ]
    total = torch.cat(odds, dim=1).sum(dim=1, keepdim=True)
    probs = [o / total for o in odds]
    winner = torch.cat(probs, dim=1).argmax(dim=1, keepdim=True)
    labels = torch.zeros_like(winner)
    for idx, k in enumerate(object_ids):
        labels[winner == idx + 1] = k
    aggregated = {k: torch.cat([1 - p, p], dim=1) for k, p in zip(object_ids, probs[1:])}
    return labels, aggregated

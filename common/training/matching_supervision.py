"""Matching supervision: a scratch-training aid, off by default (`--matching-supervision`; EMVOS).

EMVOS's decoder reads its matching scores only in its 1/16 stage, next to the previous frame's mask. From a
random start it learns to follow the previous mask and the objectness of its s8/s4 features, and its matching
stays weak and little used: zeroing every matching channel of a model trained so on generated data cost it 8
points of J&F, where TBD's model lost 51 (README, "Training on generated data"). This switch adds, for each
(background, foreground) pair of cosine similarities the matcher declares (`SIMILARITY_PAIRS`), the
cross-entropy of the pair times `TEMPERATURE` against the clip's masks at 1/16: every query cell should resemble
the target's reference cells more than the background's, or the other way round. The network, its state_dict and
inference are untouched; a hook only listens during the training forward.

    supervision = MatchingSupervision(model)
    with supervision.collecting():
        scores = forward_clip(model, imgs, masks)
    loss = clip_loss(scores, masks) + supervision.loss(masks)
"""
from __future__ import annotations

from typing import ContextManager, List

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.runtime.errors import UserError
from common.training.deep_supervision import cell_labels, outputs_of, padded_targets

# The similarities are cosines shifted to [0, 1]: times 10, a gap of 0.3 between a cell's best background and best
# foreground match is a logit of 3. Each pair's cross-entropy (mean over the clip's frames) counts once. Measured
# with these two values only (README).
TEMPERATURE = 10.0
WEIGHT = 1.0


class MatchingSupervision:
    """Collects the matcher's scores in the training forwards run inside `collecting()` and turns them into a loss."""

    def __init__(self, model: nn.Module, temperature: float = TEMPERATURE, weight: float = WEIGHT) -> None:
        self.temperature = temperature
        self.weight = weight
        self.scores: List[torch.Tensor] = []
        self.matchers = [m for name, m in model.named_modules()
                         if name.rsplit(".", 1)[-1] == "matcher" and hasattr(m, "SIMILARITY_PAIRS")]
        if len(self.matchers) != 1:
            raise UserError("--matching-supervision: this model has no matcher that declares its similarity "
                            "channels (EMVOS's does; leave the switch out for the other papers)")
        self.pairs = self.matchers[0].SIMILARITY_PAIRS

    def collecting(self) -> ContextManager[None]:
        """A hook on the matcher for the duration only: nothing listens to validation or to a later stage."""
        return outputs_of(self.matchers, self.scores)

    def loss(self, masks: torch.Tensor) -> torch.Tensor:
        """Summed weighted cross-entropy of the pairs collected since the last call, for frames 1..L-1 of `masks`
        `[B, L, 1, H, W]` (one object per clip: the matcher ran once per frame)."""
        frames = masks.shape[1] - 1
        scores, self.scores = self.scores, []
        if len(scores) != frames:
            raise RuntimeError(f"matching supervision expected {frames} matcher outputs from a clip of {frames + 1} "
                               f"frames, got {len(scores)}")
        target = padded_targets(masks)
        total = masks.new_zeros((), dtype=torch.float32)
        for i, score in enumerate(scores):
            labels = cell_labels(target[:, i], score.shape[-2:])
            for background, foreground in self.pairs:
                total = total + F.cross_entropy(self.temperature * score[:, [background, foreground]], labels)
        return self.weight * total / frames

"""Deep supervision of the decoder's coarse masks: a scratch-training aid, off by default (`--deep-supervision`).

The BMVOS/EMVOS/TBD decoders pass the 1/16 stage on as a 2-channel (bg, fg) map at 1/8 (`decoder.deconv1`) and
the 1/8 stage as one at 1/4 (`decoder.deconv2`); only the full-resolution logits are supervised upstream. From a
random start the s8/s4 skip features alone learn where *objects* are long before the 1/16 stage learns to use
what tells the *target* apart (the matching scores and the previous mask, which only enter there), and the
narrow 2-channel path starves its gradient. Adding the cross-entropy of those two maps against the clip's masks
(downsampled: a cell is foreground when most of it is) supervises the 1/16 stage directly. The network, its
state_dict and inference are untouched; the hooks only listen during the training forward.

    supervision = DeepSupervision(model)
    with supervision.collecting():
        scores = forward_clip(model, imgs, masks)
    loss = clip_loss(scores, masks) + supervision.loss(masks)
"""
from __future__ import annotations

import contextlib
from typing import ContextManager, Iterator, List

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.modeling.padding import centered_padding
from common.runtime.errors import UserError

COARSE_MAPS = ("decoder.deconv1", "decoder.deconv2")  # module-name suffixes: the 1/8 and 1/4 (bg, fg) maps
STRIDE = 16  # the decoders' padding multiple
# Each coarse map's cross-entropy (mean over the clip's frames, like the full-resolution loss) counts this many
# times the full-resolution loss: the 1/16 stage has to learn first. Measured with 3 (README).
WEIGHT = 3.0


class DeepSupervision:
    """Collects the coarse maps of the training forwards run inside `collecting()` and turns them into a loss."""

    def __init__(self, model: nn.Module, weight: float = WEIGHT) -> None:
        self.weight = weight
        self.maps: List[torch.Tensor] = []
        self.modules = [m for name, m in model.named_modules() if name.endswith(COARSE_MAPS)]
        if len(self.modules) != len(COARSE_MAPS):
            raise UserError(f"--deep-supervision: this model has no {' and '.join(COARSE_MAPS)} (the coarse masks "
                            f"of the BMVOS/EMVOS/TBD decoders) to supervise")

    def collecting(self) -> ContextManager[None]:
        """Hooks on the coarse maps for the duration only: nothing listens to validation or to a later stage."""
        return outputs_of(self.modules, self.maps)

    def loss(self, masks: torch.Tensor) -> torch.Tensor:
        """Summed weighted cross-entropy of the maps collected since the last call, for frames 1..L-1 of `masks`
        `[B, L, 1, H, W]` (one object per clip: the decoder ran once per frame, deconv1 before deconv2)."""
        frames = masks.shape[1] - 1
        maps, self.maps = self.maps, []
        if len(maps) != len(COARSE_MAPS) * frames:
            raise RuntimeError(f"deep supervision expected {len(COARSE_MAPS) * frames} coarse maps from a clip of "
                               f"{frames + 1} frames, got {len(maps)}")
        target = padded_targets(masks)
        total = masks.new_zeros((), dtype=torch.float32)
        for i, coarse in enumerate(maps):
            total = total + F.cross_entropy(coarse, cell_labels(target[:, i // len(COARSE_MAPS)], coarse.shape[-2:]))
        return self.weight * total / frames


@contextlib.contextmanager
def outputs_of(modules: List[nn.Module], into: List[torch.Tensor]) -> Iterator[None]:
    """While inside, each forward of one of `modules` appends its output to `into`; no hook is left afterwards."""
    handles = [module.register_forward_hook(lambda _module, _inputs, output: into.append(output))
               for module in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def padded_targets(masks: torch.Tensor) -> torch.Tensor:
    """Frames 1..L-1 of the clip masks `[B, L, 1, H, W]` as float `[B, L-1, 1, H', W']`, padded as the decoders pad
    their frames: to a multiple of 16 around the centre, reflecting (the masks too)."""
    padding = centered_padding(masks.shape[-2], masks.shape[-1], STRIDE)
    padded = F.pad(masks[:, 1:].flatten(0, 1).float(), list(padding), mode="reflect")
    return padded.unflatten(0, (-1, masks.shape[1] - 1))


def cell_labels(target: torch.Tensor, size) -> torch.Tensor:
    """A padded target frame `[B, 1, H', W']` as int64 labels `[B, h, w]` at a coarser `size`: a cell is foreground
    when most of it is."""
    return (F.adaptive_avg_pool2d(target, size) > 0.5)[:, 0].long()

"""TBD: Tackling Background Distraction in Video Object Segmentation (Cho et al., ECCV 2022).

Read top-down like the paper's Fig. 2:

1. A frozen DenseNet-121 trunk gives s4/s8/s16 features; a 1x1 conv on s16 gives a unit-norm key.
2. Spatio-temporally diversified templates per object (bg and fg each):
   - fine   (one vector per 1/16 position): *global* from the given frame, *local* from the last frame;
   - coarse (one vector per object): *overall* (dynamic inertia = share of the mask mass seen so far),
     *short-term* and *long-term* (learned inertia).
3. Matching: fine templates give max-over-positions similarities (local ones weighted by the
   learnable distance-scoring function of the spatial distance between reference and query cell);
   coarse templates give plain cosine similarities -> 10 matching channels.
4. A CBAM decoder turns [s16, matching scores, previous mask] into 2 logits (bg, fg) per object;
   objects are merged by soft aggregation.

The arithmetic, its order and the state_dict keys follow the official code (`tbd.py`), so official
checkpoints load unchanged and outputs match it to float32 rounding (see tests/parity/test_tbd.py).
`load_model(weights, device)` builds it with the official checkpoint, another one or a seeded initialisation.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.hub.checkpoints import build_with_weights
from common.modeling.aggregation import aggregate_by_odds
from common.modeling.cbam_decoder import CBAMDecoder
from common.modeling.densenet import DenseNetEncoder
from common.modeling.given_masks import object_ids_in
from common.modeling.layers import Conv
from common.modeling.padding import centered_padding, pad_video, unpad
from tbd import TITLE
from tbd.checkpoints import OFFICIAL_WEIGHTS

STRIDE = 16
MATCHING_CHANNELS = 10  # global, local, overall, short-term, long-term; each bg and fg

Templates = Tuple[torch.Tensor, torch.Tensor]  # (background, foreground)


# ----------------------------------------------------------------------------------------------
# Spatial distance matrix (input of the distance-scoring function)
# ----------------------------------------------------------------------------------------------

_DIST_CACHE: Dict[Tuple[int, int, str], torch.Tensor] = {}


def grid_size(height: int, width: int) -> Tuple[int, int]:
    """The 1/16 grid of an (unpadded) frame; equals the padded size / 16."""
    return (height + STRIDE - 1) // STRIDE, (width + STRIDE - 1) // STRIDE


def distance_matrix(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """`[h*w, h*w]` Euclidean distances (in cells) between the 1/16 cells of an `height x width` frame.

    Cells are numbered row-major (y * w + x). Computed as the official builder does: squared
    offsets in float32, then `** 0.5`. Cached per (grid, device); treat the result as read-only.
    """
    h, w = grid_size(height, width)
    device = torch.device(device)
    key = (h, w, str(device))
    if key not in _DIST_CACHE:
        ys = torch.arange(h, device=device).repeat_interleave(w)
        xs = torch.arange(w, device=device).repeat(h)
        dy2 = (ys[:, None] - ys[None, :]).pow(2).float()
        dx2 = (xs[:, None] - xs[None, :]).pow(2).float()
        _DIST_CACHE[key] = (dx2 + dy2) ** 0.5
    return _DIST_CACHE[key]


# ----------------------------------------------------------------------------------------------
# Matching
# ----------------------------------------------------------------------------------------------

@dataclass
class ObjectState:
    """Everything TBD remembers about one object between frames (all `[B, ...]`)."""

    prev_seg_16: torch.Tensor  # [B, 2, h, w] previous soft mask at 1/16
    seg_sum: torch.Tensor  # [B, 2, 1] bg/fg mask mass accumulated over all frames so far
    global_: Templates  # fine, from the given frame: [B, h*w, C] each
    local: Templates  # fine, from the latest frame
    overall: Templates  # coarse, dynamic inertia: [B, 1, C] each
    short: Templates  # coarse, learned inertia (short-term)
    long: Templates  # coarse, learned inertia (long-term)


class Matcher(nn.Module):
    """Key embedding, template construction and the 10-channel matching score."""

    def __init__(self, in_channels: int = 1024, key_channels: int = 512) -> None:
        super().__init__()
        self.conv = Conv(in_channels, key_channels, 1, 1, 0)
        # Learned inertia logits of the short- and long-term templates (bg, fg): inertia = sigmoid(-x).
        self.short = nn.Parameter(torch.tensor([1.0, 1.0]))
        self.long = nn.Parameter(torch.tensor([-1.0, -1.0]))

    def get_key(self, s16: torch.Tensor) -> torch.Tensor:
        x = self.conv(s16)
        return x / x.norm(dim=1, keepdim=True)

    @staticmethod
    def fine_templates(key: torch.Tensor, seg_16: torch.Tensor) -> Templates:
        """The key at every position weighted by that position's bg / fg occupancy: `[B, h*w, C]`."""
        b, _, h, w = key.shape
        key = key.view(b, -1, h * w).transpose(1, 2)
        return key * seg_16[:, 0].view(b, h * w, 1), key * seg_16[:, 1].view(b, h * w, 1)

    @staticmethod
    def coarse_templates(fine: Templates) -> Templates:
        """Sum of the fine template over positions, clamped elementwise to >= 1e-7, L2-normalised."""
        out = []
        for template in fine:
            summed = template.sum(dim=1, keepdim=True).clamp(min=1e-7)
            out.append(summed / summed.norm(dim=2, keepdim=True))
        return out[0], out[1]

    def forward(self, key: torch.Tensor, sds: torch.Tensor, state: ObjectState) -> torch.Tensor:
        """`key` `[B, C, h, w]`, `sds` distance scores `[B*(h*w)^2, 1]` -> `[B, 10, h, w]`."""
        b, _, h, w = key.shape
        key = key.view(b, -1, h * w)
        sds = sds.view(b, h * w, h, w)  # [reference cell, query cell]

        def best_fine(template: torch.Tensor, weight: Optional[torch.Tensor]) -> torch.Tensor:
            score = torch.bmm(template, key).view(b, h * w, h, w)
            if weight is not None:
                score = score * weight
            return score.max(dim=1, keepdim=True)[0]

        def coarse(template: torch.Tensor) -> torch.Tensor:
            return torch.bmm(template, key).view(b, 1, h, w)

        scores = [
            best_fine(state.global_[0], None), best_fine(state.global_[1], None),
            best_fine(state.local[0], sds), best_fine(state.local[1], sds),
            coarse(state.overall[0]), coarse(state.overall[1]),
            coarse(state.short[0]), coarse(state.short[1]),
            coarse(state.long[0]), coarse(state.long[1]),
        ]
        return torch.cat(scores, dim=1)


def _blend(inertia_bg: torch.Tensor, inertia_fg: torch.Tensor, old: Templates, new: Templates) -> Templates:
    """inertia * old + (1 - inertia) * new, renormalised, for bg and fg."""
    out = []
    for inertia, o, n in ((inertia_bg, old[0], new[0]), (inertia_fg, old[1], new[1])):
        t = inertia * o + (1 - inertia) * n
        out.append(t / t.norm(dim=2, keepdim=True))
    return out[0], out[1]


# ----------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------

class VOS(nn.Module):
    """Encoder, matcher and decoder (the official `vos` sub-module)."""

    def __init__(self, imagenet_pretrained: bool = False) -> None:
        super().__init__()
        self.encoder = DenseNetEncoder(imagenet_pretrained)
        self.matcher = Matcher(1024, 512)
        self.decoder = CBAMDecoder(MATCHING_CHANNELS)

    def init_state(self, key: torch.Tensor, given_seg: torch.Tensor) -> ObjectState:
        """State of an object from the key of the frame it is given at and its `[B, 2, H, W]` one-hot mask."""
        seg_16 = F.avg_pool2d(given_seg, STRIDE)
        fine = self.matcher.fine_templates(key, seg_16)
        coarse = self.matcher.coarse_templates(fine)
        return ObjectState(prev_seg_16=seg_16, seg_sum=seg_16.sum(dim=[2, 3]).unsqueeze(2),
                           global_=fine, local=fine, overall=coarse, short=coarse, long=coarse)

    def update_state(self, key: torch.Tensor, pred_seg: torch.Tensor, state: ObjectState) -> ObjectState:
        """Fold the frame just segmented (`pred_seg` `[B, 2, H, W]` soft) into the object's templates."""
        seg_16 = F.avg_pool2d(pred_seg, STRIDE)
        mass = seg_16.sum(dim=[2, 3]).unsqueeze(2)
        seg_sum = state.seg_sum + mass
        local = self.matcher.fine_templates(key, seg_16)
        coarse = self.matcher.coarse_templates(local)

        # Overall template: dynamic inertia = share of all mask mass seen before this frame.
        dynamic = 1 - mass / seg_sum
        overall = _blend(dynamic[:, :1], dynamic[:, 1:], state.overall, coarse)
        # Short/long-term templates: learned inertia, written as the official 1 / (1 + exp(x)).
        short_inertia = 1 / (1 + torch.exp(self.matcher.short))
        short = _blend(short_inertia[0], short_inertia[1], state.short, coarse)
        long_inertia = 1 / (1 + torch.exp(self.matcher.long))
        long = _blend(long_inertia[0], long_inertia[1], state.long, coarse)
        return ObjectState(prev_seg_16=seg_16, seg_sum=seg_sum, global_=state.global_, local=local,
                           overall=overall, short=short, long=long)

    def forward(self, feats: Dict[str, torch.Tensor], key: torch.Tensor, sds: torch.Tensor,
                state: ObjectState) -> torch.Tensor:
        """One object's 2-channel logits at the padded full resolution."""
        matching_score = self.matcher(key, sds, state)
        return self.decoder(feats, matching_score, state.prev_seg_16)


def _one_hot(labels: torch.Tensor, object_id: int) -> torch.Tensor:
    """`[B, 1, H, W]` label map -> `[B, 2, H, W]` float (not object, object)."""
    return torch.cat([labels != object_id, labels == object_id], dim=1).float()


class TBD(nn.Module):
    """The full model: `vos` (encoder/matcher/decoder) and the distance-scoring function `dsf`.

    `forward(imgs, given_masks, dist=None, val_frame_ids=None)`:
      - `imgs` `[B, L, 3, H, W]` RGB in [0, 1];
      - `given_masks` list of length L: entry t is an int64 `[B, 1, H, W]` label map or None
        (frame 0 must be given);
      - `dist` `[B, h*w, h*w]` distance matrix of the unpadded size (built and cached when None);
      - `val_frame_ids` (B = 1 only) absolute frame numbers to output, the first one being frame 0's;
      - `state_masks` (training only, teacher forcing; upstream: None) `[B, L, 1, H, W]` binary masks: after frame
        i the object's state follows `state_masks[:, i]` instead of the prediction.
    B = 1 (inference) -> `{'masks': int64 [1, n_out, 1, H, W]}` (objects aggregated);
    B > 1 (training)  -> `{'scores': [B, L-1, 2, H, W]}` raw logits of the last object, frames 1..L-1.
    """

    def __init__(self, imagenet_pretrained: bool = False) -> None:
        super().__init__()
        self.vos = VOS(imagenet_pretrained)
        # Learnable distance-scoring function: distance (cells) -> weight in (0, 1).
        self.dsf = nn.Sequential(nn.Linear(1, 4), nn.ReLU(), nn.Linear(4, 1), nn.Sigmoid())

    def embed(self, img: torch.Tensor) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
        with torch.no_grad():  # the DenseNet trunk is never trained
            feats = self.vos.encoder(img)
        return feats, self.vos.matcher.get_key(feats["s16"])

    def forward(self, imgs: torch.Tensor, given_masks: Sequence[Optional[torch.Tensor]],
                dist: Optional[torch.Tensor] = None,
                val_frame_ids: Optional[Sequence[int]] = None,
                state_masks: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        b, length, _, height, width = imgs.shape
        if dist is None:
            dist = distance_matrix(height, width, imgs.device).unsqueeze(0).expand(b, -1, -1)
        padding = centered_padding(height, width, STRIDE)
        forced = [] if state_masks is None else list(state_masks.unbind(1))
        imgs, padded = pad_video(imgs, list(given_masks) + forced, padding)
        given_masks, forced = padded[:length], padded[length:]

        # Frame 0: one state per object given there.
        object_ids = object_ids_in(given_masks[0])
        feats, key = self.embed(imgs[:, 0])
        states = {k: self.vos.init_state(key, _one_hot(given_masks[0], k)) for k in object_ids}
        sds = self.dsf(dist.reshape(-1, 1))

        scores: List[torch.Tensor] = []
        masks: List[torch.Tensor] = [given_masks[0]]
        for i in range(1, length):
            feats, key = self.embed(imgs[:, i])
            pred_seg: Dict[int, torch.Tensor] = {}
            final_score = None
            for k in object_ids:
                final_score = self.vos(feats, key, sds, states[k])
                pred_seg[k] = torch.softmax(final_score, dim=1)

            # Objects given at this frame (YouTube-VOS): every id in the mask starts a new object.
            given = given_masks[i]
            if given is not None:
                new_ids = object_ids_in(given)
                for k in new_ids:
                    states[k] = self.vos.init_state(key, _one_hot(given, k))
                    pred_seg[k] = _one_hot(given, k)
                object_ids = object_ids + new_ids

            if b == 1:
                if object_ids:
                    pred_mask, pred_seg = aggregate_by_odds(pred_seg, object_ids)
                else:  # nothing to track yet
                    pred_mask = torch.zeros_like(given_masks[0])

            if i < length - 1:
                for k in object_ids:
                    seg = _one_hot(forced[i], 1) if forced else pred_seg[k]
                    states[k] = self.vos.update_state(key, seg, states[k])

            if b != 1:
                assert final_score is not None, "training clips need an object in frame 0"
                scores.append(final_score)
            elif given is not None:
                pred_mask[given != 0] = 0
                masks.append(pred_mask + given)
            elif val_frame_ids is None or val_frame_ids[0] + i in val_frame_ids:
                masks.append(pred_mask)

        if b != 1:
            return {"scores": unpad(torch.stack(scores, dim=1), padding)}
        return {"masks": unpad(torch.stack(masks, dim=1), padding)}


def load_model(weights: Optional[Union[str, os.PathLike]], device: torch.device) -> TBD:
    """`TBD` in eval mode on `device` with `weights`: a registry name or checkpoint file (strict load),
    "seeded" (a seeded initialisation, with a notice that the numbers are not the paper's), None = the official
    `tbd-davis`."""
    return build_with_weights(TBD, OFFICIAL_WEIGHTS if weights is None else weights, device, paper=TITLE)

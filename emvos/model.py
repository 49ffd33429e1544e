"""The EMVOS network: DenseNet-121 features, surjective + equalized matching, CBAM decoder.

For every object and every query frame, two key maps of the query are compared with two reference frames
(the object's initial frame: "global"; the previous frame: "local"):

* surjective matching -- cosine similarity of channel-normalised keys, shifted to [0, 1];
* equalized matching -- softmax of raw key dot products over the *query* positions, so every reference
  pixel spreads one unit of similarity over the query frame (no query pixel can be matched by all of them).

Each similarity volume is weighted by the reference's 1/16 background or foreground occupancy and max-pooled
over reference positions: 2 matchings x 2 references x (bg, fg) = 8 matching channels for the decoder.
Arithmetic and order of operations follow the official `emvos.py` (suhwan-cho/EMVOS@7e1e2003).
`load_model(weights, device)` builds the network with its weights (the official DAVIS ones by default).
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Union

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
from emvos import TITLE
from emvos.checkpoints import OFFICIAL_WEIGHTS

STRIDE = 16
MATCHING_CHANNELS = 8
State = Dict[str, torch.Tensor]


class Matcher(nn.Module):
    """Key projections of the 1/16 features and the 8-channel matching score."""

    # (bg, fg) channel pairs of the output that are cosine similarities in [0, 1], global and local: what
    # `--matching-supervision` (common.training.matching_supervision) trains against the mask
    SIMILARITY_PAIRS = ((0, 1), (2, 3))

    def __init__(self, in_c: int = 1024, out_c: int = 512) -> None:
        super().__init__()
        self.conv1 = Conv(in_c, out_c, 1, 1, 0)  # key of the surjective (cosine) matching
        self.conv2 = Conv(in_c, out_c, 1, 1, 0)  # key of the equalized (softmax) matching

    def get_norm_key(self, s16: torch.Tensor) -> torch.Tensor:
        key = self.conv1(s16)
        return key / key.norm(dim=1, keepdim=True)  # no epsilon, as upstream

    def get_key(self, s16: torch.Tensor) -> torch.Tensor:
        return self.conv2(s16)

    def forward(self, init_cossim: torch.Tensor, prev_cossim: torch.Tensor, init_softsim: torch.Tensor,
                prev_softsim: torch.Tensor, state: State) -> torch.Tensor:
        """Similarities are `[B, HW_ref, H, W]`; returns `[B, 8, H, W]`: global-cos (bg, fg),
        local-cos (bg, fg), global-equalized (bg, fg), local-equalized (bg, fg)."""
        pairs = ((init_cossim, state["init_seg_16"]), (prev_cossim, state["prev_seg_16"]),
                 (init_softsim, state["init_seg_16"]), (prev_softsim, state["prev_seg_16"]))
        return torch.cat([_masked_max(sim, seg) for sim, seg in pairs], dim=1)


def _masked_max(sim: torch.Tensor, seg_16: torch.Tensor) -> torch.Tensor:
    """For bg and fg: the best similarity to any reference position, weighted by its occupancy."""
    b, hw = sim.shape[:2]
    return torch.cat([(sim * seg_16[:, c].view(b, hw, 1, 1)).max(dim=1, keepdim=True)[0] for c in (0, 1)], dim=1)


def _flat_t(x: torch.Tensor) -> torch.Tensor:
    """`[B, C, H, W]` -> `[B, HW, C]` (reference positions as rows)."""
    b, c, h, w = x.shape
    return x.view(b, c, h * w).transpose(1, 2)


class VOS(nn.Module):
    """Encoder, matcher and decoder, plus the per-object state the matching needs."""

    def __init__(self, imagenet_pretrained: bool = False) -> None:
        super().__init__()
        self.encoder = DenseNetEncoder(imagenet_pretrained)
        self.matcher = Matcher(1024, 512)
        self.decoder = CBAMDecoder(MATCHING_CHANNELS)

    @staticmethod
    def init_state(norm_key: torch.Tensor, key: torch.Tensor, seg: torch.Tensor) -> State:
        """State of an object given on this frame: both references are this frame."""
        seg_16 = F.avg_pool2d(seg, STRIDE)
        return {"init_norm_key": norm_key, "prev_norm_key": norm_key, "init_key": key, "prev_key": key,
                "init_seg_16": seg_16, "prev_seg_16": seg_16}

    @staticmethod
    def update(norm_key: torch.Tensor, key: torch.Tensor, segs: Dict[int, torch.Tensor],
               states: Dict[int, State], object_ids: Sequence[int]) -> None:
        """The current frame becomes every object's "previous" reference."""
        for k in object_ids:
            states[k]["prev_norm_key"] = norm_key
            states[k]["prev_key"] = key
            states[k]["prev_seg_16"] = F.avg_pool2d(segs[k], STRIDE)

    def forward(self, feats: Dict[str, torch.Tensor], norm_key: torch.Tensor, key: torch.Tensor,
                states: Dict[int, State], object_ids: Sequence[int]) -> Dict[int, torch.Tensor]:
        """Raw (bg, fg) logits `[B, 2, H, W]` of each object on the query frame."""
        b, _, h, w = norm_key.shape
        query_norm_key = norm_key.view(b, -1, h * w)
        query_key = key.view(b, -1, h * w)
        scores = {}
        for k in object_ids:
            s = states[k]
            init_cossim = (torch.bmm(_flat_t(s["init_norm_key"]), query_norm_key).view(b, h * w, h, w) + 1) / 2
            prev_cossim = (torch.bmm(_flat_t(s["prev_norm_key"]), query_norm_key).view(b, h * w, h, w) + 1) / 2
            init_softsim = torch.softmax(torch.bmm(_flat_t(s["init_key"]), query_key), dim=2).view(b, h * w, h, w)
            prev_softsim = torch.softmax(torch.bmm(_flat_t(s["prev_key"]), query_key), dim=2).view(b, h * w, h, w)
            matching_score = self.matcher(init_cossim, prev_cossim, init_softsim, prev_softsim, s)
            scores[k] = self.decoder(feats, matching_score, s["prev_seg_16"])
        return scores


def _one_hot(mask: torch.Tensor, k: int) -> torch.Tensor:
    """`[B, 1, H, W]` label map -> float `[B, 2, H, W]` (not k, k)."""
    return torch.cat([mask != k, mask == k], dim=1).float()


class EMVOS(nn.Module):
    """`model(imgs, given_masks, val_frame_ids)` as upstream.

    - Inference (batch 1): `imgs` float `[1, T, 3, H, W]` in [0, 1]; `given_masks` a list of length T with an
      int64 `[1, 1, H, W]` label map where objects are given (frame 0 always; YouTube-VOS: also where objects
      enter) and None elsewhere; `val_frame_ids` None or the absolute numbers of the frames to output (the
      first is frame 0's number). Returns `{'masks': int64 [1, n_out, 1, H, W]}`.
    - Training (batch > 1): `given_masks` is the `[B, L', 1, H, W]` tensor of clip masks in {0, 1} (only its
      frame 0 is used). Returns `{'scores': [B, L-1, 2, H, W]}`, the raw logits of frames 1..L-1.
      `state_masks` (training only, teacher forcing; upstream: None) `[B, L, 1, H, W]` binary masks: after frame i
      the "previous" reference takes its mask from `state_masks[:, i]` instead of the prediction.
    The encoder always runs without gradients (it is frozen in the official training, too).
    """

    def __init__(self, imagenet_pretrained: bool = False) -> None:
        super().__init__()
        self.vos = VOS(imagenet_pretrained)

    def encode(self, img: torch.Tensor):
        with torch.no_grad():
            feats = self.vos.encoder(img)
        return feats, self.vos.matcher.get_norm_key(feats["s16"]), self.vos.matcher.get_key(feats["s16"])

    def forward(self, imgs: torch.Tensor, given_masks: Union[torch.Tensor, Sequence[Optional[torch.Tensor]]],
                val_frame_ids: Optional[Sequence[int]] = None,
                state_masks: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        b, length = imgs.shape[:2]
        training_batch = b != 1
        forced = [] if state_masks is None else list(state_masks.unbind(1))
        if training_batch:
            given_masks = [given_masks[:, 0]] + [None] * (length - 1)
        padding = centered_padding(imgs.shape[-2], imgs.shape[-1], STRIDE)
        imgs, padded = pad_video(imgs, list(given_masks) + forced, padding)
        given_masks, forced = padded[:length], padded[length:]

        # frame 0: every object gets its state from the given mask
        init_mask = given_masks[0]
        object_ids = object_ids_in(init_mask)
        feats, norm_key, key = self.encode(imgs[:, 0])
        states = {k: self.vos.init_state(norm_key, key, _one_hot(init_mask, k)) for k in object_ids}
        scores: List[torch.Tensor] = []
        masks: List[torch.Tensor] = [init_mask]

        for i in range(1, length):
            feats, norm_key, key = self.encode(imgs[:, i])
            logits = self.vos(feats, norm_key, key, states, object_ids)
            segs = {k: F.softmax(logits[k], dim=1) for k in object_ids}

            # objects given on this frame (YouTube-VOS: entering mid-video) start from their mask
            given = given_masks[i]
            if given is not None:
                new_ids = object_ids_in(given)
                for k in new_ids:
                    states[k] = self.vos.init_state(norm_key, key, _one_hot(given, k))
                    segs[k] = _one_hot(given, k)
                object_ids = object_ids + new_ids

            if not training_batch:
                pred_mask, segs = aggregate_by_odds(segs, object_ids)
            if i < length - 1:
                if forced:
                    segs = {k: _one_hot(forced[i], 1) for k in object_ids}
                self.vos.update(norm_key, key, segs, states, object_ids)

            if training_batch:
                scores.append(logits[1])
            elif given is not None:
                pred_mask[given != 0] = 0
                masks.append(pred_mask + given)
            elif val_frame_ids is None or val_frame_ids[0] + i in val_frame_ids:
                masks.append(pred_mask)

        if training_batch:
            return {"scores": unpad(torch.stack(scores, dim=1), padding)}
        return {"masks": unpad(torch.stack(masks, dim=1), padding)}


def load_model(weights: Optional[Union[str, os.PathLike]], device: torch.device) -> EMVOS:
    """`EMVOS` in eval mode on `device` with `weights`: a registry name or checkpoint file (strict load),
    "seeded" (a seeded initialisation, with a notice that the numbers are not the paper's), None = the official
    `emvos-coco_davis`."""
    return build_with_weights(EMVOS, OFFICIAL_WEIGHTS if weights is None else weights, device, paper=TITLE)

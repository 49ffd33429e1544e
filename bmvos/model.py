"""BMVOS: Pixel-Level Bijective Matching for Video Object Segmentation (Cho et al., WACV 2022).

Per query frame and per object (paper Fig. 2, top to bottom):

1. encoder: DenseNet-121 to denseblock3 gives s4/s8/s16 features; a 1x1 conv and an L2 norm give
   the cosine key at 1/16 scale;
2. matcher: the query key is compared with the key of the object's first frame (global matching)
   and with the key of the previous frame (bijective local matching, top-K per reference pixel);
3. mask embedder: the last three soft masks plus coordinate channels give a positional prior;
4. decoder: s16 + matching scores + mask features, refined with s8 and s4 -> 2-channel logits.

The objects' softmax maps are merged by soft aggregation (`aggregate_by_odds`), and each object's
recurrent state is updated with its *aggregated* soft mask. State-dict keys are those of the
official checkpoints (`vos.encoder...`, `vos.matcher...`, `vos.mask_embedder...`, `vos.decoder...`);
`load_model` builds it with a checkpoint. Fast mode (`--fast`) is `bmvos.fast.FastBMVOS`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from bmvos import TITLE
from bmvos.checkpoints import OFFICIAL_WEIGHTS
from common.hub.checkpoints import build_with_weights, is_seeded, load_into, load_state_dict
from common.modeling.aggregation import aggregate_by_odds
from common.modeling.densenet import DenseNetEncoder
from common.modeling.given_masks import object_ids_in
from common.modeling.layers import Conv, ConvRelu, DeConv
from common.modeling.padding import centered_padding, pad_video, unpad

STRIDE = 16
TOP_K = 4  # bijective matching keeps each reference pixel's 4 best query pixels
KEY_CHANNELS = 512

State = Dict[str, object]


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------

def two_channel_seg(labels: torch.Tensor, object_id: int) -> torch.Tensor:
    """Label map `[B, 1, H, W]` -> float `[B, 2, H, W]` (not-object, object)."""
    return torch.cat([labels != object_id, labels == object_id], dim=1).float()


def similarity(ref_key: torch.Tensor, query_key: torch.Tensor) -> torch.Tensor:
    """Cosine similarity mapped to [0, 1], laid out `[B, HW_ref, H, W]` (reference pixels row-major)."""
    b, _, h, w = query_key.shape
    ref = ref_key.view(b, -1, h * w).transpose(1, 2)
    return (torch.bmm(ref, query_key.view(b, -1, h * w)).view(b, h * w, h, w) + 1) / 2


def add_coordinates(x: torch.Tensor) -> torch.Tensor:
    """Append normalised row, column and radius channels (each in the [-1, 1] pixel grid)."""
    b, _, h, w = x.shape
    rows = torch.arange(h, dtype=x.dtype, device=x.device).view(1, 1, h, 1).expand(b, 1, h, w)
    cols = torch.arange(w, dtype=x.dtype, device=x.device).view(1, 1, 1, w).expand(b, 1, h, w)
    rows = rows / (h - 1) * 2 - 1
    cols = cols / (w - 1) * 2 - 1
    return torch.cat([x, rows, cols, (rows ** 2 + cols ** 2) ** 0.5], dim=1)


class BijectiveMatcher(nn.Module):
    """Cosine keys, global matching to the init frame and top-K local matching to the previous frame."""

    def __init__(self, in_channels: int = 1024, key_channels: int = KEY_CHANNELS, top_k: int = TOP_K) -> None:
        super().__init__()
        self.conv = Conv(in_channels, key_channels, 1, 1, 0)
        self.top_k = top_k

    def get_key(self, s16: torch.Tensor) -> torch.Tensor:
        x = self.conv(s16)
        return x / x.norm(dim=1, keepdim=True)  # no epsilon, as in the official code

    @staticmethod
    def _global(sim: torch.Tensor, ref_prob: torch.Tensor) -> torch.Tensor:
        """Best reference match for every query pixel, weighted by the reference probability."""
        b, hw, _, _ = sim.shape
        return (sim * ref_prob.reshape(b, hw, 1, 1)).max(dim=1, keepdim=True)[0]

    def _bijective(self, sim: torch.Tensor, ref_prob: torch.Tensor) -> torch.Tensor:
        """Like `_global`, but each reference pixel may only match its top-K query pixels.

        Entries below a reference row's K-th best score drop to that row's minimum (not to 0 or
        -inf); the strict `<` keeps entries tied with the K-th score.
        """
        b, hw, h, w = sim.shape
        score = (sim * ref_prob.reshape(b, hw, 1, 1)).view(b, hw, hw)
        cut = torch.topk(score, k=self.top_k, dim=2, sorted=True)[0][:, :, -1:]
        row_min = score.min(dim=2, keepdim=True)[0]
        score = torch.where(score < cut, row_min, score)
        return score.view(b, hw, h, w).max(dim=1, keepdim=True)[0]

    def forward(self, global_sim: torch.Tensor, local_sim: torch.Tensor, state: State) -> torch.Tensor:
        """Matching scores `[B, 4, H, W]`: (global bg, global fg, local bg, local fg)."""
        init_seg_16, prev_seg_16 = state["init_seg_16"], state["prev_seg_16"]
        return torch.cat([
            self._global(global_sim, init_seg_16[:, 0]),
            self._global(global_sim, init_seg_16[:, 1]),
            self._bijective(local_sim, prev_seg_16[:, 0]),
            self._bijective(local_sim, prev_seg_16[:, 1]),
        ], dim=1)


class MaskEmbedder(nn.Module):
    """Last three soft masks (newest first) + coordinates -> 256 features at 1/16 scale."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = ConvRelu(9, 32, 7, 2, 3)
        self.conv2 = ConvRelu(32, 64, 7, 2, 3)
        self.conv3 = ConvRelu(64, 128, 7, 2, 3)
        self.conv4 = Conv(128, 256, 7, 2, 3)

    def forward(self, seg_history: Sequence[torch.Tensor]) -> torch.Tensor:
        x = torch.cat([seg_history[-1], seg_history[-2], seg_history[-3]], dim=1)
        return self.conv4(self.conv3(self.conv2(self.conv1(add_coordinates(x)))))

    def forward_batched(self, seg_history: Sequence[torch.Tensor], coordinates: torch.Tensor) -> torch.Tensor:
        """`forward` for N objects at once (`[N, 2, H, W]` segs) with `add_coordinates`' channels
        `[1, 3, H, W]` given (fast mode caches them)."""
        n = seg_history[-1].shape[0]
        x = torch.cat([seg_history[-1], seg_history[-2], seg_history[-3], coordinates.expand(n, -1, -1, -1)], dim=1)
        return self.conv4(self.conv3(self.conv2(self.conv1(x))))


class Decoder(nn.Module):
    """Three-stage decoder (no attention blocks, unlike EMVOS/TBD); logits at full resolution."""

    def __init__(self, matching_channels: int = 4, mask_channels: int = 256) -> None:
        super().__init__()
        self.conv1 = ConvRelu(1024, 256, 1, 1, 0)
        self.blend1 = ConvRelu(256 + matching_channels + mask_channels, 256, 3, 1, 1)
        self.deconv1 = DeConv(256, 2, 4, 2, 1)
        self.conv2 = ConvRelu(512, 256, 1, 1, 0)
        self.blend2 = ConvRelu(256 + 2, 256, 3, 1, 1)
        self.deconv2 = DeConv(256, 2, 4, 2, 1)
        self.conv3 = ConvRelu(256, 256, 1, 1, 0)
        self.blend3 = ConvRelu(256 + 2, 256, 3, 1, 1)
        self.deconv3 = DeConv(256, 2, 6, 4, 1)

    def forward(self, feats: Dict[str, torch.Tensor], matching_score: torch.Tensor,
                mask_feats: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.conv1(feats["s16"]), matching_score, mask_feats], dim=1)
        s8 = self.deconv1(self.blend1(x))
        s4 = self.deconv2(self.blend2(torch.cat([self.conv2(feats["s8"]), s8], dim=1)))
        return self.deconv3(self.blend3(torch.cat([self.conv3(feats["s4"]), s4], dim=1)))


# --------------------------------------------------------------------------------------------
# One object, one frame
# --------------------------------------------------------------------------------------------

class VOS(nn.Module):
    """Per-object prediction and recurrent state.

    A state holds the object's init key and 1/16 init seg (fixed), the previous key and 1/16 seg,
    the last three full-resolution segs and their mask embedding.
    """

    def __init__(self, imagenet_pretrained: bool = False) -> None:
        super().__init__()
        self.encoder = DenseNetEncoder(imagenet_pretrained)
        self.matcher = BijectiveMatcher()
        self.mask_embedder = MaskEmbedder()
        self.decoder = Decoder()

    def init_state(self, key: torch.Tensor, seg: torch.Tensor) -> State:
        seg_16 = F.avg_pool2d(seg, STRIDE)
        history = [seg, seg, seg]
        return {"init_key": key, "init_seg_16": seg_16, "prev_key": key, "prev_seg_16": seg_16,
                "seg_history": history, "mask_feats": self.mask_embedder(history)}

    def update_state(self, key: torch.Tensor, seg: torch.Tensor, state: State) -> State:
        history = state["seg_history"][1:] + [seg]  # oldest dropped, newest last
        return {**state, "prev_key": key, "prev_seg_16": F.avg_pool2d(seg, STRIDE),
                "seg_history": history, "mask_feats": self.mask_embedder(history)}

    def forward(self, feats: Dict[str, torch.Tensor], key: torch.Tensor, state: State) -> torch.Tensor:
        """Decoder logits `[B, 2, H, W]` (bg, fg) of one object in the query frame."""
        global_sim = similarity(state["init_key"], key)
        local_sim = similarity(state["prev_key"], key)
        matching_score = self.matcher(global_sim, local_sim, state)
        return self.decoder(feats, matching_score, state["mask_feats"])


# --------------------------------------------------------------------------------------------
# Whole video
# --------------------------------------------------------------------------------------------

def keep_output(masks: List[torch.Tensor], frame_ids: List[int], i: int, labels: torch.Tensor,
                given: Optional[torch.Tensor], val_frame_ids: Optional[Sequence[int]]) -> None:
    """Append frame `i`'s labels if the benchmark outputs it, as the official loop does: every frame with a given
    mask (its given pixels win) and, of the others, those `val_frame_ids` lists (all when None)."""
    if given is not None:
        masks.append(labels.masked_fill(given != 0, 0) + given)
        frame_ids.append(i)
    elif val_frame_ids is None or val_frame_ids[0] + i in val_frame_ids:
        masks.append(labels)
        frame_ids.append(i)


@dataclass
class VideoOutput:
    masks: torch.Tensor   # long [B, L', 1, H, W], hard label maps at the input size
    frame_ids: List[int]  # input frame index of each of the L' entries


class BMVOS(nn.Module):
    def __init__(self, imagenet_pretrained: bool = False) -> None:
        super().__init__()
        self.vos = VOS(imagenet_pretrained)

    def _embed(self, frame: torch.Tensor):
        feats = self.vos.encoder(frame)
        return feats, self.vos.matcher.get_key(feats["s16"])

    def forward(self, imgs: torch.Tensor, given_masks: Sequence[Optional[torch.Tensor]],
                val_frame_ids: Optional[Sequence[int]] = None) -> VideoOutput:
        """Semi-supervised inference on one video.

        imgs: float `[1, L, 3, H, W]` RGB in [0, 1] (may live on the CPU; frames are moved to the
        model's device one at a time). given_masks: L entries, a long `[1, 1, H, W]` label map where
        objects are annotated (frame 0 must be) and None elsewhere. val_frame_ids: the official
        output selection: frame i is output iff `val_frame_ids[0] + i in val_frame_ids` (frames
        with a given mask always are); None outputs every frame.
        """
        device = next(self.parameters()).device
        _, length, _, height, width = imgs.shape
        padding = centered_padding(height, width, STRIDE)
        imgs, given_masks = pad_video(imgs, given_masks, padding)
        given_masks = [None if m is None else m.to(device) for m in given_masks]

        # first frame: one state per object, in ascending id order
        first = given_masks[0]
        object_ids = object_ids_in(first)
        feats, key = self._embed(imgs[:, 0].to(device))
        states = {k: self.vos.init_state(key, two_channel_seg(first, k)) for k in object_ids}
        masks, frame_ids = [first], [0]

        for i in range(1, length):
            feats, key = self._embed(imgs[:, i].to(device))
            segs = {k: torch.softmax(self.vos(feats, key, states[k]), dim=1) for k in object_ids}

            given = given_masks[i]
            if given is not None:
                # objects entering now start from their given mask and join the aggregation with it
                new_ids = object_ids_in(given)
                for k in new_ids:
                    states[k] = self.vos.init_state(key, two_channel_seg(given, k))
                    segs[k] = two_channel_seg(given, k)
                # as in the official code an id given again is appended again (and so updated twice)
                object_ids = object_ids + new_ids

            if object_ids:
                labels, segs = aggregate_by_odds(segs, list(dict.fromkeys(object_ids)))
            else:  # nothing to track (the official code would fail here)
                labels = torch.zeros_like(first)

            # recurrent state follows the aggregated soft masks, never the hard labels
            if i < length - 1:
                for k in object_ids:
                    states[k] = self.vos.update_state(key, segs[k], states[k])

            keep_output(masks, frame_ids, i, labels, given, val_frame_ids)

        return VideoOutput(unpad(torch.stack(masks, dim=1), padding), frame_ids)

    def forward_train(self, imgs: torch.Tensor, first_masks: torch.Tensor,
                      state_masks: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Training path (TBD's recipe, which the official BMVOS README defers to).

        imgs: float `[B, L, 3, H, W]` in [0, 1]; first_masks: `[B, 1, H, W]` binary (1 = object)
        mask of frame 0. Returns the decoder logits `[B, L-1, 2, H, W]` of frames 1..L-1. As in the
        official TBD/EMVOS training path: a single object, no aggregation, states updated with
        the softmax, and the encoder run without gradient (it is not trained). `state_masks` (teacher forcing,
        not upstream): `[B, L, 1, H, W]` binary masks the state follows after each frame instead of the softmax.
        """
        length = imgs.shape[1]
        padding = centered_padding(imgs.shape[-2], imgs.shape[-1], STRIDE)
        forced = [] if state_masks is None else list(state_masks.long().unbind(1))
        imgs, padded = pad_video(imgs, [first_masks.long()] + forced, padding)
        first, forced = padded[0], padded[1:]

        with torch.no_grad():
            feats = self.vos.encoder(imgs[:, 0])
        key = self.vos.matcher.get_key(feats["s16"])
        state = self.vos.init_state(key, two_channel_seg(first, 1))

        scores = []
        for i in range(1, length):
            with torch.no_grad():
                feats = self.vos.encoder(imgs[:, i])
            key = self.vos.matcher.get_key(feats["s16"])
            score = self.vos(feats, key, state)
            scores.append(score)
            if i < length - 1:
                seg = two_channel_seg(forced[i], 1) if forced else torch.softmax(score, dim=1)
                state = self.vos.update_state(key, seg, state)
        return unpad(torch.stack(scores, dim=1), padding)


def load_model(weights: Optional[Union[str, os.PathLike]], device: torch.device) -> BMVOS:
    """BMVOS in eval mode on `device` with `weights`: a registry name (fetched if needed), a checkpoint file,
    or `seeded` (the seeded initialisation, with its notice); None is `OFFICIAL_WEIGHTS`. Prints the file the
    weights came from (the weights cache for a registry name)."""
    if is_seeded(weights):
        return build_with_weights(BMVOS, weights, device, paper=TITLE)
    state = load_state_dict(OFFICIAL_WEIGHTS if weights is None else weights)
    model = load_into(BMVOS(), state)
    print(f"weights: {state.source}")
    return model.to(device).eval()

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
official checkpoints (`vos.encoder...`, `vos.matcher...`, `vos.mask_embedder...`, `vos.decoder...`).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.modeling.aggregation import aggregate_by_odds
from common.modeling.densenet import DenseNetEncoder
from common.modeling.given_masks import each_id_given_once, object_ids_in, two_channel_segs
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

            if given is not None:
                masks.append(labels.masked_fill(given != 0, 0) + given)
                frame_ids.append(i)
            elif val_frame_ids is None or val_frame_ids[0] + i in val_frame_ids:
                masks.append(labels)
                frame_ids.append(i)

        return VideoOutput(unpad(torch.stack(masks, dim=1), padding), frame_ids)

    def forward_train(self, imgs: torch.Tensor, first_masks: torch.Tensor) -> torch.Tensor:
        """Training path (TBD's recipe, which the official BMVOS README defers to).

        imgs: float `[B, L, 3, H, W]` in [0, 1]; first_masks: `[B, 1, H, W]` binary (1 = object)
        mask of frame 0. Returns the decoder logits `[B, L-1, 2, H, W]` of frames 1..L-1. As in the
        official TBD/EMVOS training path: a single object, no aggregation, states updated with
        the softmax, and the encoder run without gradient (it is not trained).
        """
        length = imgs.shape[1]
        padding = centered_padding(imgs.shape[-2], imgs.shape[-1], STRIDE)
        imgs, (first,) = pad_video(imgs, [first_masks.long()], padding)

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
                state = self.vos.update_state(key, torch.softmax(score, dim=1), state)
        return unpad(torch.stack(scores, dim=1), padding)


# --------------------------------------------------------------------------------------------
# Fast mode (`--fast`): the same network and weights, organised for throughput
# --------------------------------------------------------------------------------------------
#
# The faithful forward above follows the official code: per object it recomputes both similarity
# volumes, the decoder's projections of the frame features and a one-image mask embedding. Yet every
# object matches against the *same* previous-frame key, objects given on the same frame share their
# init key, and the decoder's 1x1 projections of s16/s8/s4 do not depend on the object. Fast mode
#
# * encodes each frame once (several frames per encoder call on CUDA) and computes its key once;
# * computes each similarity volume once per reference frame and runs the global and the top-K
#   bijective matching for all objects (bg and fg) in one batched call of the same matcher code;
# * runs the mask embedder and the decoder once per frame for all objects; the decoder's
#   object-independent projections, and their share of each blend convolution (by linearity), once
#   per frame; keeps the coordinate channels cached per size;
# * on CUDA, runs encoder, mask embedder and decoder under autocast (fp16, see `amp_dtype_for`),
#   while the key, the similarity volumes, the top-K matching, the softmax and the odds aggregation
#   stay in float32: top-K selection and the clamped-odds division are where rounding would change
#   decisions rather than values;
# * keeps the convolution stacks in `channels_last`; `compile=True` wraps them in `torch.compile`.
#
# In float32 the matching is bitwise the faithful one; the convolutions round differently (batched,
# split blends), by about 1e-6 relative. `tests/test_bmvos_fast.py` checks that fast and faithful masks agree (J&F within 0.1).

# Largest `[rows, HW_ref, HW_query]` float32 block of one batched matching call (256 MiB); more
# objects are matched in chunks of rows.
MATCHING_BLOCK_ELEMENTS = 64 * 2 ** 20


def amp_dtype_for(device: torch.device) -> Optional[torch.dtype]:
    """Fast mode's default autocast dtype on `device`.

    None (float32) on the CPU: the faithful arithmetic, and what the agreement tests run. fp16 on
    CUDA: the values that go through half precision (DenseNet features of some tens, soft masks in
    [0, 1], decoder logits of a few hundred at most) are far from fp16's range limit, and its 11-bit
    mantissa keeps the encoder features, hence the keys that top-K matching ranks, 8x closer to
    float32 than bf16's 8 bits. On the parity videos, whose fill_ weights leave many pixels at
    near-ties between objects, fp16 flipped 1.1% of the pixels against float32, bf16 4.9%.
    """
    return torch.float16 if device.type == "cuda" else None


def _blend(blend: ConvRelu, shared: torch.Tensor, per_object: torch.Tensor) -> torch.Tensor:
    """`blend(cat([shared expanded to N, per_object]))`, with the object-independent input channels
    convolved once: a convolution is linear in its input channels (zero padding included), so the
    result is the same up to float summation order."""
    conv, c = blend.conv, shared.shape[1]
    out = (F.conv2d(shared, conv.weight[:, :c], conv.bias, conv.stride, conv.padding)
           + F.conv2d(per_object, conv.weight[:, c:], None, conv.stride, conv.padding))
    return F.relu(out)


def _decode_batched(decoder: Decoder, feats: Dict[str, torch.Tensor], matching_score: torch.Tensor,
                    mask_feats: torch.Tensor) -> torch.Tensor:
    """`Decoder.forward` for the N objects of one frame. The 1x1 feature projections and their share of
    each blend convolution (256 of 516, 258 and 258 input channels) run once per frame; only the
    object-dependent channels run per object. Most of the faithful decoder's cost is the blend at 1/4
    scale, so extra objects are nearly free."""
    x = _blend(decoder.blend1, decoder.conv1(feats["s16"]), torch.cat([matching_score, mask_feats], dim=1))
    s8 = decoder.deconv1(x)
    s4 = decoder.deconv2(_blend(decoder.blend2, decoder.conv2(feats["s8"]), s8))
    return decoder.deconv3(_blend(decoder.blend3, decoder.conv3(feats["s4"]), s4))


class FastBMVOS(nn.Module):
    """Fast inference around a `BMVOS`: `fast(imgs, given_masks, val_frame_ids) -> VideoOutput`, batch 1.

    amp: autocast dtype for the convolution stacks ("auto": `amp_dtype_for(device)`; None: float32).
    channels_last converts `model` in place, so give fast mode its own model: the faithful numbers
    assume the default memory format. frame_chunk: frames per encoder call (default 4 on CUDA, 1 on
    the CPU, where batching frames gains nothing and costs memory).
    """

    def __init__(self, model: BMVOS, *, amp="auto", channels_last: bool = True, compile: bool = False,
                 frame_chunk: Optional[int] = None) -> None:
        super().__init__()
        self.model = model.eval()
        self.amp = amp
        self.channels_last = channels_last
        self.frame_chunk = frame_chunk
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        vos = self.model.vos
        # plain (or compiled) callables, not registered submodules: the state_dict stays `model.` + the
        # official keys, whether compiled or not
        wrap = torch.compile if compile else (lambda f: f)
        self._encoder = wrap(vos.encoder.__call__)
        self._mask_embedder = wrap(vos.mask_embedder.forward_batched)
        self._decoder = wrap(_decode_batched)
        self._coordinates: Dict[tuple, torch.Tensor] = {}

    # -- helpers -------------------------------------------------------------------------------
    def _autocast(self, device: torch.device):
        dtype = amp_dtype_for(device) if self.amp == "auto" else self.amp
        if dtype is None:
            return nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _encode(self, imgs: torch.Tensor, device: torch.device):
        """Per frame `(feats, key)` with batch 1: features in the autocast dtype, keys in float32."""
        chunk = self.frame_chunk or (4 if device.type == "cuda" else 1)
        for start in range(0, imgs.shape[1], chunk):
            frames = self._layout(imgs[0, start:start + chunk].to(device, non_blocking=True))
            with self._autocast(device):
                feats = self._encoder(frames)
            keys = self.model.vos.matcher.get_key(feats["s16"].float())
            for j in range(keys.shape[0]):
                yield {name: f[j:j + 1] for name, f in feats.items()}, keys[j:j + 1]

    def _coordinate_channels(self, like: torch.Tensor) -> torch.Tensor:
        """`add_coordinates`' three channels `[1, 3, H, W]`, computed once per size (and device)."""
        h, w = like.shape[-2:]
        tag = (h, w, like.dtype, like.device)
        if tag not in self._coordinates:
            self._coordinates[tag] = add_coordinates(like.new_zeros(1, 0, h, w))
        return self._coordinates[tag]

    def _embed_masks(self, history: List[torch.Tensor]) -> torch.Tensor:
        """Mask features `[N, 256, h, w]` of every object's last three soft masks (newest first)."""
        coords = self._coordinate_channels(history[-1])
        with self._autocast(history[-1].device):
            return self._mask_embedder(history, coords)

    def _matching(self, key: torch.Tensor, global_refs: List[tuple], prev_key: torch.Tensor,
                  prev_seg_16: torch.Tensor) -> torch.Tensor:
        """Matching scores `[N, 4, h, w]` of every object, in float32 and bitwise the faithful ones."""
        matcher = self.model.vos.matcher
        global_scores = [self._match(matcher._global, similarity(ref_key, key), seg_16)
                         for ref_key, seg_16 in global_refs]
        local = self._match(matcher._bijective, similarity(prev_key, key), prev_seg_16)
        return torch.cat([torch.cat(global_scores, dim=0), local], dim=1)

    @staticmethod
    def _match(rule, sim: torch.Tensor, seg_16: torch.Tensor) -> torch.Tensor:
        """Apply a matching rule for every (object, bg/fg) row of `seg_16` `[N, 2, h, w]` -> `[N, 2, h, w]`,
        one batched call per block of rows; the similarity volume `[1, HW, h, w]` is shared (expanded)."""
        n, _, h, w = seg_16.shape
        probs = seg_16.reshape(n * 2, h, w)
        rows = max(1, MATCHING_BLOCK_ELEMENTS // sim.numel())
        out = [rule(sim.expand(len(block), -1, -1, -1), block) for block in probs.split(rows)]
        return torch.cat(out, dim=0).view(n, 2, h, w)

    # -- one video -----------------------------------------------------------------------------
    def forward(self, imgs: torch.Tensor, given_masks: Sequence[Optional[torch.Tensor]],
                val_frame_ids: Optional[Sequence[int]] = None) -> VideoOutput:
        """As `BMVOS.forward` (same inputs, same outputs), all objects of a frame at once."""
        if imgs.shape[0] != 1:
            raise ValueError(f"fast mode segments one video at a time (batch 1); got a batch of {imgs.shape[0]}")
        if not each_id_given_once(given_masks, require_first_frame_objects=True):
            # nothing on frame 0, or an id given twice: the faithful forward handles it as upstream does
            return self.model(imgs, given_masks, val_frame_ids)
        device = next(self.model.parameters()).device
        length, height, width = imgs.shape[1], imgs.shape[-2], imgs.shape[-1]
        padding = centered_padding(height, width, STRIDE)
        imgs, given_masks = pad_video(imgs, given_masks, padding)
        given_masks = [None if m is None else m.to(device) for m in given_masks]
        frames = self._encode(imgs, device)

        # frame 0: every object's state, batched in ascending id order
        first = given_masks[0]
        object_ids = object_ids_in(first)
        _, key = next(frames)
        segs = two_channel_segs(first, object_ids)
        global_refs = [(key, F.avg_pool2d(segs, STRIDE))]  # (init key, init 1/16 segs) per start frame
        prev_key, prev_seg_16 = key, global_refs[0][1]
        history = [segs, segs, segs]  # oldest first
        mask_feats = self._embed_masks(history)
        masks, frame_ids = [first], [0]

        for i in range(1, length):
            feats, key = next(frames)
            matching = self._matching(key, global_refs, prev_key, prev_seg_16)
            with self._autocast(device):
                logits = self._decoder(self.model.vos.decoder, feats, matching, mask_feats)
            segs = torch.softmax(logits.float(), dim=1)

            given = given_masks[i]
            if given is not None:
                # objects entering now start from their given mask (history: it three times)
                new_ids = object_ids_in(given)
                if new_ids:
                    new_segs = two_channel_segs(given, new_ids)
                    global_refs.append((key, F.avg_pool2d(new_segs, STRIDE)))
                    segs = torch.cat([segs, new_segs], dim=0)
                    history = [torch.cat([h, new_segs], dim=0) for h in history]
                    object_ids = object_ids + new_ids

            labels, aggregated = aggregate_by_odds({k: segs[n:n + 1] for n, k in enumerate(object_ids)},
                                                   object_ids)
            if i < length - 1:
                segs = torch.cat([aggregated[k] for k in object_ids], dim=0)
                prev_key, prev_seg_16 = key, F.avg_pool2d(segs, STRIDE)
                history = history[1:] + [segs]
                mask_feats = self._embed_masks(history)

            if given is not None:
                masks.append(labels.masked_fill(given != 0, 0) + given)
                frame_ids.append(i)
            elif val_frame_ids is None or val_frame_ids[0] + i in val_frame_ids:
                masks.append(labels)
                frame_ids.append(i)

        return VideoOutput(unpad(torch.stack(masks, dim=1), padding), frame_ids)

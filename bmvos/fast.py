"""BMVOS fast mode (`--fast`): the same network and weights, organised for throughput.

The faithful forward (`BMVOS.forward`) follows the official code: per object it recomputes both similarity
volumes, the decoder's projections of the frame features and a one-image mask embedding. Yet every object
matches against the *same* previous-frame key, objects given on the same frame share their init key, and the
decoder's 1x1 projections of s16/s8/s4 do not depend on the object. Fast mode

* encodes each frame once (several frames per encoder call on CUDA) and computes its key once;
* computes each similarity volume once per reference frame and runs the global and the top-K
  bijective matching for all objects (bg and fg) in one batched call of the same matcher code;
* runs the mask embedder and the decoder once per frame for all objects; the decoder's
  object-independent projections, and their share of each blend convolution (by linearity), once
  per frame; keeps the coordinate channels cached per size;
* runs encoder, mask embedder and decoder under autocast (by default fp16 on CUDA, none on the CPU, see
  `default_autocast_dtype`; `--precision` chooses another), while the key, the similarity volumes, the top-K
  matching, the softmax and the odds aggregation stay in float32: top-K selection and the clamped-odds
  division are where rounding would change decisions rather than values;
* keeps the convolution stacks in `channels_last` (by default); `--compile` wraps them in `torch.compile`.

In float32 the matching is bitwise the faithful one; the convolutions round differently (batched,
split blends), by about 1e-6 relative. `tests/test_bmvos_fast.py` checks that fast and faithful masks agree
(J&F within 0.1). Inputs fast mode does not organise (no object on the first frame, an id given twice) go to
the faithful forward, which handles them as upstream does.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from bmvos.model import BMVOS, STRIDE, Decoder, VideoOutput, add_coordinates, keep_output, similarity
from common.inference.fast import FastOptions
from common.modeling.aggregation import aggregate_by_odds
from common.modeling.given_masks import each_id_given_once, object_ids_in, two_channel_segs
from common.modeling.layers import ConvRelu
from common.modeling.padding import centered_padding, pad_video, unpad
from common.runtime.device import device_of

# Largest `[rows, HW_ref, HW_query]` float32 block of one batched matching call (256 MiB); more
# objects are matched in chunks of rows.
MATCHING_BLOCK_ELEMENTS = 64 * 2 ** 20


def default_autocast_dtype(device: torch.device) -> Optional[torch.dtype]:
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

    options (`FastOptions`, default: all defaults): the autocast dtype of the convolution stacks ("auto":
    `default_autocast_dtype` the device), channels_last (default on) and compile. channels_last converts `model` in
    place, so give fast mode its own model: the faithful numbers assume the default memory format.
    frame_chunk: frames per encoder call (default 4 on CUDA, 1 on the CPU, where batching frames gains
    nothing and costs memory).
    """

    def __init__(self, model: BMVOS, options: Optional[FastOptions] = None, *,
                 frame_chunk: Optional[int] = None) -> None:
        super().__init__()
        self.model = model.eval()
        self.options = options or FastOptions()
        self.channels_last = self.options.use_channels_last(True)
        self.frame_chunk = frame_chunk
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        vos = self.model.vos
        # plain (or compiled) callables, not registered submodules: the state_dict stays `model.` + the
        # official keys, whether compiled or not
        wrap = torch.compile if self.options.compile else (lambda f: f)
        self._encoder = wrap(vos.encoder.__call__)
        self._mask_embedder = wrap(vos.mask_embedder.forward_batched)
        self._decoder = wrap(_decode_batched)
        self._coordinates: Dict[tuple, torch.Tensor] = {}

    # -- helpers -------------------------------------------------------------------------------
    def autocast_dtype(self, device: torch.device) -> Optional[torch.dtype]:
        """The convolution stacks' autocast dtype on `device` (None: float32): the chosen precision, or for
        "auto" `default_autocast_dtype(device)`."""
        return self.options.autocast_dtype(default_autocast_dtype(device))

    def _autocast(self, device: torch.device):
        dtype = self.autocast_dtype(device)
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
        device = device_of(self.model)
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

            keep_output(masks, frame_ids, i, labels, given, val_frame_ids)

        return VideoOutput(unpad(torch.stack(masks, dim=1), padding), frame_ids)

"""EMVOS fast inference (`--fast`): the same network and weights, organised for throughput.

The faithful forward (`EMVOS.forward`) follows the official code: for every object it recomputes the four
similarity volumes and runs the whole decoder on its own. Yet every object matches against the *same*
reference keys -- the previous frame is every object's local reference, and objects given on the same frame
share their global one -- and the decoder's projections of the s16/s8/s4 features do not depend on the object.
Fast mode therefore

* encodes each frame once (optionally several frames per encoder call) and projects its keys once;
* computes each similarity volume once per reference frame instead of once per object;
* takes the occupancy-weighted max over reference positions for all objects (bg and fg) in one reduction;
* runs the decoder's object-independent 1x1 projections once per frame and the rest batched over objects;
* on CUDA, runs the encoder (most of the work: DenseNet-121 at full resolution) under fp16 autocast
  (`--precision auto`; `bf16`/`fp16` choose, `fp32` turns it off), while the keys, both matchings, the
  decoder and the aggregation stay in float32 whatever the precision. Measured on the parity video
  (CPU autocast, same dtypes): fp16 encoder alone changes 0.2% of the mask pixels, bf16 encoder 1.8%, while
  a half-precision decoder changes 2-20% -- its logits reach ~70 with near ties and the aggregation divides
  clamped odds; the equalized matching is a softmax of raw key products in the tens, nearly saturated, so
  half-precision keys would move which query pixel each reference pixel picks;
* keeps the convolution stacks in `channels_last`, and with `--compile` `torch.compile`s encoder and decoder.

`FastEMVOS(model, FastOptions(...))` takes the shared options of `common.inference.fast`.

In float32 the per-element arithmetic is the faithful one (the products and maxima of the matching are
bitwise equal); only the batched convolutions may round differently. `tests/test_emvos_fast.py` checks
that the masks agree with faithful mode (J&F within 0.1 on the parity videos and the synthetic sample).
Inputs fast mode does not organise (no object on the first frame, an object given twice) fall back to the
faithful forward, which handles them as upstream does.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.inference.fast import FastOptions
from common.modeling.aggregation import aggregate_by_odds
from common.modeling.cbam_decoder import CBAMDecoder
from common.modeling.given_masks import each_id_given_once, object_ids_in, two_channel_segs
from common.modeling.padding import centered_padding, pad_video, unpad
from emvos.model import EMVOS, STRIDE

Feats = Dict[str, torch.Tensor]

# Upper bound on the elements of one `[objects x 2, HW_ref, HW_query]` product of the masked max (float32:
# 256 MiB); more objects are reduced in chunks.
MASKED_MAX_ELEMENTS = 64 * 2 ** 20


@dataclass
class _Reference:
    """Keys of one reference frame and the 1/16 (bg, fg) occupancy of the objects matched against it."""
    norm_key: torch.Tensor  # [1, C, h, w], channel-normalised (surjective matching)
    key: torch.Tensor       # [1, C, h, w] (equalized matching)
    seg_16: torch.Tensor    # [N, 2, h, w]


class _Stages(NamedTuple):
    """The encoder and the batched decoder, compiled or not. A plain tuple, outside the module tree: the
    wrapper's parameters and state_dict stay the model's (under `model.`), with no compiled duplicates."""
    encode: Callable[[torch.Tensor], Feats]
    decode: Callable[..., torch.Tensor]


def default_autocast_dtype(device: torch.device) -> Optional[torch.dtype]:
    """EMVOS's verified encoder autocast dtype on `device` (`--precision auto`): fp16 on CUDA (8x finer than
    bf16; DenseNet activations stay far below its range), none on the CPU (float32 is as fast there without
    AMX)."""
    return torch.float16 if device.type == "cuda" else None


class FastEMVOS(nn.Module):
    """Drop-in for `model(imgs, given_masks, val_frame_ids)` at inference (batch 1); returns `{'masks': ...}`.

    `options.precision`: autocast dtype of the encoder ("auto": `default_autocast_dtype(device)`; "fp32": none).
    `options.channels_last` (default on) converts `model` in place, so give fast mode its own model (faithful
    mode's numbers assume the default memory format). `options.compile` compiles encoder and decoder.
    `frame_chunk`: frames per encoder call (default 4 on CUDA, 1 on CPU).
    """

    def __init__(self, model: EMVOS, options: Optional[FastOptions] = None, *,
                 frame_chunk: Optional[int] = None) -> None:
        super().__init__()
        self.options = options or FastOptions()
        self.model = model
        self.channels_last = self.options.use_channels_last(True)
        self.frame_chunk = frame_chunk
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self._stages = _Stages(self.model.vos.encoder, _decode_batched)
        if self.options.compile:
            self._stages = _Stages(torch.compile(self.model.vos.encoder, dynamic=True),
                                   torch.compile(_decode_batched, dynamic=True))
        self.eval()

    # ----------------------------------------------------------------------------------------------------
    def _autocast(self, device: torch.device):
        dtype = self.options.autocast_dtype(default_autocast_dtype(device))
        if dtype is None:
            return nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype)

    def _encode(self, frames: torch.Tensor) -> Tuple[Feats, torch.Tensor, torch.Tensor]:
        """`[K, 3, H, W]` frames -> float32 features and keys (norm_key, key)."""
        if self.channels_last:
            frames = frames.contiguous(memory_format=torch.channels_last)
        with self._autocast(frames.device):
            feats = self._stages.encode(frames)
        feats = {name: f.float() for name, f in feats.items()}
        matcher = self.model.vos.matcher
        return feats, matcher.get_norm_key(feats["s16"]), matcher.get_key(feats["s16"])

    def _frames(self, imgs: torch.Tensor) -> Iterator[Tuple[Feats, torch.Tensor, torch.Tensor]]:
        """Per frame `(feats, norm_key, key)` with batch 1, encoding `frame_chunk` frames per call."""
        chunk = self.frame_chunk or (4 if imgs.device.type == "cuda" else 1)
        for start in range(0, imgs.shape[1], chunk):
            feats, norm_key, key = self._encode(imgs[0, start:start + chunk])
            for j in range(norm_key.shape[0]):
                yield {n: f[j:j + 1] for n, f in feats.items()}, norm_key[j:j + 1], key[j:j + 1]

    # ----------------------------------------------------------------------------------------------------
    def forward(self, imgs: torch.Tensor, given_masks: Sequence[Optional[torch.Tensor]],
                 val_frame_ids: Optional[Sequence[int]] = None) -> Dict[str, torch.Tensor]:
        if imgs.shape[0] != 1:
            raise ValueError(f"fast mode segments one video at a time (batch 1); got a batch of {imgs.shape[0]}")
        if not each_id_given_once(given_masks, require_first_frame_objects=True):
            return self.model(imgs, given_masks, val_frame_ids)
        length = imgs.shape[1]
        padding = centered_padding(imgs.shape[-2], imgs.shape[-1], STRIDE)
        imgs, given_masks = pad_video(imgs, given_masks, padding)
        frames = self._frames(imgs)

        # frame 0: the given objects, all with frame 0 as global and local reference
        init_mask = given_masks[0]
        object_ids = object_ids_in(init_mask)
        feats, norm_key, key = next(frames)
        seg_16 = F.avg_pool2d(two_channel_segs(init_mask, object_ids), STRIDE)
        global_refs = [_Reference(norm_key, key, seg_16)]
        local_ref = _Reference(norm_key, key, seg_16)
        masks: List[torch.Tensor] = [init_mask]

        for i in range(1, length):
            feats, norm_key, key = next(frames)
            matching = _matching_scores(norm_key, key, global_refs, local_ref)
            logits = self._stages.decode(self.model.vos.decoder, feats, matching, local_ref.seg_16)
            segs = F.softmax(logits, dim=1)  # [N, 2, H, W]

            # objects given on this frame (YouTube-VOS: entering mid-video) start from their mask
            given = given_masks[i]
            if given is not None:
                new_ids = object_ids_in(given)
                new_segs = two_channel_segs(given, new_ids)
                global_refs.append(_Reference(norm_key, key, F.avg_pool2d(new_segs, STRIDE)))
                segs = torch.cat([segs, new_segs], dim=0)
                object_ids = object_ids + new_ids

            pred_mask, aggregated = aggregate_by_odds({k: segs[j:j + 1] for j, k in enumerate(object_ids)},
                                                      object_ids)
            if i < length - 1:
                segs = torch.cat([aggregated[k] for k in object_ids], dim=0)
                local_ref = _Reference(norm_key, key, F.avg_pool2d(segs, STRIDE))

            if given is not None:
                pred_mask[given != 0] = 0
                masks.append(pred_mask + given)
            elif val_frame_ids is None or val_frame_ids[0] + i in val_frame_ids:
                masks.append(pred_mask)
        return {"masks": unpad(torch.stack(masks, dim=1), padding)}


def _flat(x: torch.Tensor) -> torch.Tensor:
    """`[1, C, h, w]` -> `[C, hw]`."""
    return x.reshape(x.shape[1], -1)


def _masked_max(sim: torch.Tensor, seg_16: torch.Tensor) -> torch.Tensor:
    """`sim` `[HW_ref, HW_query]`, `seg_16` `[N, 2, h, w]` -> `[N, 2, HW_query]`: for every object's bg and fg,
    the best similarity to any reference position weighted by its occupancy (the faithful products and maxima)."""
    n, hw_ref = seg_16.shape[0], sim.shape[0]
    weights = seg_16.reshape(n * 2, hw_ref, 1)
    rows = max(1, MASKED_MAX_ELEMENTS // sim.numel())
    out = torch.cat([(sim * weights[s:s + rows]).amax(dim=1) for s in range(0, n * 2, rows)], dim=0)
    return out.view(n, 2, -1)


def _matching_scores(norm_key: torch.Tensor, key: torch.Tensor, global_refs: List[_Reference],
                     local_ref: _Reference) -> torch.Tensor:
    """The 8 matching channels of every object `[N, 8, h, w]` in the faithful order: global-cos, local-cos,
    global-equalized, local-equalized, each (bg, fg). Similarity volumes once per reference frame."""
    h, w = norm_key.shape[-2:]
    query_norm_key, query_key = _flat(norm_key), _flat(key)

    def volumes(ref: _Reference) -> Tuple[torch.Tensor, torch.Tensor]:
        cossim = (torch.mm(_flat(ref.norm_key).t(), query_norm_key) + 1) / 2
        softsim = torch.softmax(torch.mm(_flat(ref.key).t(), query_key), dim=1)  # over the query positions
        return _masked_max(cossim, ref.seg_16), _masked_max(softsim, ref.seg_16)

    global_scores = [volumes(ref) for ref in global_refs]
    global_cos = torch.cat([c for c, _ in global_scores], dim=0)
    global_soft = torch.cat([s for _, s in global_scores], dim=0)
    local_cos, local_soft = volumes(local_ref)
    n = global_cos.shape[0]
    return torch.cat([global_cos, local_cos, global_soft, local_soft], dim=1).view(n, 8, h, w)


def _decode_batched(decoder: CBAMDecoder, feats: Feats, matching: torch.Tensor,
                    prev_seg_16: torch.Tensor) -> torch.Tensor:
    """`CBAMDecoder.forward` for N objects of one frame: the feature projections once, the rest batched."""
    n = matching.shape[0]

    def shared(conv, x: torch.Tensor) -> torch.Tensor:
        return conv(x).expand(n, -1, -1, -1)

    x = torch.cat([shared(decoder.conv1, feats["s16"]), matching, prev_seg_16], dim=1)
    s8 = decoder.deconv1(decoder.cbam1(decoder.blend1(x)))
    s4 = decoder.deconv2(decoder.cbam2(decoder.blend2(torch.cat([shared(decoder.conv2, feats["s8"]), s8], dim=1))))
    return decoder.deconv3(decoder.cbam3(decoder.blend3(torch.cat([shared(decoder.conv3, feats["s4"]), s4],
                                                                  dim=1))))

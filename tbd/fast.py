"""Fast TBD inference (`--fast`): the same model and weights, reorganised for speed.

Faithful mode (`tbd.model.TBD`) decodes every object on its own, exactly as the official code does.
`FastTBD` computes the same quantities with less work; results agree up to float rounding (and the
half-precision noise of autocast on CUDA), checked by tests/test_tbd_fast.py:

- All objects of a frame go through the matcher and the decoder as one batch.
- Work that does not depend on the object is done once per frame instead of once per object:
  * matching: every fine template is `occupancy * key` of one frame, so `template . query key` is
    `occupancy * (key . query key)`. One key-similarity matrix per reference frame (the previous frame
    for the local templates, each given frame for the global ones) replaces 4 matrix products per object;
    the distance scores are folded into the local similarity once;
  * decoder: each `blend` conv sees [shared features (256 ch), per-object maps (12 or 2 ch)]; being linear,
    it splits into a shared conv on the 256 shared channels (once per frame) plus a small per-object conv.
- The encoder runs on several frames per call on CUDA (it does not depend on the predictions).
- On CUDA: the encoder under fp16 autocast, channels_last tensors (contiguous on the CPU; the reasons are at
  `FastTBD.__init__`). The key, the matching scores (max over reference cells of similarities), the distance
  scores, the template updates and the soft aggregation stay in float32: they compare values that differ in
  the 4th digit and clamp at 1e-7. The decoder stays in float32 by default too (`autocast_decoder=True` /
  `--autocast-decoder` puts it under the same autocast).
- Optional `torch.compile` of the encoder and the per-object decoder head.

Only inference (batch size 1) has a fast path; training uses the faithful model.
"""
from __future__ import annotations

import copy
from contextlib import nullcontext
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.inference.fast import FastOptions
from common.modeling.given_masks import each_id_given_once, object_ids_in, two_channel_segs
from common.modeling.padding import centered_padding, pad_video, unpad
from common.runtime.device import device_of
from tbd.model import STRIDE, TBD, distance_matrix

EPS = 1e-7  # the soft-aggregation clamp (common.modeling.aggregation)
MATCH_CHUNK_ELEMENTS = 1 << 26  # bounds the [rows, ref, query] temporary of the max-over-reference matching


class _Objects:
    """The state of every tracked object as stacked `[N, ...]` tensors (rows in object-id order)."""

    def __init__(self, height: int, width: int, key_channels: int, device: torch.device) -> None:
        self.ids: List[int] = []
        hw = height * width
        self.shape16 = (height, width)
        self.prev_seg_16 = torch.zeros(0, 2, height, width, device=device)
        self.seg_sum = torch.zeros(0, 2, 1, device=device)
        self.global_occ = torch.zeros(0, 2, hw, device=device)  # occupancy at the given frame
        # (key [C, hw] of a frame objects were given at, first row, number of rows): rows are appended per frame
        self.given: List[Tuple[torch.Tensor, int, int]] = []
        self.lookup = torch.zeros(1, dtype=torch.long, device=device)  # [background, ids...] for the label map
        self.local_occ = torch.zeros(0, 2, hw, device=device)  # occupancy at the previous frame
        self.coarse = torch.zeros(0, 6, key_channels, device=device)  # overall, short, long (bg, fg each)

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, key: torch.Tensor, labels: torch.Tensor, ids: List[int]) -> None:
        """Start objects `ids` from the frame's key `[C, hw]` and label map `[1, 1, H, W]`."""
        if not ids:
            return
        one_hot = torch.cat([torch.cat([labels != k, labels == k], dim=1) for k in ids]).float()
        seg_16 = F.avg_pool2d(one_hot, STRIDE)
        occ = seg_16.flatten(2)
        coarse = _coarse(occ, key)
        self.given.append((key, len(self.ids), len(ids)))
        self.ids += ids
        self.lookup = torch.tensor([0] + self.ids, device=key.device)
        self.prev_seg_16 = torch.cat([self.prev_seg_16, seg_16])
        self.seg_sum = torch.cat([self.seg_sum, occ.sum(dim=2, keepdim=True)])
        self.global_occ = torch.cat([self.global_occ, occ])
        self.local_occ = torch.cat([self.local_occ, occ])
        self.coarse = torch.cat([self.coarse, coarse.repeat(1, 3, 1)])

    def update(self, key: torch.Tensor, probs: torch.Tensor, short_inertia: torch.Tensor,
               long_inertia: torch.Tensor) -> None:
        """Fold the frame just segmented (aggregated `[N, 2, H, W]` probabilities) into every template."""
        seg_16 = F.avg_pool2d(probs, STRIDE)
        occ = seg_16.flatten(2)
        mass = occ.sum(dim=2, keepdim=True)
        self.seg_sum = self.seg_sum + mass
        coarse = _coarse(occ, key)
        dynamic = 1 - mass / self.seg_sum  # overall template: share of the mask mass seen before this frame
        inertia = torch.cat([dynamic, short_inertia.view(1, 2, 1).expand_as(dynamic),
                             long_inertia.view(1, 2, 1).expand_as(dynamic)], dim=1)  # [N, 6, 1]
        blended = inertia * self.coarse + (1 - inertia) * coarse.repeat(1, 3, 1)
        self.coarse = blended / blended.norm(dim=2, keepdim=True)
        self.prev_seg_16 = seg_16
        self.local_occ = occ


def _coarse(occ: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Coarse templates `[N, 2, C]`: occupancy-weighted key sums, clamped to >= 1e-7, L2-normalised."""
    summed = torch.matmul(occ, key.t()).clamp(min=1e-7)
    return summed / summed.norm(dim=2, keepdim=True)


def _max_over_reference(occ: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
    """`max_ref occ[n, c, ref] * similarity[ref, query]` -> `[N, 2, hw]` (chunked to bound memory)."""
    rows = occ.flatten(0, 1)  # [2N, hw]
    step = max(1, MATCH_CHUNK_ELEMENTS // similarity.numel())
    out = [(chunk.unsqueeze(2) * similarity).amax(dim=1) for chunk in rows.split(step)]
    return torch.cat(out).view(occ.shape)


def _aggregate(probs: torch.Tensor, lookup: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Soft aggregation by odds of `[N, 2, H, W]` probabilities (as common.modeling.aggregation).

    `lookup` maps [background, object rows...] to label ids. Returns the label map `[1, 1, H, W]` (ties go
    to the first of [background, objects in order], as torch.argmax) and the aggregated `[N, 2, H, W]`
    soft masks."""
    bg = probs[:, 0].amin(dim=0, keepdim=True)  # [1, H, W]
    odds = torch.cat([bg.clamp(EPS, 1 - EPS) / (1 - bg).clamp(EPS, 1 - EPS),
                      probs[:, 1].clamp(EPS, 1 - EPS) / probs[:, 0].clamp(EPS, 1 - EPS)])
    q = odds / odds.sum(dim=0, keepdim=True)
    winner = q.argmax(dim=0)
    labels = lookup[winner][None, None]
    fg = q[1:, None]
    return labels, torch.cat([1 - fg, fg], dim=1)


def default_autocast_dtype(device: torch.device) -> Optional[torch.dtype]:
    """TBD's verified autocast dtype on `device` (`--precision auto`). CUDA: fp16 rather than bf16, 3 more mantissa
    bits, and TBD's activations (|x| < 1e3) cannot overflow it. The decoder stays in float32 unless
    `autocast_decoder`: its logits reach |x| ~ 80, and their fp16 rounding (~0.1) flips pixels where two objects'
    probabilities meet the aggregation's 1e-7 clamp (tests/test_tbd_fast.py). CPU: float32; bf16 autocast is
    slower than float32 on most CPUs."""
    return torch.float16 if device.type == "cuda" else None


class FastTBD(nn.Module):
    """Batched, mixed-precision inference with the weights of a `TBD` model (which it copies, so the
    original stays in its faithful layout). Call it like `TBD` with batch size 1:
    `fast(imgs, given_masks, dist=None, val_frame_ids=None) -> {'masks': int64 [1, n_out, 1, H, W]}`.

    `options` (`FastOptions`): the encoder's autocast dtype (auto: fp16 on CUDA, float32 on the CPU),
    channels_last (auto: on CUDA only) and compile. `encoder_batch`: frames per encoder call (default 4 on
    CUDA, 1 on the CPU). `autocast_decoder`: the decoder convolutions under the encoder's autocast too.
    """

    def __init__(self, model: TBD, options: Optional[FastOptions] = None, *, encoder_batch: Optional[int] = None,
                 autocast_decoder: bool = False) -> None:
        super().__init__()
        options = options or FastOptions()
        cuda = device_of(model).type == "cuda"
        # CPU: the contiguous layout. channels_last, though ~13% faster there, reorders oneDNN's sums enough to
        # move J&F on the small parity video by 0.11 points (0.05% of its pixels), over the 0.1 agreement bound.
        self.amp_dtype = options.autocast_dtype(default_autocast_dtype(device_of(model)))  # None = float32
        self.channels_last = options.use_channels_last(cuda)
        self.encoder_batch = encoder_batch or (4 if cuda else 1)
        self.autocast_decoder = autocast_decoder
        self.model = copy.deepcopy(model).eval()
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        decoder = self.model.vos.decoder
        # Split each blend conv into its shared (256 feature channels) and per-object input channels.
        self._blend_split = []
        for blend in (decoder.blend1, decoder.blend2, decoder.blend3):
            conv = blend.conv
            weight = conv.weight.detach()
            self._blend_split.append((weight[:, :256].contiguous(memory_format=self._memory_format),
                                      weight[:, 256:].contiguous(memory_format=self._memory_format),
                                      conv.bias.detach(), conv.padding))
        # plain (or compiled) callables, not registered submodules: the state_dict stays `model.` + the
        # official keys, whether compiled or not
        wrap = (lambda f: torch.compile(f, dynamic=True)) if options.compile else (lambda f: f)
        self._encode = wrap(self.model.vos.encoder.__call__)
        self._head = wrap(self._decode_objects)
        self._sds_cache: Dict[Tuple[int, int], torch.Tensor] = {}

    @property
    def _memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def _autocast(self, device: torch.device, decoder: bool = False):
        if self.amp_dtype is None or (decoder and not self.autocast_decoder):
            return nullcontext()
        return torch.autocast(device.type, dtype=self.amp_dtype)

    # ------------------------------------------------------------------------------------------
    # Per-frame pieces
    # ------------------------------------------------------------------------------------------

    def _frames(self, imgs: torch.Tensor) -> Iterator[Tuple[Dict[str, torch.Tensor], torch.Tensor]]:
        """(features, fp32 key `[C, hw]`) of every frame of `[T, 3, H, W]`, encoding a few frames per call."""
        matcher, decoder = self.model.vos.matcher, self.model.vos.decoder
        for start in range(0, imgs.shape[0], self.encoder_batch):
            chunk = imgs[start:start + self.encoder_batch].contiguous(memory_format=self._memory_format)
            with self._autocast(chunk.device):
                feats = self._encode(chunk)
            if not self.autocast_decoder:
                feats = {k: v.float() for k, v in feats.items()}
            with self._autocast(chunk.device, decoder=True):
                # The object-independent halves of the decoder: projections and the shared blend convs.
                shared = {}
                for (name, proj), (w_shared, _, bias, padding) in zip(
                        (("s16", decoder.conv1), ("s8", decoder.conv2), ("s4", decoder.conv3)), self._blend_split):
                    shared[name] = F.conv2d(proj(feats[name]), w_shared, bias, padding=padding)
            keys = matcher.get_key(feats["s16"].float())  # unit-norm keys in fp32 (they feed the matching)
            for t in range(chunk.shape[0]):
                yield {k: v[t:t + 1] for k, v in shared.items()}, keys[t].flatten(1)

    def _distance_scores(self, dist: torch.Tensor) -> torch.Tensor:
        """dsf(distance) `[ref, query]`, cached per grid (the weights are frozen in inference)."""
        key = tuple(dist.shape[-2:])
        if key not in self._sds_cache:
            hw = dist.shape[-1]
            self._sds_cache = {key: self.model.dsf(dist.reshape(-1, 1).float()).view(hw, hw)}
        return self._sds_cache[key]

    def _matching(self, key: torch.Tensor, prev_key: torch.Tensor, sds: torch.Tensor,
                  objects: _Objects) -> torch.Tensor:
        """The 10 matching channels of every object `[N, 10, h, w]` (float32)."""
        global_scores = torch.cat([_max_over_reference(objects.global_occ[first:first + count], given_key.t() @ key)
                                   for given_key, first, count in objects.given])
        local_similarity = (prev_key.t() @ key) * sds
        local_scores = _max_over_reference(objects.local_occ, local_similarity)
        coarse_scores = torch.matmul(objects.coarse, key)  # [N, 6, hw]
        scores = torch.cat([global_scores, local_scores, coarse_scores], dim=1)
        return scores.view(len(objects), 10, *objects.shape16)

    def _decode_objects(self, shared: Dict[str, torch.Tensor], matching: torch.Tensor,
                        prev_seg_16: torch.Tensor) -> torch.Tensor:
        """CBAM decoder for all objects at once -> `[N, 2, H, W]` logits."""
        decoder = self.model.vos.decoder
        stages = ((shared["s16"], decoder.cbam1, decoder.deconv1), (shared["s8"], decoder.cbam2, decoder.deconv2),
                  (shared["s4"], decoder.cbam3, decoder.deconv3))
        x = torch.cat([matching, prev_seg_16], dim=1)
        for (common, cbam, deconv), (_, w_own, _, padding) in zip(stages, self._blend_split):
            own = F.conv2d(x.contiguous(memory_format=self._memory_format), w_own, padding=padding)
            x = deconv(cbam(F.relu(common + own)))
        return x

    # ------------------------------------------------------------------------------------------
    # The video
    # ------------------------------------------------------------------------------------------

    @torch.no_grad()
    def forward(self, imgs: torch.Tensor, given_masks: Sequence[Optional[torch.Tensor]],
                dist: Optional[torch.Tensor] = None,
                val_frame_ids: Optional[Sequence[int]] = None) -> Dict[str, torch.Tensor]:
        b, length, _, height, width = imgs.shape
        if b != 1:
            raise ValueError("FastTBD is for inference (batch size 1); train with tbd.model.TBD")
        if not each_id_given_once(given_masks):
            # An id annotated again later: the official code then tracks it twice (duplicate entries in its
            # object list); only the faithful path reproduces that.
            return self.model(imgs, given_masks, dist, val_frame_ids)
        if dist is None:
            dist = distance_matrix(height, width, imgs.device)
        padding = centered_padding(height, width, STRIDE)
        imgs, given_masks = pad_video(imgs, given_masks, padding)
        h, w = imgs.shape[-2] // STRIDE, imgs.shape[-1] // STRIDE
        sds = self._distance_scores(dist)
        matcher = self.model.vos.matcher
        short_inertia = 1 / (1 + torch.exp(matcher.short))
        long_inertia = 1 / (1 + torch.exp(matcher.long))

        frames = self._frames(imgs[0])
        _, key = next(frames)
        objects = _Objects(h, w, key.shape[0], key.device)
        objects.add(key, given_masks[0], object_ids_in(given_masks[0]))
        masks: List[torch.Tensor] = [given_masks[0]]
        prev_key = key
        for i, (shared, key) in enumerate(frames, start=1):
            probs = torch.zeros(0, 2, *imgs.shape[-2:], device=imgs.device)
            if len(objects):
                matching = self._matching(key, prev_key, sds, objects)
                with self._autocast(key.device, decoder=True):
                    logits = self._head(shared, matching, objects.prev_seg_16)
                probs = torch.softmax(logits.float(), dim=1)

            given = given_masks[i]
            if given is not None:  # every id in a mid-video annotation starts a new object
                new_ids = object_ids_in(given)
                if new_ids:
                    objects.add(key, given, new_ids)
                    probs = torch.cat([probs, two_channel_segs(given, new_ids)])

            if len(objects):
                pred_mask, probs = _aggregate(probs, objects.lookup)
            else:
                pred_mask = torch.zeros_like(given_masks[0])
            if i < length - 1 and len(objects):
                objects.update(key, probs, short_inertia, long_inertia)
            prev_key = key

            if given is not None:
                masks.append(pred_mask.masked_fill(given != 0, 0) + given)
            elif val_frame_ids is None or val_frame_ids[0] + i in val_frame_ids:
                masks.append(pred_mask)
        return {"masks": unpad(torch.stack(masks, dim=1), padding)}

"""Fast inference path for GIS-RAmap (`--fast`): the same weights and the same arithmetic up to
float rounding, with the work that depends only on the image done once per frame.

The faithful path (`GISNet.forward_prop`) mirrors the reference: the query image is copied once per
object and every image-only feature is computed `n_objects` times, and the annotated frame is encoded
twice. Here a frame is encoded once (`FrameFeatures`) and everything derived only from it is kept
with it, so that it serves both as the query and, one step later, as the neighbour:

* encoder_3ch r4/r2 (one row instead of `n_objects`);
* the transfer module's similarity and attention projections (reused while the frame is an
  annotation, across every later frame and round);
* the difference module's image-only projections and the image half of its first two convolutions;
* the feature compounder's query projection (its share of `cat_conv`) and the skip branch of `RF2`.

A round also takes its annotated frame's segmentation from the preview of the same strokes when there is
one (`GISSession.preview_annotation`, which the app runs on every stroke): the same computation on the same
input, so the same result.

The per-object parts (object features, mask channels, decoders, segmentation head) stay batched over
objects. Convolutions over concatenated inputs are split into a shared and a per-object part
(`conv(cat(a, b)) = conv_a(a) + conv_b(b)`), which reorders float sums: masks may differ from the
faithful path in near-tie pixels (the parity README explains why this model's near-hard attention
turns rounding into pixel flips); `tests/test_gis_fast.py` checks the agreement.

Mixed precision (`FastOptions.precision`) covers only the per-object head (difference module, feature
compounder, segmentation head); "auto" is bf16 on bf16-capable GPUs and on CPUs with AMX tiles, float32
elsewhere (`default_autocast_dtype`). Measured on the parity rounds, a bf16 head changes the masks about as
much as float rounding does. The encoders stay float32 because their features feed the attention, whose
softmax over large logits is nearly an argmax: in bf16 they flipped ~15 % of the pixels of the parity video.
channels_last is the default on CUDA only.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.inference.fast import FastOptions
from common.runtime.device import device_of
from gis import options
from gis.model import GISNet, Refine

FAST_HELP = options.FAST_HELP  # worded in gis.options, which the command lines import without torch


def default_autocast_dtype(device: torch.device) -> Optional[torch.dtype]:
    """The head's precision under "auto": bf16 on bf16-capable GPUs, and on CPUs with AMX tiles (there the
    head runs ~8x faster than in float32; elsewhere bf16 is not reliably faster); None (float32) otherwise."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    return torch.bfloat16 if amx else None


@dataclass
class FrameFeatures:
    """Image-only features of one frame (batch of one), shared by every object. The encoder's r4
    itself is not kept: everything downstream reads only these projections of it."""
    size: Tuple[int, int]  # (h, w) at 1/8
    sim: torch.Tensor  # transfer_module.f_conv_sim, [128, h*w]
    att: torch.Tensor  # transfer_module.f_conv_att(sim), [128, h*w]
    inter: torch.Tensor  # diff_module.f_conv_inter(r4), [1,128,h,w]
    diffu: torch.Tensor  # image part of diff_module.conv1_diffu (bias included), [1,64,h,w]
    que: torch.Tensor  # query part of feature_compounder.cat_conv (bias included), [1,512,h,w]
    skip: torch.Tensor  # feature_compounder.RF2's skip branch on r2, [1,128,H/4,W/4]


@dataclass
class AnnotationFeatures:
    """What an annotated frame contributes to every later query."""
    frame: FrameFeatures
    objects: torch.Tensor  # object features, [n_obj, 256, h*w]


def _refine_skip(refine: Refine, skip: torch.Tensor) -> torch.Tensor:
    s = refine.convFS1(skip)
    return s + refine.convFS3(F.relu(refine.convFS2(F.relu(s))))


def _refine_merge(refine: Refine, s: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
    m = s + F.interpolate(coarse, scale_factor=refine.scale_factor, mode="bilinear", align_corners=True)
    return m + refine.convMM2(F.relu(refine.convMM1(F.relu(m))))


def _conv_part(conv: torch.nn.Conv2d, x: torch.Tensor, channels: slice, bias: bool) -> torch.Tensor:
    """`conv` restricted to the input channels `channels` (so that conv(cat) = sum of parts)."""
    return F.conv2d(x, conv.weight[:, channels], conv.bias if bias else None, conv.stride, conv.padding,
                    conv.dilation)


class FastGIS(nn.Module):
    """Fast-mode wrapper around a `GISNet`, used by `GISSession` in place of its faithful calls (weights
    shared; with channels_last the net's parameters are converted to that layout in place).

    `options`: precision of the per-object head, channels_last and compile (`FastOptions`; None = the
    defaults). `feature_cache_mib`: image features kept per video so that later rounds do not re-encode the
    frames they revisit (about 40 MiB per 480p frame; 0 disables it; results are the same either way)."""

    def __init__(self, model: GISNet, options: Optional[FastOptions] = None, *, feature_cache_mib: float = 4096.0):
        super().__init__()
        self.net = model
        self.options = options or FastOptions()
        self.device = device_of(model)
        self.amp_dtype = self.options.autocast_dtype(default_autocast_dtype(self.device))
        self.channels_last = self.options.use_channels_last(self.device.type == "cuda")
        self.feature_cache_mib = feature_cache_mib
        if self.channels_last:
            model.to(memory_format=torch.channels_last)  # in place: values unchanged, NHWC strides
        # plain (or compiled) callables, not registered submodules: the state_dict stays `net.` + the official keys
        wrap = (lambda f: torch.compile(f, dynamic=False)) if self.options.compile else (lambda f: f)
        self._encoder_3ch = wrap(model.encoder_3ch.__call__)
        self._obj_extractor = wrap(model.forward_obj_feature_extractor)
        self._per_object = wrap(self._per_object_head)

    # -- helpers -----------------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None else nullcontext()

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    # -- image-only work ---------------------------------------------------------------------------
    def frame_features(self, image: torch.Tensor) -> FrameFeatures:
        """Encode one normalised, padded image `[1,3,Hp,Wp]`."""
        net = self.net
        r4, r2 = self._encoder_3ch(self._layout(image))
        que = _conv_part(net.feature_compounder.cat_conv, net.feature_compounder.que_conv(r4), slice(384, 640), True)
        skip = _refine_skip(net.feature_compounder.RF2, r2)
        h, w = r4.shape[-2:]
        tm, dm = net.transfer_module, net.diff_module
        sim = tm.f_conv_sim(r4).reshape(128, h * w)
        att = tm.f_conv_att(sim.unsqueeze(0))[0]
        inter = dm.f_conv_inter(r4)
        diffu = _conv_part(dm.conv1_diffu, dm.f_conv_diffu(r4), slice(0, 128), True)
        return FrameFeatures((h, w), sim, att, inter, diffu, que, skip)

    @staticmethod
    def nbytes(features: FrameFeatures) -> int:
        return sum(t.numel() * t.element_size() for t in (features.sim, features.att, features.inter, features.diffu,
                                                           features.que, features.skip))

    def annotation(self, frame: FrameFeatures, object_features: torch.Tensor) -> AnnotationFeatures:
        return AnnotationFeatures(frame, object_features.flatten(2))

    def object_features(self, image: torch.Tensor, interaction: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Interaction network on `[n_obj,6,Hp,Wp]`-style input built from a shared image `[1,3,..]`:
        (mask probabilities [n_obj,1,Hp,Wp], object features [n_obj,256,h,w])."""
        n_obj = interaction.shape[0]
        x = torch.cat([image.expand(n_obj, -1, -1, -1), interaction], dim=1)
        logit, obj_feature = self._obj_extractor(self._layout(x))
        return torch.sigmoid(logit), obj_feature

    # -- per-frame propagation ---------------------------------------------------------------------
    def _transfer(self, annotations: Sequence[AnnotationFeatures], query: FrameFeatures,
                  h: int, w: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Attention transfer (eval branch) with single-row image features: transferred object
        features [n_obj,256,h,w] and the reliability score map [h,w]."""
        n = len(annotations)
        anno_sim = torch.stack([a.frame.sim for a in annotations])  # [N,128,HW']
        anno_att = torch.stack([a.frame.att for a in annotations])  # [N,128,HW']
        que_sim = query.sim
        # Softmax over the query axis of [N, HW_anno, HW_query], as the reference.
        similarity = F.softmax(torch.matmul(anno_sim.transpose(1, 2), que_sim), dim=2)
        self_similarity = F.softmax(torch.matmul(que_sim.t(), que_sim), dim=1)
        que_t = torch.matmul(query.att, self_similarity)  # [128,HW]
        anno_t = torch.bmm(anno_att, similarity)  # [N,128,HW]
        logit = 1 / (torch.max((anno_t - que_t) ** 2, dim=1)[0] + 0.1)  # [N,HW]
        scoremap = torch.exp(torch.max(logit, dim=0)[0] / 2 - 5).reshape(h, w)
        attention = F.softmax(logit, dim=0).reshape(1, n, 1, h, w)
        objects = torch.stack([a.objects for a in annotations], dim=1)  # [n_obj,N,256,HW']
        transferred = torch.matmul(objects, similarity).reshape(objects.shape[0], n, 256, h, w)
        return torch.sum(transferred * attention, dim=1), scoremap

    def _per_object_head(self, transferred: torch.Tensor, neighbor_prob: torch.Tensor, diffu: torch.Tensor,
                         inter_feature: torch.Tensor, que: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Difference module, feature compounder and segmentation head, batched over objects."""
        dm, fc = self.net.diff_module, self.net.feature_compounder
        prob = F.interpolate(neighbor_prob, scale_factor=0.125, mode="bilinear", align_corners=True)
        f_diff = diffu + _conv_part(dm.conv1_diffu, prob, slice(128, 129), False)
        f_diff = (_conv_part(dm.conv2_diffu, f_diff, slice(0, 64), True)
                  + _conv_part(dm.conv2_diffu, inter_feature, slice(64, 128), False))
        diff = dm.conv3_diffu(f_diff)
        r4 = _conv_part(fc.cat_conv, torch.cat((transferred, diff), dim=1), slice(0, 384), False) + que
        aspp_out = F.interpolate(fc.aspp_decoder(r4), scale_factor=2, mode="bilinear", align_corners=True)
        m4 = fc.convG2(F.relu(fc.convG1(F.relu(fc.convG0(F.relu(r4))))))
        features = torch.cat((_refine_merge(fc.RF2, skip, m4), aspp_out), dim=1)
        return self.net.segmentation_head(features)

    def propagate(self, annotations: Sequence[AnnotationFeatures], query: FrameFeatures, neighbor: FrameFeatures,
                  neighbor_prob: torch.Tensor, anno_frames: Optional[np.ndarray] = None,
                  que_frame: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Segment `query` for every object: (bg/fg logits [n_obj,2,Hp,Wp] float32, score as a 0-d tensor)."""
        selected = list(annotations)
        if len(selected) >= 4 and anno_frames is not None:
            # Beyond 3 annotations: the first one plus the two whose frames are nearest the query.
            nearest = np.argsort(np.abs(que_frame - np.asarray(anno_frames)[1:]))[:2]
            selected = [selected[0]] + [selected[1 + i] for i in nearest]
        h, w = query.size
        transferred, scoremap = self._transfer(selected, query, h, w)
        # exp(-(neighbour - query)^2) of the image projections: image-only, computed once.
        inter_feature = self.net.diff_module.conv1_inter(torch.exp(-(neighbor.inter - query.inter) ** 2))
        with self._autocast():
            logits = self._per_object(self._layout(transferred), neighbor_prob, neighbor.diffu, inter_feature,
                                      query.que, query.skip)
        logits = logits.float()
        return logits, frame_score_tensor(logits, scoremap)


def frame_score_tensor(logits: torch.Tensor, scoremap: torch.Tensor) -> torch.Tensor:
    """`gis.model.frame_score` without the host synchronisation (read all scores once per round)."""
    fg = (F.softmax(F.interpolate(logits, scale_factor=0.125), dim=0)[:, 1] > 0.4).float()
    fg = torch.max(fg, dim=0)[0]
    return (torch.mean(scoremap) + torch.sum(fg * scoremap) / (fg.sum() + 0.1)) / 2

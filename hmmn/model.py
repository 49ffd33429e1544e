"""Hierarchical Memory Matching Network (Seong et al., ICCV 2021).

An STM-style network: a memory encoder (frame + object mask + other objects' mask) and a query
encoder (frame only), both ResNet-50 trunks, project features to key/value maps at strides 16, 8
and 4. Matching runs top-down:

1. /16 - kernel-guided memory matching: full non-local attention over every memory cell, re-weighted
   by Gaussian kernels centred where each memory cell "flows" to in the query (a 7x7-window argmax,
   tracked across calls so older memory frames follow the chain of flows).
2. /8 and /4 - top-k guided memory matching: the /16 attention of the first and previous frames picks,
   per query cell, the 32 (resp. 8) best memory cells; each query pixel attends only to the finer
   pixels inside those cells.

The decoder fuses the /16 read-out with the query's own value, and adds the /8 and /4 read-outs to
the skip features. Objects are processed as a batch; their probabilities are merged by STM's soft
aggregation.

State_dict keys, shapes and the order of floating-point operations follow the official code
(Hongje/HMMN, `model.py`) so its checkpoint loads as is and outputs match its parity fixtures.
`load_model(weights, device)` builds it with the official checkpoint, another one or a seeded initialisation.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.hub.checkpoints import build_with_weights
from common.modeling.resnet import resnet50_stages
from hmmn import TITLE
from hmmn.checkpoints import OFFICIAL_WEIGHTS

Padding = Tuple[int, int, int, int]  # (left, right, top, bottom), F.pad order

GAUSSIAN_SIGMA = 3          # sigma of the /16 kernel, in /16 cells
FLOW_WINDOW = 7             # the flow argmax looks inside a 7x7 window around each memory cell
TOPK_R3 = 32                # memory cells per query cell at /8; /4 uses the best quarter of them
PROB_CLAMP = 1e-7           # soft aggregation clamps probabilities to [1e-7, 1 - 1e-7]

MemoryTensors = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def padding_to_multiple(height: int, width: int, multiple: int = 16) -> Padding:
    """Zero padding up to a multiple of `multiple`; the smaller half goes top/left (as upstream)."""
    dh = (multiple - height % multiple) % multiple
    dw = (multiple - width % multiple) % multiple
    return (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2)


def crop_padding(x: torch.Tensor, padding: Padding) -> torch.Tensor:
    left, right, top, bottom = padding
    h, w = x.shape[-2:]
    return x[..., top:h - bottom, left:w - right]


# --------------------------------------------------------------------------------------------
# Encoders
# --------------------------------------------------------------------------------------------

class _ResNetEncoder(nn.Module):
    """ResNet-50 up to layer3, with ImageNet normalisation of a [0, 1] RGB input."""

    def __init__(self, imagenet: bool = False) -> None:
        super().__init__()
        stages = resnet50_stages(imagenet)
        self.conv1 = stages.conv1
        self.bn1 = stages.bn1
        self.relu = stages.relu
        self.maxpool = stages.maxpool
        self.res2 = stages.layer1  # 1/4, 256
        self.res3 = stages.layer2  # 1/8, 512
        self.res4 = stages.layer3  # 1/16, 1024
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def _stages(self, stem: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(stem)))
        r2 = self.res2(x)
        r3 = self.res3(r2)
        r4 = self.res4(r3)
        return r4, r3, r2


class MemoryEncoder(_ResNetEncoder):
    """Frame + this object's mask + the union of the other objects' masks (summed after conv1)."""

    def __init__(self, imagenet: bool = False) -> None:
        super().__init__(imagenet)
        self.conv1_m = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.conv1_o = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)

    def forward(self, frame: torch.Tensor, mask: torch.Tensor, others: torch.Tensor):
        f = (frame - self.mean) / self.std
        stem = self.conv1(f) + self.conv1_m(mask.unsqueeze(1).float()) + self.conv1_o(others.unsqueeze(1).float())
        return self._stages(stem)


class QueryEncoder(_ResNetEncoder):
    def forward(self, frame: torch.Tensor):
        f = (frame - self.mean) / self.std
        return self._stages(self.conv1(f))


class KeyValue(nn.Module):
    """3x3 key (and value) projections; query encoders at /8 and /4 only need keys."""

    def __init__(self, in_dim: int, key_dim: int, value_dim: Optional[int]) -> None:
        super().__init__()
        self.Key = nn.Conv2d(in_dim, key_dim, kernel_size=3, padding=1)
        self.Value = nn.Conv2d(in_dim, value_dim, kernel_size=3, padding=1) if value_dim else None

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        return self.Key(x), (self.Value(x) if self.Value is not None else None)


# --------------------------------------------------------------------------------------------
# /16: kernel-guided memory matching with temporal flow
# --------------------------------------------------------------------------------------------

def gaussian_rows(centers: torch.Tensor, height: int, width: int, sigma: float) -> torch.Tensor:
    """`[B, N]` flat grid indices -> `[B, N, height*width]` Gaussian maps centred on them."""
    b, n = centers.shape
    cy = (centers // width).view(b, n, 1, 1).float()
    cx = (centers % width).view(b, n, 1, 1).float()
    y = torch.arange(height, dtype=torch.float32, device=centers.device).view(1, 1, height, 1)
    x = torch.arange(width, dtype=torch.float32, device=centers.device).view(1, 1, 1, width)
    kernel = torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma ** 2))
    return kernel.view(b, n, height * width)


@dataclass
class FlowState:
    """What the /16 matcher remembers between the segment calls of one video.

    `table[b, s*h*w + m]` is the query cell that memory cell m of slot s has flowed to by now
    (following the chain of per-frame flow argmaxes); one block of h*w entries per memory slot.
    """
    batch: int
    slots: int
    height: int
    width: int
    table: torch.Tensor


class KernelGuidedMemory(nn.Module):
    """STM read-out whose attention is re-weighted by flow-tracked Gaussian kernels.

    The Gaussian rows of the newest memory slot are centred on each memory cell's best match inside
    a 7x7 window; older slots reuse the newest slot's maps, looked up through the flow table and
    widened by sigma * (1 + 0.5 j) for a slot j frames older. The table is cached between calls, so
    calls must follow the video loop: a 1-slot call starts a video; afterwards each call has the
    same number of slots as before (the previous frame was replaced) or one more.
    """

    def __init__(self, sigma: float = GAUSSIAN_SIGMA, window: int = FLOW_WINDOW) -> None:
        super().__init__()
        self.sigma = sigma
        self.window = window
        self.state: Optional[FlowState] = None
        self._window_mask: Dict[Tuple[int, int, torch.device], torch.Tensor] = {}

    def reset(self) -> None:
        self.state = None

    def gaussian(self, centers: torch.Tensor, height: int, width: int, sigma: float) -> torch.Tensor:
        return gaussian_rows(centers, height, width, sigma)  # a method so that hmmn.fast can swap it

    def outside_window(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """`[h*w, h*w]` bool: True where a (memory cell, query cell) pair is outside the window."""
        key = (height, width, device)
        if key not in self._window_mask:
            half = (self.window - 1) // 2
            y = torch.arange(height, device=device).repeat_interleave(width)
            x = torch.arange(width, device=device).repeat(height)
            near = ((y[:, None] - y[None, :]).abs() <= half) & ((x[:, None] - x[None, :]).abs() <= half)
            self._window_mask[key] = ~near
        return self._window_mask[key]

    def kernels(self, scores: torch.Tensor, batch: int, slots: int, height: int, width: int) -> torch.Tensor:
        """Gaussian weights `[B, T*h*w, h*w]` for raw scores `[B, T*h*w, h*w]`; updates the flow state."""
        hw = height * width
        newest = scores[:, -hw:].masked_fill(self.outside_window(height, width, scores.device), float("-inf"))
        flow = newest.max(dim=2)[1]  # [B, hw]: where each newest memory cell goes in the query
        maps = [self.gaussian(flow, height, width, self.sigma)]

        state = self.state
        fresh = (state is None or slots == 1 or state.batch != batch or slots < state.slots
                 or (state.height, state.width) != (height, width))
        if fresh:
            if slots != 1:
                raise RuntimeError(
                    f"HMMN's /16 matcher got a {slots}-frame memory without a preceding 1-frame call; "
                    "start each video with a single-frame memory (see hmmn.inference.run_video)")
            table = flow
        else:
            table = state.table
            if slots == state.slots:  # the previous frame's slot was replaced by this call's
                table = table[:, :-hw]
            if table.shape[1] != (slots - 1) * hw:
                raise RuntimeError(
                    f"HMMN's /16 matcher expects the memory to grow by at most one frame per call "
                    f"(had {state.slots}, got {slots})")
            table = flow.gather(1, table)
            for back in range(1, slots):  # slot `slots-1-back` lies `back` frames before the newest
                block = table[:, (slots - 1 - back) * hw:(slots - back) * hw]
                sigma = self.sigma * (back * 0.5 + 1)
                maps.insert(0, self.gaussian(flow.gather(1, block), height, width, sigma))
            table = torch.cat((table, flow), dim=1)
        self.state = FlowState(batch, slots, height, width, table)
        return torch.cat(maps, dim=1) if len(maps) > 1 else maps[0]

    def forward(self, mem_key: torch.Tensor, mem_value: torch.Tensor,
                query_key: torch.Tensor, query_value: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Memory `[B, C, T, h, w]`, query `[B, C, h, w]` -> (read-out ++ query value, attention)."""
        b, key_dim, slots, h, w = mem_key.shape
        value_dim = mem_value.shape[1]
        mk = mem_key.view(b, key_dim, slots * h * w).transpose(1, 2)
        qk = query_key.view(b, key_dim, h * w)
        scores = torch.bmm(mk, qk) / math.sqrt(key_dim)  # [B, T*h*w, h*w]

        kernel = self.kernels(scores, b, slots, h, w)
        attention = F.softmax(scores, dim=1)
        attention.mul_(kernel)
        attention.div_(attention.sum(dim=1, keepdim=True))

        read = torch.bmm(mem_value.view(b, value_dim, slots * h * w), attention).view(b, value_dim, h, w)
        return torch.cat([read, query_value], dim=1), attention


# --------------------------------------------------------------------------------------------
# /8 and /4: top-k guided memory matching
# --------------------------------------------------------------------------------------------

@dataclass
class FineAttention:
    """A top-k guided read's log-attention `[B, gh, gw, cell, cell, candidates]` (query pixels grouped by their
    /16 cell) and `candidates(map, channels)`: a memory-shaped map `[B, channels, T, H, W]` at the candidates,
    `[B, gh, gw, candidates, channels]`."""
    log_attention: torch.Tensor
    candidates: Callable[[torch.Tensor, int], torch.Tensor]


class TopkGuidedMemory(nn.Module):
    """Each query pixel attends to the finer pixels of the k memory cells chosen by a coarser attention."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, mem_key: torch.Tensor, mem_value: torch.Tensor, query_key: torch.Tensor,
                guide: torch.Tensor, guide_indices: Optional[torch.Tensor] = None,
                guide_values: Optional[torch.Tensor] = None,
                log_attentions: Optional[List["FineAttention"]] = None):
        """Memory `[B, C, T, H, W]`, query key `[B, C, H, W]`, guide attention `[B, T*h*w, h*w]`.

        Returns the read-out `[B, C_v, H, W]` and the best quarter of the chosen cells (indices and
        scores, value-sorted) to guide the next finer level. `log_attentions`, when given (training),
        receives `FineAttention`: the log-attention and the means to pick any memory map's candidates.
        """
        b, key_dim, slots, height, width = mem_key.shape
        value_dim = mem_value.shape[1]
        guide_cells = guide.shape[2]
        cell = int(math.sqrt((height * width) // guide_cells))  # guide cell size in pixels
        gh, gw = height // cell, width // cell
        if guide.shape[1] != slots * gh * gw:
            raise ValueError(f"guide covers {guide.shape[1] // (gh * gw)} memory frames, memory has {slots}")

        if guide_indices is None:
            guide_values, guide_indices = torch.topk(guide.transpose(1, 2), k=self.k, dim=2, sorted=True)
        k = guide_indices.shape[2]

        # Candidates in ascending memory position (slot, row, column), as the reference enumerates them.
        chosen = guide_indices.sort(dim=2).values  # [B, gh*gw, k]
        offsets = torch.arange(b, device=chosen.device).view(b, 1, 1) * (slots * gh * gw)
        chosen = (chosen + offsets).reshape(-1)

        def cell_pixels(mem: torch.Tensor, dim: int) -> torch.Tensor:
            # [B, C, T, H, W] -> [B, gh, gw, k*cell*cell, C]: the pixels of each query cell's chosen cells
            patches = mem.view(b, dim, slots, gh, cell, gw, cell).permute(0, 2, 3, 5, 4, 6, 1)
            patches = patches.reshape(b * slots * gh * gw, cell, cell, dim)[chosen]
            return patches.reshape(b, gh, gw, k * cell * cell, dim)

        keys = cell_pixels(mem_key, key_dim)
        values = cell_pixels(mem_value, value_dim)
        query = query_key.view(b, key_dim, gh, cell, gw, cell).permute(0, 2, 4, 1, 3, 5)

        attention = torch.einsum("bhwnc,bhwcij->bhwijn", keys, query) / math.sqrt(key_dim)
        if log_attentions is not None:
            log_attentions.append(FineAttention(F.log_softmax(attention, dim=-1), cell_pixels))
        attention = F.softmax(attention, dim=-1)
        read = torch.einsum("bhwnc,bhwijn->bchiwj", values, attention).reshape(b, value_dim, height, width)

        keep = max(k // 4, 1)
        return read, guide_indices[:, :, :keep], guide_values[:, :, :keep]


# --------------------------------------------------------------------------------------------
# Decoder
# --------------------------------------------------------------------------------------------

class ResBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(dim, dim, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.conv1(F.relu(x))
        r = self.conv2(F.relu(r))
        return x + r


class Refine(nn.Module):
    """Skip feature + memory read-out at this scale, then the upsampled coarser decoder map."""

    def __init__(self, in_dim: int, dim: int, scale_factor: int = 2) -> None:
        super().__init__()
        self.convFS = nn.Conv2d(in_dim, dim, kernel_size=3, padding=1)
        self.convMemory = nn.Conv2d(in_dim // 2, dim, kernel_size=3, padding=1, bias=False)
        self.ResFS = ResBlock(dim)
        self.ResMM = ResBlock(dim)
        self.scale_factor = scale_factor

    def forward(self, skip: torch.Tensor, coarser: torch.Tensor, memory_read: torch.Tensor) -> torch.Tensor:
        s = self.ResFS(self.convFS(skip) + self.convMemory(memory_read))
        m = s + F.interpolate(coarser, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)
        return self.ResMM(m)


class Decoder(nn.Module):
    def __init__(self, dim: int = 256) -> None:
        super().__init__()
        self.convFM = nn.Conv2d(1024, dim, kernel_size=3, padding=1)
        self.ResMM = ResBlock(dim)
        self.RF3 = Refine(512, dim)  # 1/16 -> 1/8
        self.RF2 = Refine(256, dim)  # 1/8 -> 1/4
        self.pred2 = nn.Conv2d(dim, 2, kernel_size=3, padding=1)

    def forward(self, read4: torch.Tensor, r3: torch.Tensor, r2: torch.Tensor,
                read3: torch.Tensor, read2: torch.Tensor) -> torch.Tensor:
        m4 = self.ResMM(self.convFM(read4))
        m3 = self.RF3(r3, m4, read3)
        m2 = self.RF2(r2, m3, read2)
        p2 = self.pred2(F.relu(m2))
        return F.interpolate(p2, scale_factor=4, mode="bilinear", align_corners=False)


def soft_aggregate_logits(probs: torch.Tensor) -> torch.Tensor:
    """STM soft aggregation: per-object foreground `[N, H, W]` -> logits `[1, N+1, H, W]`.

    Background = prod(1 - p); the N+1 probabilities are clamped (not renormalised) and turned into
    logits, so a softmax over them renormalises. Differs from common.modeling.aggregation's odds.
    """
    n, h, w = probs.shape
    em = probs.new_zeros(1, n + 1, h, w)
    em[0, 0] = torch.prod(1 - probs, dim=0)
    em[0, 1:] = probs
    em = torch.clamp(em, PROB_CLAMP, 1 - PROB_CLAMP)
    return torch.log(em / (1 - em))


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------

class HMMN(nn.Module):
    def __init__(self, imagenet: bool = False) -> None:
        super().__init__()
        self.Encoder_M = MemoryEncoder(imagenet)
        self.Encoder_Q = QueryEncoder(imagenet)
        self.KV_M_r4 = KeyValue(1024, 128, 512)
        self.KV_Q_r4 = KeyValue(1024, 128, 512)
        self.KV_M_r3 = KeyValue(512, 128, 256)
        self.KV_Q_r3 = KeyValue(512, 128, None)
        self.KV_M_r2 = KeyValue(256, 64, 128)
        self.KV_Q_r2 = KeyValue(256, 64, None)
        self.Memory = KernelGuidedMemory()
        self.Memory_topk3 = TopkGuidedMemory(TOPK_R3)
        self.Memory_topk2 = TopkGuidedMemory(TOPK_R3 // 4)
        self.Decoder = Decoder(256)

    def memorize(self, frame: torch.Tensor, masks: torch.Tensor, num_objects: int) -> MemoryTensors:
        """Frame `[1, 3, H, W]` in [0, 1] and masks `[1, K, H, W]` (channel 0 = background, unused).

        Returns keys/values at /16, /8, /4 of the zero-padded frame, one batch element per object and
        a time axis of length 1: `[N, C, 1, h, w]` each.
        """
        n = int(num_objects)
        padding = padding_to_multiple(frame.shape[2], frame.shape[3])
        frame = F.pad(frame, padding)
        masks = F.pad(masks, padding)
        own = [masks[:, o] for o in range(1, n + 1)]
        others = [(torch.sum(masks[:, 1:o], dim=1) + torch.sum(masks[:, o + 1:n + 1], dim=1)).clamp(0, 1)
                  for o in range(1, n + 1)]
        r4, r3, r2 = self.Encoder_M(torch.cat([frame] * n, dim=0), torch.cat(own, dim=0), torch.cat(others, dim=0))
        k4, v4 = self.KV_M_r4(r4)
        k3, v3 = self.KV_M_r3(r3)
        k2, v2 = self.KV_M_r2(r2)
        return tuple(t.unsqueeze(2) for t in (k4, v4, k3, v3, k2, v2))  # type: ignore[return-value]

    def object_probabilities(self, frame: torch.Tensor, keys4: torch.Tensor, values4: torch.Tensor,
                             keys3: torch.Tensor, values3: torch.Tensor, keys2: torch.Tensor,
                             values2: torch.Tensor, num_objects: int) -> Tuple[torch.Tensor, Padding]:
        """Each object's foreground probability `[N, H_pad, W_pad]` (before aggregation) and the padding."""
        n = int(num_objects)
        padding = padding_to_multiple(frame.shape[2], frame.shape[3])
        frame = F.pad(frame, padding)

        r4, r3, r2 = self.Encoder_Q(frame)
        k4, v4 = self.KV_Q_r4(r4)
        k3, _ = self.KV_Q_r3(r3)
        k2, _ = self.KV_Q_r2(r2)
        k4e, v4e = k4.expand(n, -1, -1, -1), v4.expand(n, -1, -1, -1)
        k3e, k2e = k3.expand(n, -1, -1, -1), k2.expand(n, -1, -1, -1)
        r3e, r2e = r3.expand(n, -1, -1, -1), r2.expand(n, -1, -1, -1)

        read4, attention4 = self.Memory(keys4, values4, k4e, v4e)
        cells = attention4.shape[2]
        if attention4.shape[1] > cells:  # the finer levels look at the first and the previous frame only
            attention4 = torch.cat((attention4[:, :cells], attention4[:, -cells:]), dim=1)
        read3, indices, scores = self.Memory_topk3(keys3, values3, k3e, attention4)
        read2, _, _ = self.Memory_topk2(keys2, values2, k2e, attention4, indices, scores)

        logits = self.Decoder(read4, r3e, r2e, read3, read2)
        return F.softmax(logits, dim=1)[:, 1], padding

    def segment(self, frame: torch.Tensor, keys4: torch.Tensor, values4: torch.Tensor,
                keys3: torch.Tensor, values3: torch.Tensor, keys2: torch.Tensor, values2: torch.Tensor,
                num_objects: int) -> torch.Tensor:
        """Soft-aggregated logits `[1, N+1, H, W]` for a query frame `[1, 3, H, W]`.

        Memories are `[N, C, T, h, w]`; /16 holds T frames, /8 and /4 the first and the previous frame
        (T = 1: just one frame). Carries the /16 flow state over to the next call (see
        KernelGuidedMemory).
        """
        probs, padding = self.object_probabilities(frame, keys4, values4, keys3, values3, keys2, values2,
                                                   num_objects)
        return crop_padding(soft_aggregate_logits(probs), padding)

    def forward(self, *args):
        """Upstream's dispatch: (frame, masks, n) -> memorize; (frame, 6 memories, n) -> segment."""
        return self.segment(*args) if args[1].dim() > 4 else self.memorize(*args)


def load_model(weights: Optional[Union[str, os.PathLike]], device: torch.device) -> HMMN:
    """`HMMN` in eval mode on `device` with `weights`: a registry name (fetched if needed) or a checkpoint file
    (strict load; `module.` prefixes are fine), "seeded" (a seeded initialisation, with a notice that the
    numbers are not the paper's); None = the official `HMMN_weights.pth` (`hmmn`)."""
    return build_with_weights(HMMN, OFFICIAL_WEIGHTS if weights is None else weights, device, paper=TITLE)

"""HMMN fast inference (`--fast`): the same network and weights, cheaper arithmetic, results equal up to noise.

`FastHMMN(model, FastOptions(...))` wraps a loaded `HMMN` and offers the same `memorize` / `segment` /
`object_probabilities` / `Memory` interface, so `hmmn.inference.propagate` runs it unchanged. It takes the
shared options of `common.inference.fast` (--fast / --precision / --compile). What differs from the faithful
path (`hmmn.model`), and why it stays close:

- Convolutions (encoders, key/value projections, decoder) run in `channels_last` (`options.channels_last`,
  default on), in float32: `--precision auto` is float32 on every device, the verified setting.
  `bf16` / `fp16` run them under autocast (everything that *selects* stays float32 on the rounded
  features: the /16 scores, softmax, Gaussian kernels and flow argmax, the top-k choices and the /8, /4
  attention), but that is opt-in and unverified: on the parity weights it moves J&F by 1 (fp16) to 15
  (bf16) points, far beyond the 0.1 agreement of float32 (those weights are badly conditioned; with the
  official weights it may well be fine; measure first).
- Objects share what does not depend on the object: the memory encoder's frame stem conv and the
  decoder's skip convolutions (`convFS`) run once per frame instead of once per object.
- /16 read-out: attention entries below float32's smallest normal number are flushed to 0 for the
  read-out product only (the top-k guide keeps them). Denormals make CPU matrix products ~15x slower
  and contribute less than 1e-30 to the read.
- /16 Gaussian kernels: separable (two small exps and one product per memory slot, cached
  coordinate grids) instead of six full-size passes; equal up to float32 rounding.
- /8 and /4: the chosen memory pixels are gathered chunk by chunk into bounded buffers (faithful
  gathers several 100 MB at 480p in one go) and multiplied with `bmm`.
- `--compile`: `torch.compile` of the encoders and the decoder.

Agreement with the faithful path (J&F within 0.1) is checked in tests/test_hmmn_fast.py.
"""
from __future__ import annotations

import contextlib
import math
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.inference.fast import FastOptions, precision_name
from hmmn.model import (HMMN, KernelGuidedMemory, MemoryTensors, Padding, Refine, crop_padding, padding_to_multiple,
                        soft_aggregate_logits)

FLOAT32_TINY = torch.finfo(torch.float32).tiny  # smallest normal float32
VERIFIED_AUTOCAST = None  # `--precision auto`: float32 convolutions on every device (J&F within 0.1)


def _chunk_budget(device: torch.device) -> int:
    """Bytes of gathered keys+values per /8, /4 chunk: cache- and allocator-friendly on the CPU, large
    on GPUs (fewer kernel launches)."""
    return (8 << 20) if device.type == "cpu" else (512 << 20)


class FastKernelGuidedMemory(KernelGuidedMemory):
    """The /16 matcher in float32 (same flow state logic) with separable Gaussians (one full-size
    product instead of six full-size passes per memory slot) and a denormal-free read-out product."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._grids: Dict[Tuple[int, int, torch.device], Tuple[torch.Tensor, torch.Tensor]] = {}

    def gaussian(self, centers: torch.Tensor, height: int, width: int, sigma: float) -> torch.Tensor:
        key = (height, width, centers.device)
        if key not in self._grids:
            self._grids[key] = (torch.arange(height, dtype=torch.float32, device=centers.device),
                                torch.arange(width, dtype=torch.float32, device=centers.device))
        y, x = self._grids[key]
        b, n = centers.shape
        cy = (centers // width).float().unsqueeze(2)
        cx = (centers % width).float().unsqueeze(2)
        along_y = torch.exp(-(y - cy) ** 2 / (2 * sigma ** 2))  # [B, N, height]
        along_x = torch.exp(-(x - cx) ** 2 / (2 * sigma ** 2))  # [B, N, width]
        return (along_y.unsqueeze(3) * along_x.unsqueeze(2)).view(b, n, height * width)

    def forward(self, mem_key: torch.Tensor, mem_value: torch.Tensor,
                query_key: torch.Tensor, query_value: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        b, key_dim, slots, h, w = mem_key.shape
        value_dim = mem_value.shape[1]
        mk = mem_key.float().reshape(b, key_dim, slots * h * w).transpose(1, 2)
        qk = query_key.float().reshape(b, key_dim, h * w)
        scores = torch.bmm(mk, qk) / math.sqrt(key_dim)  # [B, T*h*w, h*w]

        kernel = self.kernels(scores, b, slots, h, w)
        attention = F.softmax(scores, dim=1)
        attention.mul_(kernel)
        attention.div_(attention.sum(dim=1, keepdim=True))

        weights = F.threshold(attention, FLOAT32_TINY, 0.0)
        read = torch.bmm(mem_value.float().reshape(b, value_dim, slots * h * w), weights).view(b, value_dim, h, w)
        return torch.cat([read, query_value.float()], dim=1), attention


class FastTopkGuidedMemory(nn.Module):
    """`hmmn.model.TopkGuidedMemory` with chunked gathers and bmm; same candidates, same arithmetic."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, mem_key: torch.Tensor, mem_value: torch.Tensor, query_key: torch.Tensor,
                guide: torch.Tensor, guide_indices: Optional[torch.Tensor] = None,
                guide_values: Optional[torch.Tensor] = None):
        b, key_dim, slots, height, width = mem_key.shape
        value_dim = mem_value.shape[1]
        cell = int(math.sqrt((height * width) // guide.shape[2]))
        gh, gw = height // cell, width // cell
        if guide.shape[1] != slots * gh * gw:
            raise ValueError(f"guide covers {guide.shape[1] // (gh * gw)} memory frames, memory has {slots}")
        if guide_indices is None:
            guide_values, guide_indices = torch.topk(guide.transpose(1, 2), k=self.k, dim=2, sorted=True)
        k = guide_indices.shape[2]
        pixels = cell * cell

        # One row per memory cell (slot, row, column), its pixels row-major: the faithful candidate order.
        def cell_rows(mem: torch.Tensor, dim: int) -> torch.Tensor:
            rows = mem.reshape(b, dim, slots, gh, cell, gw, cell).permute(0, 2, 3, 5, 4, 6, 1)
            return rows.reshape(b * slots * gh * gw, pixels * dim)

        keys, values = cell_rows(mem_key, key_dim), cell_rows(mem_value, value_dim)
        query = query_key.float().reshape(b, key_dim, gh, cell, gw, cell).permute(0, 2, 4, 1, 3, 5)
        query = query.reshape(b * gh * gw, key_dim, pixels)
        chosen = guide_indices.sort(dim=2).values
        chosen = (chosen + torch.arange(b, device=chosen.device).view(b, 1, 1) * (slots * gh * gw)).view(-1, k)

        cells = b * gh * gw
        per_cell = k * pixels * (key_dim + value_dim) * 4
        step = max(1, _chunk_budget(query.device) // per_cell)
        scale = math.sqrt(key_dim)
        read = query.new_empty(cells, pixels, value_dim)
        for start in range(0, cells, step):
            stop = min(start + step, cells)
            index = chosen[start:stop].reshape(-1)
            cand_keys = keys.index_select(0, index).view(stop - start, k * pixels, key_dim).float()
            cand_values = values.index_select(0, index).view(stop - start, k * pixels, value_dim).float()
            attention = F.softmax(torch.bmm(cand_keys, query[start:stop]) / scale, dim=1)  # [m, n, ij]
            torch.bmm(attention.transpose(1, 2), cand_values, out=read[start:stop])
        read = read.view(b, gh, gw, cell, cell, value_dim).permute(0, 5, 1, 3, 2, 4).reshape(b, value_dim, height, width)

        keep = max(k // 4, 1)
        return read, guide_indices[:, :, :keep], guide_values[:, :, :keep]


class FastHMMN(nn.Module):
    """Fast inference around a loaded `HMMN` (with channels_last, the network is converted in place)."""

    def __init__(self, model: HMMN, options: Optional[FastOptions] = None) -> None:
        super().__init__()
        self.options = options or FastOptions()
        self.layout = torch.channels_last if self.options.use_channels_last(True) else torch.contiguous_format
        self.net = model.eval().to(memory_format=self.layout)
        self.device = next(model.parameters()).device
        self.dtype = self.options.autocast_dtype(VERIFIED_AUTOCAST)
        self.Memory = FastKernelGuidedMemory(model.Memory.sigma, model.Memory.window)
        self.Memory_topk3 = FastTopkGuidedMemory(model.Memory_topk3.k)
        self.Memory_topk2 = FastTopkGuidedMemory(model.Memory_topk2.k)
        self._encode_memory = self.encode_memory
        self._encode_query = self.encode_query
        self._decode = self.decode
        if self.options.compile:
            self._encode_memory = torch.compile(self.encode_memory)
            self._encode_query = torch.compile(self.encode_query)
            self._decode = torch.compile(self.decode)

    def describe(self) -> str:
        precision = "float32" if self.dtype is None else f"{precision_name(self.dtype)} autocast"
        layout = "channels_last" if self.layout == torch.channels_last else "contiguous"
        compiled = ", torch.compile" if self.options.compile else ""
        return f"fast mode: {precision} convolutions, {layout}, float32 matching{compiled}"

    def amp(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    # -- networks (autocast) ------------------------------------------------------------------

    def encode_memory(self, frame: torch.Tensor, own: torch.Tensor, others: torch.Tensor):
        """Frame `[1, 3, H, W]`, masks `[N, 1, H, W]` -> keys/values at /16, /8, /4 (batch = object)."""
        enc, net = self.net.Encoder_M, self.net
        with self.amp():
            f = (frame - enc.mean) / enc.std
            stem = enc.conv1(f) + enc.conv1_m(own) + enc.conv1_o(others)  # frame stem once, broadcast
            r4, r3, r2 = enc._stages(stem)
            k4, v4 = net.KV_M_r4(r4)
            k3, v3 = net.KV_M_r3(r3)
            k2, v2 = net.KV_M_r2(r2)
        return k4, v4, k3, v3, k2, v2

    def encode_query(self, frame: torch.Tensor):
        net = self.net
        with self.amp():
            r4, r3, r2 = net.Encoder_Q(frame)
            k4, v4 = net.KV_Q_r4(r4)
            k3 = net.KV_Q_r3.Key(r3)
            k2 = net.KV_Q_r2.Key(r2)
        return r4, r3, r2, k4, v4, k3, k2

    def decode(self, read4: torch.Tensor, r3: torch.Tensor, r2: torch.Tensor,
               read3: torch.Tensor, read2: torch.Tensor) -> torch.Tensor:
        """`Decoder.forward` with the query's skip features `[1, ...]` convolved once for all objects."""
        dec = self.net.Decoder
        with self.amp():
            m4 = dec.ResMM(dec.convFM(read4))
            m3 = _refine_shared_skip(dec.RF3, r3, m4, read3)
            m2 = _refine_shared_skip(dec.RF2, r2, m3, read2)
            p2 = dec.pred2(F.relu(m2))
            logits = F.interpolate(p2, scale_factor=4, mode="bilinear", align_corners=False)
        return logits.float()

    # -- the HMMN interface used by hmmn.inference.propagate -----------------------------------

    def _pad(self, x: torch.Tensor, padding: Padding) -> torch.Tensor:
        return F.pad(x, padding).contiguous(memory_format=self.layout)

    @torch.no_grad()
    def memorize(self, frame: torch.Tensor, masks: torch.Tensor, num_objects: int) -> MemoryTensors:
        n = int(num_objects)
        padding = padding_to_multiple(frame.shape[2], frame.shape[3])
        frame = self._pad(frame, padding)
        masks = F.pad(masks, padding)
        own = masks[0, 1:n + 1].unsqueeze(1).float()  # [N, 1, H, W]
        others = (own.sum(dim=0, keepdim=True) - own).clamp(0, 1)
        memory = self._encode_memory(frame, own.contiguous(memory_format=self.layout),
                                     others.contiguous(memory_format=self.layout))
        return tuple(t.unsqueeze(2) for t in memory)  # type: ignore[return-value]

    @torch.no_grad()
    def object_probabilities(self, frame: torch.Tensor, keys4: torch.Tensor, values4: torch.Tensor,
                             keys3: torch.Tensor, values3: torch.Tensor, keys2: torch.Tensor,
                             values2: torch.Tensor, num_objects: int) -> Tuple[torch.Tensor, Padding]:
        n = int(num_objects)
        padding = padding_to_multiple(frame.shape[2], frame.shape[3])
        r4, r3, r2, k4, v4, k3, k2 = self._encode_query(self._pad(frame, padding))

        read4, attention4 = self.Memory(keys4, values4, k4.expand(n, -1, -1, -1), v4.expand(n, -1, -1, -1))
        cells = attention4.shape[2]
        if attention4.shape[1] > cells:  # the finer levels look at the first and the previous frame only
            attention4 = torch.cat((attention4[:, :cells], attention4[:, -cells:]), dim=1)
        read3, indices, scores = self.Memory_topk3(keys3, values3, k3.expand(n, -1, -1, -1), attention4)
        read2, _, _ = self.Memory_topk2(keys2, values2, k2.expand(n, -1, -1, -1), attention4, indices, scores)

        layout = self.layout
        logits = self._decode(read4.contiguous(memory_format=layout), r3, r2,
                              read3.contiguous(memory_format=layout), read2.contiguous(memory_format=layout))
        return F.softmax(logits, dim=1)[:, 1], padding

    @torch.no_grad()
    def segment(self, frame: torch.Tensor, keys4: torch.Tensor, values4: torch.Tensor,
                keys3: torch.Tensor, values3: torch.Tensor, keys2: torch.Tensor, values2: torch.Tensor,
                num_objects: int) -> torch.Tensor:
        probs, padding = self.object_probabilities(frame, keys4, values4, keys3, values3, keys2, values2,
                                                   num_objects)
        return crop_padding(soft_aggregate_logits(probs), padding)

    def forward(self, *args):
        return self.segment(*args) if args[1].dim() > 4 else self.memorize(*args)


def _refine_shared_skip(refine: Refine, skip: torch.Tensor, coarser: torch.Tensor,
                        memory_read: torch.Tensor) -> torch.Tensor:
    """`Refine.forward` for one query skip feature `[1, C, H, W]` and N objects' reads `[N, C', H, W]`."""
    s = refine.ResFS(refine.convFS(skip) + refine.convMemory(memory_read))
    m = s + F.interpolate(coarser, scale_factor=refine.scale_factor, mode="bilinear", align_corners=False)
    return refine.ResMM(m)


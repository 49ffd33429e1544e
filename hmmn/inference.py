"""HMMN's video loop (upstream `eval_DAVIS.py::Run_video`) with a memory that grows in place, and the
contract's `segment_video` / `make_segmenter` around it.

Schedule, as upstream with `Mem_every=5`: at frame t the previous frame t-1 is memorised with its
soft prediction (the given mask for t = 1). The /16 memory is [kept frames, frame t-1]; frame t-1
stays for good when t-1 is a multiple of `mem_every`. The /8 and /4 memories are [frame 0, frame
t-1]. Upstream re-concatenates the /16 memory every frame (quadratic copying over a video); here it
lives in a preallocated buffer on the model's device that doubles when full.

`segment_video(model, video)` runs a dataset `Video` (DAVIS, YouTube-VOS, a user's clip) at its stored size:
HMMN's tester has no resize rule, so the contract's `resize` changes nothing here.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.data.datasets import Video
from common.inference.fast import FastOptions
from common.inference.video_input import bytes_to_unit_float
from common.runtime.device import device_of
from common.runtime.errors import UserError
from hmmn.fast import FastHMMN
from hmmn.model import HMMN, MemoryTensors, QueryEncoder, crop_padding, load_model, soft_aggregate_logits

FRAME_ENCODER = QueryEncoder  # called once per frame after the first: drives progress bars


INITIAL_MEMORY_SLOTS = 8  # /16 slots preallocated per video; doubled when a long video needs more


class GrowingSlots:
    """A `[N, C, capacity, h, w]` buffer whose first `length` time slots are in use."""

    def __init__(self, first: torch.Tensor, capacity: int) -> None:
        n, c, _, h, w = first.shape
        self.buffer = first.new_empty(n, c, max(capacity, 1), h, w)
        self.length = 0

    def write(self, slot: int, value: torch.Tensor) -> None:
        if slot >= self.buffer.shape[2]:
            grown = self.buffer.new_empty(*self.buffer.shape[:2], 2 * self.buffer.shape[2], *self.buffer.shape[3:])
            grown[:, :, :self.length] = self.buffer[:, :, :self.length]
            self.buffer = grown
        self.buffer[:, :, slot:slot + 1] = value
        self.length = max(self.length, slot + 1)

    def view(self, slots: int) -> torch.Tensor:
        # Slicing the time axis keeps (T, h, w) mergeable, so the matcher can view it as [N, C, T*h*w].
        return self.buffer[:, :, :slots]


class MemoryBank:
    """/16 memory of kept frames + the previous frame; /8 and /4 memory of the first + previous frame."""

    def __init__(self, initial_capacity: Optional[int] = None) -> None:
        self.initial_capacity = initial_capacity or INITIAL_MEMORY_SLOTS
        self.r4: Optional[List[GrowingSlots]] = None   # keys4, values4
        self.fine: Optional[List[GrowingSlots]] = None  # keys3, values3, keys2, values2
        self.kept = 0  # /16 slots kept for good

    def add_previous(self, memory: MemoryTensors) -> None:
        """Put the previous frame's keys/values in the slot after the kept ones (replacing the last one)."""
        k4, v4, k3, v3, k2, v2 = memory
        if self.r4 is None:
            self.r4 = [GrowingSlots(t, self.initial_capacity) for t in (k4, v4)]
            self.fine = [GrowingSlots(t, 2) for t in (k3, v3, k2, v2)]
        assert self.fine is not None
        for buffer, value in zip(self.r4, (k4, v4)):
            buffer.write(self.kept, value)
        fine_slot = 0 if self.fine[0].length == 0 else 1  # slot 0 holds the first frame for good
        for buffer, value in zip(self.fine, (k3, v3, k2, v2)):
            buffer.write(fine_slot, value)

    def keep_previous(self) -> None:
        self.kept += 1

    def tensors(self) -> MemoryTensors:
        assert self.r4 is not None and self.fine is not None, "add_previous first"
        r4_slots = self.kept + 1
        fine_slots = self.fine[0].length
        k4, v4 = (b.view(r4_slots) for b in self.r4)
        k3, v3, k2, v2 = (b.view(fine_slots) for b in self.fine)
        return k4, v4, k3, v3, k2, v2


def frame_tensor(frame: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 `[H, W, 3]` -> float `[1, 3, H, W]` in [0, 1] on `device`, bit-identical to upstream's
    float64 /255 (divided on the CPU, as upstream's loader does)."""
    return bytes_to_unit_float(frame).permute(2, 0, 1)[None].to(device)


def one_hot(labels: torch.Tensor, channels: int) -> torch.Tensor:
    """Label map `[H, W]` -> float one-hot `[1, channels, H, W]`."""
    return F.one_hot(labels.long(), channels).permute(2, 0, 1)[None].float()


MIN_GRID_CELLS = 32  # the /8 top-k picks 32 memory cells, so one frame's /16 grid needs at least 32


def check_frame_size(height: int, width: int) -> None:
    cells = -(-height // 16) * -(-width // 16)
    if cells < MIN_GRID_CELLS:
        raise UserError(f"HMMN needs frames whose 1/16 grid has at least {MIN_GRID_CELLS} cells (e.g. 80x128); "
                        f"got {width}x{height} ({cells} cells); use larger frames")


@torch.no_grad()
def propagate(model: HMMN, frames: Sequence[np.ndarray], first_probs: torch.Tensor, num_objects: int,
              mem_every: int = 5, given: Optional[Mapping[int, torch.Tensor]] = None,
              object_start: Optional[Sequence[int]] = None,
              ) -> Iterator[Tuple[int, torch.Tensor, torch.Tensor]]:
    """Segment frames 1..T-1; yields `(t, logits [1, K, H, W], probs [1, K, H, W])` per frame.

    `frames`: uint8 `[H, W, 3]` images, indexable (an array `[T, H, W, 3]` or a lazy sequence); each
    is read once and moved to the device when it is segmented.
    `first_probs`: one-hot `[1, K, H, W]` of frame 0 (K = num_objects + 1) on the model's device.
    `given` / `object_start` (YouTube-VOS, objects entering mid-video): label maps `[H, W]` of later
    frames with new objects, and the first frame of each object 1..N. Before its first frame an
    object's probability is 0; at a given frame its pixels are overwritten by the annotation and the
    frame is kept in the /16 memory for good. Without them the loop is exactly upstream's.
    """
    device = first_probs.device
    check_frame_size(*first_probs.shape[-2:])
    model.Memory.reset()
    bank = MemoryBank()
    keep = set(range(0, len(frames), mem_every))
    if given:
        keep |= set(given)
    probs = first_probs
    previous = frame_tensor(frames[0], device)
    for t in range(1, len(frames)):
        bank.add_previous(model.memorize(previous, probs, num_objects))
        query = frame_tensor(frames[t], device)
        if object_start is None:
            logits = model.segment(query, *bank.tensors(), num_objects)
        else:
            fg, padding = model.object_probabilities(query, *bank.tensors(), num_objects)
            absent = torch.tensor([start > t for start in object_start], device=device)
            fg = fg.masked_fill(absent.view(-1, 1, 1), 0.0)
            logits = crop_padding(soft_aggregate_logits(fg), padding)
        probs = F.softmax(logits, dim=1)
        if given and t in given:
            labels = given[t].to(device)
            probs = torch.where(labels > 0, one_hot(labels, probs.shape[1]), probs)
        if t - 1 in keep:
            bank.keep_previous()
        previous = query
        yield t, logits, probs


@torch.no_grad()
def track(model: nn.Module, frames: Sequence[np.ndarray], first_labels: np.ndarray, num_objects: int,
          mem_every: int = 5, given: Optional[Mapping[int, np.ndarray]] = None,
          object_start: Optional[Sequence[int]] = None) -> Dict[int, np.ndarray]:
    """Label maps `{t: uint8 [H, W]}` for every frame of a video (frame 0 = its given labels).

    `first_labels` holds object ids 1..num_objects (0 = background); pred = argmax of the soft
    probabilities, first maximum on ties, as upstream. `given` / `object_start`: see `propagate`.
    """
    device = device_of(model)
    first = one_hot(torch.from_numpy(first_labels.astype(np.int64)).to(device), num_objects + 1)
    given_t = {t: torch.from_numpy(m.astype(np.int64)) for t, m in (given or {}).items()}
    out = {0: first_labels.astype(np.uint8)}
    for t, _, probs in propagate(model, frames, first, num_objects, mem_every, given_t or None, object_start):
        out[t] = probs[0].argmax(dim=0).to(torch.uint8).cpu().numpy()
    return out


class LazyFrames:
    """A video's frames read from disk on demand (long YouTube-VOS videos need not sit in memory)."""

    def __init__(self, video: Video) -> None:
        self.video = video

    def __len__(self) -> int:
        return len(self.video.frame_paths)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.video.load_frame(index)


def object_ids(given: Mapping[int, np.ndarray]) -> List[int]:
    """The object ids of a video's given masks, sorted."""
    return sorted({int(i) for m in given.values() for i in np.unique(m)} - {0})


@torch.no_grad()
def segment_video(model: nn.Module, video: Video, *, resize: bool = True, mem_every: int = 5) -> Dict[int, np.ndarray]:
    """`{frame index: uint8 [H, W] labels}` for every frame of `video`, at its stored size.

    `model`: an `HMMN` or its `FastHMMN` wrapper (frames go to its device). `resize` is the contract's switch
    for the official evaluator's size rule; HMMN's (`eval_DAVIS.py`) runs every frame at its stored size, so
    either value gives the same result. `mem_every`: keep every N-th frame in the /16 memory (upstream: 5).

    When every object is given in frame 0 (DAVIS), the loop is exactly upstream's `eval_DAVIS.py`: the
    network tracks ids 1..max of the first mask (upstream's `num_objects`; an id missing below the maximum
    is an empty object, as there). Where objects first appear after frame 0 (YouTube-VOS: a later annotation
    PNG holds the entering objects), the official code (only a DAVIS tester) has no rule; the reconstruction
    (hmmn/README.md): ids are numbered 1..N for the network and mapped back, an object is absent
    (probability 0) before its first annotation, its annotated pixels replace the prediction there, and that
    frame joins the /16 memory for good.
    """
    given = video.load_given_masks()
    ids = object_ids(given)
    if not ids:
        raise UserError(f"the annotations of {video.name} hold no object "
                        f"({', '.join(str(p) for _, p in sorted(video.mask_paths.items()))})")
    to_net = np.zeros(256, dtype=np.uint8)
    to_net[ids] = np.arange(1, len(ids) + 1)
    to_dataset = np.zeros(len(ids) + 1, dtype=np.uint8)
    to_dataset[1:] = ids
    masks = {t: to_net[m] for t, m in given.items()}
    start = [min(t for t, m in masks.items() if np.any(m == k)) for k in range(1, len(ids) + 1)]
    if not any(start):  # every object given in frame 0: upstream's DAVIS loop, ids as they are
        first = given[0]
        return track(model, LazyFrames(video), first, int(first.max()), mem_every)
    first = masks.get(0, np.zeros_like(next(iter(masks.values()))))
    later = {t: m for t, m in masks.items() if t > 0}
    labels = track(model, LazyFrames(video), first, len(ids), mem_every, given=later, object_start=start)
    return {t: to_dataset[m] for t, m in labels.items()}


def load_segmenter(weights: Optional[Union[str, os.PathLike]], device: torch.device,
                   fast: Optional[FastOptions] = None) -> torch.nn.Module:
    """`load_model(weights, device)`, wrapped in `FastHMMN` when `fast` options are given (else the faithful
    network)."""
    model = load_model(weights, device)
    return model if fast is None else FastHMMN(model, fast)


def make_segmenter(weights: Optional[Union[str, os.PathLike]], device: torch.device, *,
                   fast: Optional[FastOptions] = None, resize: bool = True,
                   mem_every: int = 5) -> Callable[[Video], Dict[int, np.ndarray]]:
    """Video -> label maps with upstream's memory schedule (`load_segmenter`, then `segment_video`; `resize` as
    there)."""
    model = load_segmenter(weights, device, fast)
    return lambda video: segment_video(model, video, resize=resize, mem_every=mem_every)

"""HMMN's part of the shared training pipeline: the clip forward, the loss, the learning-rate schedule and the
two stages. A reconstruction: the authors did not release training code and pointed to STCN's (Hongje/HMMN
issues 2, 4); hmmn/README.md ("Training") gives the source of every number here.

- Forward (`clip_logits`): HMMN's own inference order on a clip: frame 0 with its given masks is memorised,
  each next frame is segmented from the memory of all frames before it (/16: every one, flow-tracked
  kernels; /8 and /4: the first and the previous frame, as in `hmmn.inference`), and its soft prediction is
  memorised for the next frame (not detached, as STCN). Two objects per clip, soft-aggregated like at test
  time; a clip without a second object gets no pass for it (STCN computes one and masks it out with its
  `selector`: the same outputs and loss with BatchNorm frozen, as the recipe keeps it, at a fifth fewer passes on
  the generated training data). `--teacher-forcing` (not in the recipe; scratch training) memorises each frame's
  ground truth instead of its prediction.
  `--unclamped-aggregation` (not in the recipe; scratch training) computes the same aggregated logits in log
  space, without the released clamp of the probabilities to [1e-7, 1 - 1e-7] (`unclamped_aggregate_logits`).
- Memory read-out dropout (`MemoryReadDropout`): the paper's top-k guided matching drops the fine-scale read-out
  in training; the author's recipe (issue 1) drops it with probability 0.5 per decoder level and pass.
- Loss (`bootstrapped_ce`): STCN's bootstrapped cross-entropy, summed over the predicted frames
  (`--no-bootstrap`, not in the recipe: every pixel throughout). `--dice-loss` (not in the recipe) adds a soft Dice
  term per object (`dice_loss`). `--matching-supervision`, `--matching-labels` and `--fine-matching-supervision` (not
  in the recipe) add `ReadoutSupervision`'s losses on the read-out attentions.
- Adam (weight decay 1e-7), one step decay x0.1 (`Recipe`; `--warmup-steps`, not in the recipe, ramps each
  stage's first steps; `--cosine-lr`, not in the recipe, puts a half cosine to 0 in the step decay's place); the
  network trains whole (STCN trains its encoders), BatchNorm frozen in eval() as in the shared Trainer and in STCN.

`HMMNTrainer` is the shared `common.training.Trainer` (checkpoints, resume, validation, DDP, logs) with
HMMN's epoch: this loss, this schedule, the max-skip curriculum and its own skip rule.
"""
from __future__ import annotations

import contextlib
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.training.trainer import TrainConfig, Trainer, Validate, cosine_lr
from hmmn.model import HMMN, PROB_CLAMP, FineAttention, KernelGuidedMemory, soft_aggregate_logits
from hmmn.options import MEMORY_DROPOUT

OBJECTS_PER_CLIP = 2          # STCN's main training: the target and (when the clip has one) a second object


# --- forward --------------------------------------------------------------------------------------------------------------

class MemoryReadDropout:
    """While active, each decoder `Refine` drops its /8 or /4 memory read-out with probability `p` per pass.

    `convMemory` has no bias, so a dropped read-out contributes exactly 0: `convFS(skip)` alone, the
    author's code path (issue 1). Forward hooks leave the network and its state_dict untouched.
    """

    def __init__(self, p: float, rng=random) -> None:
        self.p = p
        self.rng = rng

    @contextlib.contextmanager
    def active(self, model: HMMN) -> Iterator[None]:
        if self.p <= 0:
            yield
            return
        handles = [refine.convMemory.register_forward_hook(self._hook)
                   for refine in (model.Decoder.RF3, model.Decoder.RF2)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _hook(self, module: nn.Module, inputs, output: torch.Tensor) -> Optional[torch.Tensor]:
        return torch.zeros_like(output) if self.rng.random() < self.p else None


def object_passes(present: torch.Tensor) -> torch.Tensor:
    """The (clip, object) pairs a batch computes, as indices into its `B*N` pairs (objects of a clip consecutive):
    those of the objects its clips have (`object_masks`' `present` `[B, N]`)."""
    return present.flatten().nonzero().squeeze(1)


def _memorize(model: HMMN, frames: torch.Tensor, probs: torch.Tensor,
              passes: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """`HMMN.memorize` for a batch of clips: frames `[B, 3, H, W]`, object probabilities `[B, N, H, W]` ->
    keys/values `[P, C, 1, h, w]` of the P (clip, object) pairs in `passes` (`object_passes`)."""
    b, n, h, w = probs.shape
    others = torch.stack([(probs.sum(dim=1) - probs[:, o]).clamp(0, 1) for o in range(n)], 1).reshape(b * n, h, w)
    own = probs.reshape(b * n, h, w)
    r4, r3, r2 = model.Encoder_M(frames[passes // n], own[passes], others[passes])
    k4, v4 = model.KV_M_r4(r4)
    k3, v3 = model.KV_M_r3(r3)
    k2, v2 = model.KV_M_r2(r2)
    return tuple(t.unsqueeze(2) for t in (k4, v4, k3, v3, k2, v2))


def _kernel_read(memory: KernelGuidedMemory, mem_key: torch.Tensor, mem_value: torch.Tensor,
                 query_key: torch.Tensor, query_value: torch.Tensor,
                 log_attentions: Optional[List[torch.Tensor]] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """`KernelGuidedMemory.forward` without its in-place re-weighting (`mul_` / `div_` on the softmax output,
    which autograd cannot differentiate through); the same operations in the same order otherwise.
    `log_attentions`, when given, receives the logarithm of the attention `[B, memory cells, query cells]`,
    computed from the scores (a saturated attention keeps its gradient there, `ReadoutSupervision`)."""
    b, key_dim, slots, h, w = mem_key.shape
    value_dim = mem_value.shape[1]
    mk = mem_key.view(b, key_dim, slots * h * w).transpose(1, 2)
    scores = torch.bmm(mk, query_key.view(b, key_dim, h * w)) / math.sqrt(key_dim)
    kernel = memory.kernels(scores, b, slots, h, w)  # advances the flow table, as at test time
    attention = F.softmax(scores, dim=1) * kernel
    attention = attention / attention.sum(dim=1, keepdim=True)
    if log_attentions is not None:
        weighted = F.log_softmax(scores, dim=1) + kernel.clamp_min(1e-30).log()
        log_attentions.append(weighted - weighted.logsumexp(dim=1, keepdim=True))
    read = torch.bmm(mem_value.view(b, value_dim, slots * h * w), attention).view(b, value_dim, h, w)
    return torch.cat([read, query_value], dim=1), attention


def _object_logits(model: HMMN, frames: torch.Tensor, clips: torch.Tensor, keys4, values4, keys3, values3, keys2,
                   values2, log_attentions: Optional[List[torch.Tensor]] = None,
                   fine_attentions: Optional[List[FineAttention]] = None) -> torch.Tensor:
    """The decoder's (background, object) logits `[P, 2, H, W]` of P object passes over a batch of frames
    `[B, 3, H, W]`, `clips` `[P]` the frame of each pass, the memory `[P, ...]` (`_memorize`); their softmax is
    `HMMN.object_probabilities` (`tests/test_hmmn_train.py` checks they agree). `log_attentions`, when given,
    receives the /16 read-out's log-attention `[P, memory cells, query cells]`, `fine_attentions` the /8 and /4
    ones (`FineAttention`)."""
    r4, r3, r2 = model.Encoder_Q(frames)
    k4, v4 = model.KV_Q_r4(r4)
    k3, _ = model.KV_Q_r3(r3)
    k2, _ = model.KV_Q_r2(r2)
    k4e, v4e, k3e, k2e, r3e, r2e = (t[clips] for t in (k4, v4, k3, k2, r3, r2))
    read4, attention4 = _kernel_read(model.Memory, keys4, values4, k4e, v4e, log_attentions)
    cells = attention4.shape[2]
    if attention4.shape[1] > cells:
        attention4 = torch.cat((attention4[:, :cells], attention4[:, -cells:]), dim=1)
    read3, indices, scores = model.Memory_topk3(keys3, values3, k3e, attention4, log_attentions=fine_attentions)
    read2, _, _ = model.Memory_topk2(keys2, values2, k2e, attention4, indices, scores, fine_attentions)
    return model.Decoder(read4, r3e, r2e, read3, read2)


def unclamped_aggregate_logits(object_logits: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """`soft_aggregate_logits` of a batch computed in log space, without its clamp (`--unclamped-aggregation`).

    `object_logits` `[B, N, 2, H, W]` (the decoder's), `present` `[B, N]` -> `[B, N+1, H, W]`. With
    p = softmax(object_logits)[1] = sigmoid(d), d the logit difference, an object's aggregated logit
    log(p / (1 - p)) is d itself and the background's is log(q / (1 - q)), log q = sum log(1 - p). Equal to
    the released aggregation wherever its clamp is inactive; where the clamp would hold a confidently wrong
    pixel at 1e-7 or 1 - 1e-7, its gradient is zero (from a random start at lr 3e-4 the loss stuck there within
    10 steps, hmmn/README.md); here the object logits always keep theirs. An absent object gets the released
    aggregation's floor, log(1e-7 / (1 - 1e-7)).
    """
    d = object_logits[:, :, 1] - object_logits[:, :, 0]
    present = present.view(*present.shape, 1, 1)
    log_background = (F.logsigmoid(-d) * present).sum(dim=1, keepdim=True)
    # the clamp keeps log(1 - q) finite where q rounds to 1 (every object's d below about -28)
    log_background = log_background.clamp(max=-1e-12)
    background = log_background - torch.log(-torch.expm1(log_background))
    floor = math.log(PROB_CLAMP / (1 - PROB_CLAMP))
    objects = torch.where(present > 0, d, torch.full_like(d, floor))
    return torch.cat([background, objects], dim=1)


def object_masks(masks: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Labels `[B, L, 1, H, W]` -> per-object masks `[B, L, N, H, W]` and which objects exist `[B, N]`."""
    onehot = torch.stack([(masks[:, :, 0] == k + 1) for k in range(OBJECTS_PER_CLIP)], dim=2).float()
    present = onehot[:, 0].flatten(2).amax(dim=2)
    present[:, 0] = 1.0  # the target always exists (the skip rule drops clips without one)
    return onehot, present


def clip_logits(model: HMMN, imgs: torch.Tensor, masks: torch.Tensor, teacher_forcing: bool = False,
                unclamped: bool = False, log_attentions: Optional[List[torch.Tensor]] = None,
                fine_attentions: Optional[List[FineAttention]] = None) -> torch.Tensor:
    """Aggregated logits `[B, L-1, N+1, H, W]` (background, target, second object) of frames 1..L-1.

    `imgs` `[B, L, 3, H, W]` in [0, 1] (H, W multiples of 16), `masks` `[B, L, 1, H, W]` labels.
    `teacher_forcing`: each predicted frame is memorised with its ground-truth masks, not its prediction.
    `unclamped`: the aggregation in log space (`unclamped_aggregate_logits`), not the released clamped one.
    `log_attentions`: receives each predicted frame's /16 read-out log-attention (`ReadoutSupervision`);
    `fine_attentions` its /8 and /4 ones (`FineAttention`, two per predicted frame).
    """
    b, length, _, h, w = imgs.shape
    if h % 16 or w % 16 or h * w < 16 * 16 * 32:
        raise ValueError(f"HMMN trains on crops whose sides are multiples of 16 with >= 32 cells at /16, "
                         f"got {h}x{w}")
    onehot, present = object_masks(masks)
    n = OBJECTS_PER_CLIP
    passes = object_passes(present)
    probs = onehot[:, 0]
    memory: List[Tuple[torch.Tensor, ...]] = []
    out = []
    model.Memory.reset()  # the /16 flow table follows this clip from its first frame
    for t in range(1, length):
        memory.append(_memorize(model, imgs[:, t - 1], probs, passes))
        coarse = [torch.cat([m[i] for m in memory], dim=2) for i in (0, 1)]
        fine_frames = memory[:1] + memory[-1:] if len(memory) > 1 else memory
        fine = [torch.cat([m[i] for m in fine_frames], dim=2) for i in (2, 3, 4, 5)]
        computed = _object_logits(model, imgs[:, t], passes // n, *coarse, *fine, log_attentions, fine_attentions)
        # an absent object's logits are never read: both aggregations below give it the floor
        object_logits = computed.new_zeros(b * n, *computed.shape[1:]).index_copy(0, passes, computed)
        if unclamped:
            logits = unclamped_aggregate_logits(object_logits.view(b, n, 2, h, w), present)
        else:
            fg = F.softmax(object_logits, dim=1)[:, 1].view(b, n, h, w) * present.view(b, n, 1, 1)
            logits = torch.cat([soft_aggregate_logits(fg[i]) for i in range(b)], dim=0)
        probs = onehot[:, t] if teacher_forcing else F.softmax(logits, dim=1)[:, 1:]
        out.append(logits)
    return torch.stack(out, dim=1)


def cell_coverage(masks: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Each object's share of every /16 cell: labels `[B, L, 1, H, W]` -> coverage `[B, L, N, cells]` (cells row by
    row, as the read-out flattens them) and which objects exist `[B, N]` (`object_masks`)."""
    onehot, present = object_masks(masks)
    b, length, n, h, w = onehot.shape
    return F.adaptive_avg_pool2d(onehot.flatten(0, 1), (h // 16, w // 16)).view(b, length, n, -1), present


def cell_labels(coverage: torch.Tensor) -> torch.Tensor:
    """The label of the larger part of every /16 cell (0 background, 1 target, 2 second object; a tie goes to the
    lower label): `cell_coverage`'s `[B, L, N, cells]` -> `[B, L, cells]`."""
    background = 1 - coverage.sum(dim=2, keepdim=True)
    return torch.cat([background, coverage], dim=2).argmax(dim=2)


def memory_coverage(coverage: torch.Tensor, frames: int) -> torch.Tensor:
    """`cell_coverage` of frames 0..frames-1 as the /16 memory holds them: `[B*N, frames*cells]`, objects of a clip
    consecutive and each object's frames in memory order (the rows of the read-out attention)."""
    b, _, n, _ = coverage.shape
    return coverage[:, :frames].permute(0, 2, 1, 3).reshape(b * n, -1)


class ReadoutSupervision:
    """`--matching-supervision`, `--matching-labels` and `--fine-matching-supervision` for HMMN (scratch-training
    aids, off by default; EMVOS's switch, HMMN's matching).

    HMMN's decoder sees no previous mask: everything it knows of the target comes through the /16 read-out,
    whose attention a random start has to learn from the final masks alone; trained so on generated data it
    saturated to one memory cell per query cell, a background one (hmmn/README.md). Three losses tell the
    attention directly, per predicted frame and averaged over them (the network, its state_dict and inference
    untouched):

    - share (`weight`): for every query cell, the share of its attention on memory cells of the object (the
      memorised frames' ground truth, averaged over each cell) should be 1 where most of the cell is the object
      and 0 where it is not; the binary cross-entropy of that share, per present object, averaged.
    - labels (`label_weight`): every query cell's attention should spread evenly over the memory cells whose
      larger part has the query cell's own label (background, target or second object); the cross-entropy of
      the attention against that spread, averaged over the query cells that have such memory cells, in every
      object's pass. The share is met by a single right cell; this asks for all of them, which keeps the
      attention from settling on one cell per query (hmmn/README.md measures both).
    - fine (`fine_weight`): the share loss at /8 and at /4, over the candidate pixels each top-k guided read
      chose, per query pixel (`FineAttention`).

    All are computed from the log-attention, so a saturated attention still gets a gradient.
    """

    WEIGHT = 1.0
    # log-coverage of an uncovered memory cell: finite (-inf would turn a row without any covered cell into NaN
    # gradients) and far below any attention's log, so it never stands in for a covered cell
    UNCOVERED = -1e4

    def __init__(self, weight: float = WEIGHT, label_weight: float = 0.0, fine_weight: float = 0.0) -> None:
        self.weight = weight
        self.label_weight = label_weight
        self.fine_weight = fine_weight
        self.log_attentions: List[torch.Tensor] = []
        self.fine_attentions: List[FineAttention] = []  # filled only when `fine_weight` asks for them

    def loss(self, masks: torch.Tensor) -> torch.Tensor:
        """The loss of the log-attentions collected since the last call (`clip_logits(..., log_attentions=...)`
        on the clip whose labels are `masks` `[B, L, 1, H, W]`)."""
        log_attentions, self.log_attentions = self.log_attentions, []
        fine_attentions, self.fine_attentions = self.fine_attentions, []
        cells, present = cell_coverage(masks)
        passes = object_passes(present)  # the attentions' rows: `clip_logits` computes only these
        b, length, n, _ = cells.shape
        if len(log_attentions) != length - 1:
            raise RuntimeError(f"read-out supervision expected {length - 1} attentions, got {len(log_attentions)}")
        if self.fine_weight and len(fine_attentions) != 2 * (length - 1):
            raise RuntimeError(f"read-out supervision expected {2 * (length - 1)} /8 and /4 attentions, "
                               f"got {len(fine_attentions)}")
        # only what the weights ask for: the cells' labels `[P, L, cells]` (the same in every pass), the masks
        labels = cell_labels(cells)[passes // n] if self.label_weight else None
        onehot = object_masks(masks)[0] if self.fine_weight else None
        total = masks.new_zeros((), dtype=torch.float32)
        for t, log_attention in enumerate(log_attentions, start=1):
            if self.weight:
                total = total + self.weight * self._share_loss(log_attention, cells, passes, t)
            if self.label_weight:
                total = total + self.label_weight * self._label_loss(log_attention, labels, t)
            if self.fine_weight:
                for fine in fine_attentions[2 * (t - 1):2 * t]:
                    total = total + self.fine_weight * self._fine_share_loss(fine, onehot, passes, t)
        return total / len(log_attentions)

    def _share_loss(self, log_attention: torch.Tensor, cells: torch.Tensor, passes: torch.Tensor,
                    t: int) -> torch.Tensor:
        b, _, n, _ = cells.shape
        memory = memory_coverage(cells, t)[passes].unsqueeze(2)  # [P, memory cells, 1]
        return self._share(log_attention, memory, cells[:, t].reshape(b * n, -1)[passes], dim=1)

    def _fine_share_loss(self, fine: FineAttention, onehot: torch.Tensor, passes: torch.Tensor,
                         t: int) -> torch.Tensor:
        """`_share_loss` of a top-k guided read (/8 or /4): over its candidates, per query pixel; `onehot` is
        `object_masks`' `[B, L, N, H, W]`."""
        b, length, n = onehot.shape[:3]
        gh, gw, cell = fine.log_attention.shape[1:4]
        height, width = gh * cell, gw * cell
        coverage = F.adaptive_avg_pool2d(onehot.flatten(0, 1), (height, width)).view(b, length, n, height, width)
        frames = [0] if t == 1 else [0, t - 1]  # the first and the previous frame, as the fine memory holds them
        memory = coverage[:, frames].transpose(1, 2).reshape(b * n, 1, len(frames), height, width)[passes]
        memory = fine.candidates(memory, 1)[..., 0][:, :, :, None, None, :]  # [P, gh, gw, 1, 1, candidates]
        query = coverage[:, t].reshape(b * n, gh, cell, gw, cell)[passes].transpose(2, 3)  # [P, gh, gw, cell, cell]
        return self._share(fine.log_attention, memory, query, dim=-1)

    def _share(self, log_attention: torch.Tensor, memory: torch.Tensor, query: torch.Tensor,
               dim: int) -> torch.Tensor:
        """The share loss of log-attentions over memory positions along `dim`, the memory's object coverage
        (broadcastable to them) and the query's (the attention without `dim`), passes first; their mean."""
        log_object = (log_attention + self._log_or_uncovered(memory)).logsumexp(dim=dim)
        log_rest = (log_attention + self._log_or_uncovered(1 - memory)).logsumexp(dim=dim)
        # a memory without any cell of one side cannot be matched to it: those terms are left out
        object_in_memory = (memory > 0).any(dim=dim).float()
        rest_in_memory = (memory < 1).any(dim=dim).float()
        target = (query > 0.5).float()
        per_object = -(target * log_object * object_in_memory
                       + (1 - target) * log_rest * rest_in_memory).flatten(1).mean(dim=1)
        return per_object.mean()

    @staticmethod
    def _label_loss(log_attention: torch.Tensor, labels: torch.Tensor, t: int) -> torch.Tensor:
        memory = labels[:, :t].flatten(1)  # [P, memory cells], in memory order
        same = (memory.unsqueeze(2) == labels[:, t].unsqueeze(1)).float()  # [P, memory cells, query cells]
        count = same.sum(dim=1)
        per_cell = -(log_attention * same).sum(dim=1) / count.clamp_min(1)
        return per_cell[count > 0].mean()

    def _log_or_uncovered(self, coverage: torch.Tensor) -> torch.Tensor:
        return torch.where(coverage > 0, coverage.clamp_min(1e-30).log(), torch.full_like(coverage, self.UNCOVERED))


class ClipForward:
    """`forward_clip` for the shared Trainer: `clip_logits` with the memory read-out dropout switched on, the
    attentions handed to `readout` when there is one."""

    def __init__(self, dropout: MemoryReadDropout, unclamped: bool = False,
                 readout: Optional[ReadoutSupervision] = None) -> None:
        self.dropout = dropout
        self.unclamped = unclamped
        self.readout = readout

    def __call__(self, model: nn.Module, imgs: torch.Tensor, masks: torch.Tensor,
                 teacher_forcing: bool = False) -> torch.Tensor:
        readout = self.readout
        log_attentions = None if readout is None else readout.log_attentions
        fine_attentions = readout.fine_attentions if readout is not None and readout.fine_weight else None
        with self.dropout.active(model):
            return clip_logits(model, imgs, masks, teacher_forcing, self.unclamped, log_attentions, fine_attentions)


# --- loss and statistics -------------------------------------------------------------------------------------------

def bootstrapped_ce(logits: torch.Tensor, masks: torch.Tensor, top_p: float) -> torch.Tensor:
    """STCN's loss: per clip and frame, the mean cross-entropy of the `top_p` hardest pixels (all pixels for
    `top_p=1`), averaged over clips and summed over frames. A clip without a second object is scored on
    (background, target) only."""
    _, present = object_masks(masks)
    b, frames = logits.shape[:2]
    total = logits.new_zeros(())
    for t in range(frames):
        for j in range(b):
            classes = 3 if present[j, 1] > 0 else 2
            raw = F.cross_entropy(logits[j:j + 1, t, :classes], masks[j:j + 1, t + 1, 0], reduction="none").view(-1)
            if top_p < 1:
                raw = torch.topk(raw, max(1, int(raw.numel() * top_p)), sorted=False).values
            total = total + raw.mean() / b
    return total


def dice_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """`--dice-loss` (not in the recipe; scratch training; Cutie's cross-entropy + Dice): per clip and predicted
    frame, 1 - (2 sum(p g) + 1) / (sum(p) + sum(g) + 1) of each object's aggregated probability p against its mask
    g, averaged over the objects the clip has, then over clips, summed over frames (`bootstrapped_ce`'s shape). The
    cross-entropy weighs pixels, so a small object counts for little; here each object counts the same. A clip
    without a second object takes the softmax over (background, target), as `bootstrapped_ce` does."""
    onehot, present = object_masks(masks)
    classes = torch.cat([torch.ones_like(present[:, :1]), present], dim=1) > 0  # [B, N+1]
    logits = logits.masked_fill(~classes[:, None, :, None, None], float("-inf"))
    probs = F.softmax(logits, dim=2)[:, :, 1:].flatten(3)  # [B, frames, N, pixels]
    truth = onehot[:, 1:].flatten(3)
    overlap = 1 - (2 * (probs * truth).sum(3) + 1) / (probs.sum(3) + truth.sum(3) + 1)  # [B, frames, N]
    per_frame = (overlap * present[:, None]).sum(2) / present.sum(1, keepdim=True)
    return per_frame.mean(0).sum()


def target_iou_counts(logits: torch.Tensor, masks: torch.Tensor) -> Tuple[float, float]:
    """(intersection, union) pixel counts of the target object over the batch (STCN's `hide_iou`)."""
    pred = logits.argmax(dim=2) == 1
    gt = masks[:, 1:, 0] == 1
    return float((pred & gt).sum()), float((pred | gt).sum())


# --- optimiser schedule --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Recipe:
    """Optimiser and loss schedule of one stage, positions as fractions of the stage (STCN's absolute iterations
    divided by its stage length, so shortened runs keep the shape)."""
    lr: float = 1e-5
    weight_decay: float = 1e-7
    gamma: float = 0.1
    decay_at: Tuple[float, ...] = (125_000 / 150_000,)
    bootstrap_start: float = 20_000 / 150_000
    bootstrap_end: float = 70_000 / 150_000
    top_p: float = 0.15
    warmup_steps: int = 0  # not in the recipe (`--warmup-steps`, scratch training)
    cosine: bool = False   # not in the recipe (`--cosine-lr`, scratch training): a half cosine instead of the decay

    def lr_at(self, fraction: float, step: int = 0) -> float:
        """The learning rate at this share of the stage, for its optimizer step `step` (0 = the first)."""
        warmup = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        if self.cosine:
            return warmup * cosine_lr(self.lr, fraction)
        return warmup * self.lr * self.gamma ** sum(fraction >= f for f in self.decay_at)

    def top_p_at(self, fraction: float) -> float:
        if fraction < self.bootstrap_start:
            return 1.0
        if fraction > self.bootstrap_end:
            return self.top_p
        share_left = (self.bootstrap_end - fraction) / max(self.bootstrap_end - self.bootstrap_start, 1e-9)
        return self.top_p + (1 - self.top_p) * share_left


STATIC_RECIPE = Recipe(decay_at=(150_000 / 300_000,), bootstrap_start=20_000 / 300_000,
                       bootstrap_end=70_000 / 300_000)
MAIN_RECIPE = Recipe()


# --- trainer -----------------------------------------------------------------------------------------------------------

class HMMNTrainer(Trainer):
    """The shared Trainer with HMMN's epoch (see the module docstring); everything else is inherited."""

    visible_object_rule = "stay visible inside the --crop"  # STCN-style random crops: no balanced cropping

    def __init__(self, model: HMMN, train_set, config: TrainConfig, out_dir: Path, device: torch.device,
                 recipe: Recipe, validate: Optional[Validate] = None, resume: bool = False,
                 memory_dropout: float = MEMORY_DROPOUT, unclamped_aggregation: bool = False,
                 readout_supervision: bool = False, readout_labels: bool = False,
                 readout_fine: bool = False, dice: bool = False) -> None:
        config.lr = recipe.lr
        config.swap_attach_probability = 0.0  # not part of HMMN's (STCN's) recipe
        self.recipe = recipe
        self.dice = dice
        self.readout = None
        if readout_supervision or readout_labels or readout_fine:
            weights = [ReadoutSupervision.WEIGHT if on else 0.0
                       for on in (readout_supervision, readout_labels, readout_fine)]
            self.readout = ReadoutSupervision(*weights)
        forward = ClipForward(MemoryReadDropout(memory_dropout), unclamped_aggregation, self.readout)
        super().__init__(model, forward, train_set, config, out_dir, device, validate, resume=resume)
        for group in self.optimizer.param_groups:  # a resumed optimizer already carries it
            group["weight_decay"] = recipe.weight_decay

    def train_epoch(self, epoch: int) -> tuple:
        """The shared epoch (skip rule, NaN check, DDP statistics, per-step CSV rows) with HMMN's loss, learning
        rate schedule and max-skip curriculum."""
        cfg = self.config
        self.model.train(cfg.bn_train)
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        # the recipe's positions are shares of the stage: of its epochs, or of its --time-limit when that ends it
        # sooner (a time-limited run still decays, bootstraps and widens its skips)
        start = self.progress(epoch)
        self.loader.dataset.set_progress(start)  # max-skip curriculum (workers copy it)
        per_step = 1 / (len(self.loader) * cfg.epochs)
        sums = torch.zeros(4, dtype=torch.float64)  # loss * clips, clips, intersection, union
        self._epoch_rows = []
        for step, batch in enumerate(self.loader):
            self.batches_seen += 1
            fraction = min(1.0, start + step * per_step)
            lr = self.recipe.lr_at(fraction, self.step)
            self.set_lr(lr)
            imgs = batch["imgs"].to(self.device, non_blocking=True)
            masks = batch["masks"].to(self.device, non_blocking=True)
            has_target = bool((masks[:, 0] == 1).flatten(1).any(dim=1).all())
            if not self._everywhere(has_target):  # DDP: every rank skips the same steps
                self._check_usable_clips()
                continue
            logits = self.step_module(imgs, masks)
            loss = bootstrapped_ce(logits, masks, self.recipe.top_p_at(fraction))
            # the log keeps the recipe's loss; the optimiser sees the scratch-training terms too
            objective = loss + dice_loss(logits, masks) if self.dice else loss
            if self.readout is not None:
                objective = objective + self.readout.loss(masks)
            self.optimize(objective, epoch, step)
            inter, union = target_iou_counts(logits.detach(), masks)
            sums += torch.tensor([loss.item() * imgs.shape[0], imgs.shape[0], inter, union], dtype=torch.float64)
            self._epoch_rows.append({"step": self.step, "epoch": epoch, "loss": loss.item(),
                                     "iou": (inter + 1) / (union + 1), "jf": None, "lr": lr})
        if self.dist.enabled:  # the log and the bar show the global batch's statistics
            sums = sums.to(self.device)
            torch.distributed.all_reduce(sums)
            sums = sums.cpu()
        loss_sum, clips, inter, union = sums.tolist()
        if not clips:  # every batch of this epoch was skipped
            return float("nan"), float("nan")
        return loss_sum / clips, (inter + 1) / (union + 1)

"""The GIS-RAmap interactive loop: one call of `GISSession.run_round` per user interaction.

Each round (the paper's Fig. 2, `Main_tester.run_VOS_singleiact` in the reference):

1. the annotated frame's scribbles (all scribbles given on it so far) become three interaction
   channels per object: previous mask (0.5 in round 1), positive map, negative map;
2. the sparse-to-dense network turns frame + channels into an object feature, kept for all later
   rounds, and the frame is segmented;
3. the result is propagated backward, then forward from the annotated frame over the *proportion
   window* (up to 99 % of the way to the nearest other annotated frames); near another annotated
   frame the new probabilities are alpha-blended with the previous round's;
4. every visited frame gets a reliability score; RS1/RS4 recommend the least reliable frames
   as the next ones to annotate.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from common.data.davisinteractive_compat import apply as _apply_davisinteractive_compat
from common.inference.video_input import bytes_to_unit_float
from gis.model import GISNet
from gis.options import GUIDE_METHODS

if TYPE_CHECKING:
    from gis.fast import AnnotationFeatures, FastGIS, FrameFeatures

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)  # called `var` in the reference config, used as a standard deviation

PadInfo = Tuple[Tuple[int, int], Tuple[int, int]]  # ((top, bottom), (left, right))
FrameCallback = Callable[[int], None]  # called with each frame a round has just segmented


# ----------------------------------------------------------------------------------------------
# Input preparation
# ----------------------------------------------------------------------------------------------
def pad_info(height: int, width: int) -> PadInfo:
    """Each side grows to the next multiple of 32 *strictly above* it (96 -> 128, 480 -> 512);
    the smaller half goes before (top/left)."""
    dh, dw = 32 - height % 32, 32 - width % 32
    return (dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2)


def normalise_image(rgb: np.ndarray) -> torch.Tensor:
    """uint8 [H,W,3] -> ImageNet-normalised float32 [H,W,3] on the CPU, as the reference's
    `Normalize_ApplymeanvarImage` computes it in numpy (on a GPU, /255 would differ by one ulp)."""
    mean = torch.tensor(MEAN, dtype=torch.float32)
    std = torch.tensor(STD, dtype=torch.float32)
    return (bytes_to_unit_float(rgb) - mean) / std


def prepare_image(rgb: np.ndarray, pad: PadInfo, device: torch.device) -> torch.Tensor:
    """uint8 [H,W,3] -> reflect-padded, ImageNet-normalised float32 [1,3,Hp,Wp] on `device`."""
    x = normalise_image(rgb).to(device).permute(2, 0, 1).unsqueeze(0)
    (top, bottom), (left, right) = pad
    return F.pad(x, (left, right, top, bottom), mode="reflect")


def crop(x: torch.Tensor, pad: PadInfo) -> torch.Tensor:
    (top, bottom), (left, right) = pad
    return x[..., top:x.shape[-2] - bottom, left:x.shape[-1] - right]


# ----------------------------------------------------------------------------------------------
# Working size (`--size`): the model at a shorter side of N pixels, the masks back at the frame size
# ----------------------------------------------------------------------------------------------
def working_shape(height: int, width: int, size: Optional[int]) -> Tuple[int, int]:
    """(h, w) with the shorter side shrunk to `size` (unchanged when None or not smaller)."""
    if size is None or size >= min(height, width):
        return height, width
    scale = size / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def shrink_frame(rgb: np.ndarray, hw: Tuple[int, int]) -> np.ndarray:
    return rgb if rgb.shape[:2] == hw else cv2.resize(rgb, hw[::-1], interpolation=cv2.INTER_AREA)


def working_frames(frames: np.ndarray, size: Optional[int]) -> np.ndarray:
    """`frames` [T,H,W,3] at the working size `size` (unchanged when None or not smaller)."""
    hw = working_shape(*frames.shape[1:3], size)
    return frames if hw == frames.shape[1:3] else np.stack([shrink_frame(f, hw) for f in frames])


class WorkingFrames:
    """Lazily read frames (`gis.davis_frames.DavisFrames`: decoded where the reference decodes them), each
    shrunk to the working size when it is read."""

    def __init__(self, frames, size: Optional[int]):
        self.frames = frames
        t, h, w = frames.shape[:3]
        self.shape = (t, *working_shape(h, w, size), 3)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, frame: int) -> np.ndarray:
        return shrink_frame(self.frames[frame], self.shape[1:3])


def upsample_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Labels `[..., h, w]` at the frame size (nearest neighbour, so ids stay ids)."""
    if labels.shape[-2:] == (height, width):
        return labels
    flat = labels.reshape(-1, *labels.shape[-2:])
    out = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_NEAREST) for f in flat])
    return out.reshape(*labels.shape[:-2], height, width)


# ----------------------------------------------------------------------------------------------
# Interactions -> maps
# ----------------------------------------------------------------------------------------------
def postprocess_interaction_map(raw: np.ndarray, dilation: int, sigma: float = 6.0) -> np.ndarray:
    """Dilate a binary map with an elliptical kernel (only when it has a pixel), then blur (5x5)."""
    out = raw
    if raw.max() == 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (dilation, dilation))
        out = cv2.dilate(raw.astype(np.uint8), kernel=kernel).astype(raw.dtype)
    return cv2.GaussianBlur(out, ksize=(5, 5), sigmaX=sigma)


def rasterize_scribbles(scribbles: Sequence[dict], obj_id: int, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
    """Binary float64 maps of this object's scribbles and of every other id (background included).

    Points are scaled by (W, H), rounded half to even and joined with the framework's Bresenham
    lines. Like the reference, pixel (y-1, x-1) is set, so a 0 coordinate wraps to the last row/column.
    """
    from davisinteractive.utils.operations import bresenham

    pos = np.zeros([height, width])
    neg = np.zeros([height, width])
    for scribble in scribbles:
        points = np.round(np.array(scribble["path"]) * np.array((width, height))).astype(int)
        if len(points) > 1:
            points = bresenham(points)
        target = pos if scribble["object_id"] == obj_id else neg
        target[points[:, 1] - 1, points[:, 0] - 1] = 1
    return pos, neg


def scribble_channels(scribbles: Sequence[dict], n_objects: int, prev_mask: np.ndarray, first_round: bool,
                      dilation: int = 5) -> np.ndarray:
    """Interaction input [n_objects, 3, H, W] float32 at `prev_mask`'s resolution.

    Round 1: [0.5, positive, 0]. Later: [prev_mask == obj, positive, negative], where the negative
    map is kept only inside the object's previous mask (outside it there is nothing to remove).
    """
    h, w = prev_mask.shape
    channels = []
    for obj_id in range(1, n_objects + 1):
        pos, neg = rasterize_scribbles(scribbles, obj_id, h, w)
        pos = postprocess_interaction_map(pos, dilation)
        neg = postprocess_interaction_map(neg, dilation)
        neg[prev_mask != obj_id] = 0
        pos, neg = pos.astype(np.float32), neg.astype(np.float32)
        if first_round:
            channels.append(np.stack([np.ones_like(pos) / 2, pos, np.zeros_like(pos)]))
        else:
            channels.append(np.stack([(prev_mask == obj_id).astype(np.float32), pos, neg]))
    return np.stack(channels).astype(np.float32)


def point_channels(points: Sequence[np.ndarray], n_objects: int, height: int, width: int, scale: float,
                   dilation: int = 7) -> np.ndarray:
    """First-round input from click points (YouTube-IVOS): [0.5, blurred point map, 0] per object.

    `points[o]` is `[[y...], [x...]]` in original-resolution pixels; they are scaled by `scale`
    (the resize to a 480-pixel shorter side) and truncated, as the reference does.
    """
    channels = []
    for obj_idx in range(n_objects):
        yx = (np.asarray(points[obj_idx]) * scale).astype(np.int64)
        raw = np.zeros([height, width], dtype=np.float32)
        raw[yx[0, :], yx[1, :]] = 1
        pos = postprocess_interaction_map(raw, dilation)
        channels.append(np.stack([np.ones_like(pos) / 2, pos, np.zeros_like(pos)]))
    return np.stack(channels).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Frame bookkeeping
# ----------------------------------------------------------------------------------------------
def propagation_order(annotated_frames: Sequence[int], annotated_now: int, num_frames: int,
                      proportion: float = 0.99) -> List[int]:
    """Visit order `a, a-1, ..., start, a, a+1, ..., end` (the annotated frame appears twice).

    The window stops short of the nearest other annotated frames; a bound that is not a video end
    is pulled towards `a` to `proportion` of the way.
    """
    others = sorted(f for f in annotated_frames if f != annotated_now)
    start = max([f + 1 for f in others if f < annotated_now], default=0)
    end = min([f - 1 for f in others if f > annotated_now], default=num_frames - 1)
    if proportion != 1.0:
        if start != 0:
            start = annotated_now - int((annotated_now - start) * proportion + 0.5)
        if end != num_frames - 1:
            end = annotated_now + int((end - annotated_now) * proportion + 0.5)
    order = list(range(annotated_now, start - 1, -1)) + list(range(annotated_now, end + 1))
    return order or [annotated_now]


def blend_weight(frame: int, annotated_now: int, annotated_frames: np.ndarray, backward: bool) -> float:
    """Weight of the new probabilities: 1 far from other annotations, down to 0.5 next to one."""
    if backward:
        earlier = annotated_frames[annotated_frames < annotated_now]
        if len(earlier) == 0:
            return 1
        c = np.max(earlier)
        return 0.5 + 0.5 * ((frame - c) / (annotated_now - c))
    later = annotated_frames[annotated_frames > annotated_now]
    if len(later) == 0:
        return 1
    c = np.min(later)
    return 0.5 + 0.5 * ((c - frame) / (c - annotated_now))


def soft_aggregation_logits(fg_probs: torch.Tensor) -> torch.Tensor:
    """[nobj,H,W] foreground probabilities -> logits [nobj+1,H,W] (background = prod(1 - p))."""
    em = torch.cat([torch.prod(1 - fg_probs, dim=0, keepdim=True), fg_probs], dim=0)
    em = torch.clamp(em, 1e-7, 1 - 1e-7)
    return torch.log(em / (1 - em))


def aggregate(logits: torch.Tensor) -> torch.Tensor:
    """bg/fg logits [nobj,2,H,W] -> per-pixel distribution over background + objects [nobj+1,H,W]."""
    return F.softmax(soft_aggregation_logits(F.softmax(logits, dim=1)[:, 1]), dim=0)


def recommend_frames(scores: np.ndarray, method: str) -> Optional[List[int]]:
    """Frames to ask the user about next, from this round's reliability scores.

    RS1: the least reliable frame. RS4: up to 4 least reliable frames, each excluding the frames
    within T/20 of it. wo_RS: None (the benchmark picks among all frames).
    """
    if method == "wo_RS":
        return None
    order = np.argsort(scores)
    if method == "RS1":
        return [int(order[0])]
    if method != "RS4":
        raise ValueError(f"unknown guide method {method!r}; expected one of {GUIDE_METHODS}")
    half_range = len(scores) / 10 / 2
    chosen: List[int] = []
    excluded: List[int] = []
    for frame in order:
        if frame not in excluded:
            chosen.append(int(frame))
            excluded += list(range(int(frame - half_range + 0.5), int(frame + half_range + 0.5)))
        if len(chosen) == 4:
            break
    return chosen


# ----------------------------------------------------------------------------------------------
# The per-sample state over rounds
# ----------------------------------------------------------------------------------------------
class GISSession:
    """State of one video (one scribble sample) across interaction rounds.

    `frames` are uint8 RGB `[T,H,W,3]` at the network resolution: an array, or anything with that
    `shape` whose `frames[t]` is read when a round visits frame t (`gis.davis_frames.DavisFrames`
    decodes it then, as the reference's per-round loader does). `blend` turns on the alpha blending
    with the previous round near other annotated frames (the DAVIS protocol; the reference's
    YouTube-IVOS script does not blend).
    """

    def __init__(self, net: GISNet, frames: np.ndarray, n_objects: int, *, proportion: float = 0.99,
                 blend: bool = True, max_rounds: int = 8, fast: Optional["FastGIS"] = None):
        self.net = net
        self.fast = fast  # when given, rounds take the fast path (gis.fast); `net` must be `fast.net`
        self.fast_annotations: List["AnnotationFeatures"] = []
        self.feature_cache: Dict[int, "FrameFeatures"] = {}
        self.feature_cache_bytes = 0
        self.fast_preview: Optional[tuple] = None  # (frame, interaction, result) of the last fast preview
        self.device = next(net.parameters()).device
        self.frames = frames
        self.num_frames, self.height, self.width = frames.shape[:3]
        self.n_objects = n_objects
        self.proportion = proportion
        self.blend = blend
        self.pad = pad_info(self.height, self.width)
        hp = self.height + sum(self.pad[0])
        wp = self.width + sum(self.pad[1])
        self.prob_maps = torch.zeros((self.num_frames, n_objects + 1, hp, wp), device=self.device)
        self.anno_features: List[torch.Tensor] = []  # encoder_3ch r4 of each annotated frame
        self.anno_object_features: List[torch.Tensor] = []  # object feature of each annotation
        self.annotated_frames: List[int] = []
        self.scores = np.zeros([max(8, max_rounds), self.num_frames])
        self.max_rounds = max_rounds
        self.round = 0
        self.last_visit_order: List[int] = []
        self.frames_processed = 0

    def _image(self, frame: int) -> torch.Tensor:
        # One row per object, as the reference: encoding a single row gives the same values up to
        # rounding, but with the near-hard attention such rounding flips pixels (see the parity README).
        return prepare_image(self.frames[frame], self.pad, self.device).expand(self.n_objects, -1, -1, -1)

    def labels(self) -> np.ndarray:
        """Current masks [T,H,W] uint8: argmax over background + objects (lowest index on ties)."""
        return crop(torch.argmax(self.prob_maps, dim=1), self.pad).cpu().numpy().astype(np.uint8)

    def frame_labels(self, frame: int) -> np.ndarray:
        """`labels()[frame]` without the argmax over every other frame."""
        return crop(torch.argmax(self.prob_maps[frame], dim=0), self.pad).cpu().numpy().astype(np.uint8)

    def _padded_interaction(self, interaction: np.ndarray) -> torch.Tensor:
        (top, bottom), (left, right) = self.pad
        return F.pad(torch.from_numpy(interaction).to(self.device), (left, right, top, bottom), mode="reflect")

    def _segment_annotation(self, image: torch.Tensor, iact: torch.Tensor, anno_np: np.ndarray, frame: int):
        """The annotated frame from its own interaction alone: (probs, encoder r4, object feature,
        r4 for the next frame, score)."""
        r4, _ = self.net.encoder_3ch(image)
        sal, obj_feature = self.net.forward_obj_feature_extractor(torch.cat([image, iact], dim=1))
        logits, anno_r4, score = self.net.forward_prop([r4], image, [obj_feature], r4, torch.sigmoid(sal), anno_np, frame)
        return aggregate(logits), r4, obj_feature, anno_r4, score

    def _segment_annotation_fast(self, iact: torch.Tensor, anno_np: np.ndarray, frame: int):
        """`_segment_annotation` on the fast path: (probs, frame features, annotation features, score)."""
        image = prepare_image(self.frames[frame], self.pad, self.device)
        anno = self._frame_features(frame, image)
        sal_prob, obj_feature = self.fast.object_features(image, iact)
        annotation = self.fast.annotation(anno, obj_feature)
        logits, score = self.fast.propagate([annotation], anno, anno, sal_prob, anno_np, frame)
        return aggregate(logits), anno, annotation, score

    @torch.no_grad()
    def preview_annotation(self, interaction: np.ndarray, annotated_frame: int) -> np.ndarray:
        """Labels [H,W] of `annotated_frame` from `interaction` alone, as the next `run_round` would
        segment it first; nothing is stored (the reference GUI's `Run_interaction`, run on every stroke)."""
        anno_np = np.array(self.annotated_frames + [annotated_frame])
        iact = self._padded_interaction(interaction)
        if self.fast is not None:
            result = self._segment_annotation_fast(iact, anno_np, annotated_frame)
            # The next round segments this frame first, from the same input when no stroke came since.
            self.fast_preview = (annotated_frame, interaction.copy(), result)
            probs = result[0]
        else:
            probs = self._segment_annotation(self._image(annotated_frame), iact, anno_np, annotated_frame)[0]
        return crop(torch.argmax(probs, dim=0), self.pad).cpu().numpy().astype(np.uint8)

    @torch.no_grad()
    def run_round(self, interaction: np.ndarray, annotated_frame: int,
                  on_frame: Optional[FrameCallback] = None) -> List[int]:
        """Process one interaction `[nobj,3,H,W]` given on `annotated_frame`; returns the visited frames.

        Afterwards `labels()` holds the new masks and `scores[round-1]` the visited frames' scores.
        `on_frame` is called after each segmented frame (progress reports).
        """
        if self.fast is not None:
            return self._run_round_fast(interaction, annotated_frame, on_frame)
        self.round += 1
        self.annotated_frames.append(annotated_frame)
        anno_np = np.array(self.annotated_frames)
        order = propagation_order(self.annotated_frames, annotated_frame, self.num_frames, self.proportion)
        self.last_visit_order = order
        row = self.round - 1
        iact = self._padded_interaction(interaction)

        seen_annotated = 0
        neighbor_r4 = neighbor_prob = None
        anno_r4 = anno_prob = None
        for frame in order:
            image = self._image(frame)
            if frame == annotated_frame:
                seen_annotated += 1
                if seen_annotated == 2:  # start of the forward pass: neighbour is the annotation again
                    neighbor_r4, neighbor_prob = anno_r4, anno_prob
                    continue
                # Only this round's annotation guides its own frame.
                probs, r4, obj_feature, anno_r4, score = self._segment_annotation(image, iact, anno_np, frame)
                anno_prob = probs[1:].unsqueeze(1)
                neighbor_r4, neighbor_prob = anno_r4, anno_prob
                self.anno_features.append(r4)
                self.anno_object_features.append(obj_feature)
            else:
                logits, r4_que, score = self.net.forward_prop(self.anno_features, image, self.anno_object_features,
                                                              neighbor_r4, neighbor_prob, anno_np, frame)
                probs = aggregate(logits)
                if self.blend:
                    alpha = blend_weight(frame, annotated_frame, anno_np, backward=seen_annotated == 1)
                    probs = alpha * probs + (1 - alpha) * self.prob_maps[frame]
                neighbor_r4, neighbor_prob = r4_que, probs[1:].unsqueeze(1)
            self.prob_maps[frame] = probs
            self.scores[row, frame] = score
            self.frames_processed += 1
            if on_frame is not None:
                on_frame(frame)
        return order

    def _frame_features(self, frame: int, image: Optional[torch.Tensor] = None) -> "FrameFeatures":
        """Image features of `frame`, from the per-video cache when an earlier round computed them."""
        cached = self.feature_cache.get(frame)
        if cached is not None:
            return cached
        if image is None:
            image = prepare_image(self.frames[frame], self.pad, self.device)
        features = self.fast.frame_features(image)
        size = self.fast.nbytes(features)
        if self.feature_cache_bytes + size <= self.fast.feature_cache_mib * 2 ** 20:
            self.feature_cache[frame] = features
            self.feature_cache_bytes += size
        return features

    def _run_round_fast(self, interaction: np.ndarray, annotated_frame: int,
                        on_frame: Optional[FrameCallback] = None) -> List[int]:
        """`run_round` with each frame encoded once for all objects (see gis.fast); same visit order,
        blending and bookkeeping, results equal up to float rounding."""
        fast = self.fast
        self.round += 1
        self.annotated_frames.append(annotated_frame)
        anno_np = np.array(self.annotated_frames)
        order = propagation_order(self.annotated_frames, annotated_frame, self.num_frames, self.proportion)
        self.last_visit_order = order
        iact = self._padded_interaction(interaction)

        seen_annotated = 0
        neighbor = neighbor_prob = anno = anno_prob = None
        scores: List[torch.Tensor] = []
        visited: List[int] = []
        for frame in order:
            if frame == annotated_frame:
                seen_annotated += 1
                if seen_annotated == 2:  # start of the forward pass: neighbour is the annotation again
                    neighbor, neighbor_prob = anno, anno_prob
                    continue
                # Only this round's annotation guides its own frame.
                previewed = self.fast_preview
                if previewed is not None and previewed[0] == frame and np.array_equal(previewed[1], interaction):
                    probs, anno, annotation, score = previewed[2]  # the same computation on the same input
                else:
                    probs, anno, annotation, score = self._segment_annotation_fast(iact, anno_np, frame)
                self.fast_preview = None
                anno_prob = probs[1:].unsqueeze(1)
                neighbor, neighbor_prob = anno, anno_prob
                self.fast_annotations.append(annotation)
            else:
                query = self._frame_features(frame)
                logits, score = fast.propagate(self.fast_annotations, query, neighbor, neighbor_prob, anno_np, frame)
                probs = aggregate(logits)
                if self.blend:
                    alpha = blend_weight(frame, annotated_frame, anno_np, backward=seen_annotated == 1)
                    probs = alpha * probs + (1 - alpha) * self.prob_maps[frame]
                neighbor, neighbor_prob = query, probs[1:].unsqueeze(1)
            self.prob_maps[frame] = probs
            scores.append(score)
            visited.append(frame)
            self.frames_processed += 1
            if on_frame is not None:
                on_frame(frame)
        # One host synchronisation per round for the scores.
        self.scores[self.round - 1, visited] = torch.stack(scores).double().cpu().numpy()
        return order

    def finish_round(self, guide_method: str) -> Optional[List[int]]:
        """Carry the scores over to the next round's row and recommend the next frames."""
        row = self.round - 1
        if self.round != self.max_rounds:
            self.scores[self.round] = self.scores[row]
        return recommend_frames(self.scores[row], guide_method)


def annotated_frame_of(scribble: dict) -> int:
    """The first frame with a scribble in a davisinteractive scribble dict."""
    for frame, paths in enumerate(scribble["scribbles"]):
        if paths:
            return frame
    raise ValueError("the scribble has no path on any frame")


_apply_davisinteractive_compat()

"""J&F as DAVIS scores it: region similarity J, boundary measure F, and their Mean / Recall / Decay.

The arithmetic follows davis2017-evaluation (``davis2017/metrics.py``, ``utils.db_statistics``) and
davisinteractive (``metrics/jaccard.py``) operation for operation where it changes numbers; what is
different is only *how much* work is done per call:

* every function takes a stack of frames ``[..., H, W]`` and scores all of them at once;
* J, boundary maps and their dilations are computed per frame on the bounding box of the object
  in GT and prediction (a pixel far from every boundary can neither be a boundary pixel nor be
  matched), and the boxes of many frames are dilated by one OpenCV call on a tall image with
  empty gaps between them.

Conventions (see ``shared/parity/metrics/README.md``):

* J = |gt ∩ pred| / |gt ∪ pred|, and 1 when the union is empty.
* F: one-pixel boundary maps (a pixel differs from its right, lower or lower-right neighbour; the
  last row compares only right, the last column only down, the bottom-right pixel is never a
  boundary), each dilated with a scikit-image ``disk`` of radius ``ceil(0.008 * sqrt(H² + W²))``;
  precision = predicted boundary pixels inside the dilated GT boundary / predicted boundary
  pixels, recall the other way round, F = 2PR / (P + R). Empty boundary maps count as precision
  (or recall) 1, so: both empty -> 1, exactly one empty -> 0.
* Statistics per object: Mean, Recall (fraction of frames > 0.5) and Decay (mean of the first
  quarter minus mean of the last quarter, quarters sharing their boundary frame).
"""
from __future__ import annotations

import math
import warnings
from functools import lru_cache
from typing import Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

BOUND_TH = 0.008
"""Boundary tolerance as a fraction of the image diagonal (a value >= 1 is a radius in pixels)."""

# Frames per OpenCV call: bounds the memory of one call at 480p to a few MB.
_FRAMES_PER_CHUNK = 16


# --------------------------------------------------------------------------------------------
# Region similarity J
# --------------------------------------------------------------------------------------------

def region_similarity(gt: np.ndarray, pred: np.ndarray, void: Optional[np.ndarray] = None) -> np.ndarray:
    """J of binary masks ``[..., H, W]`` -> float64 ``[...]`` (1 where the union is empty).

    ``void`` pixels (optional, same shape) are left out of both counts, as ``db_eval_iou`` does;
    the semi-supervised protocol passes none.
    """
    gt, pred = _as_bool_pair(gt, pred)
    inter = gt & pred
    union = gt | pred
    if void is not None:
        keep = ~np.asarray(void, dtype=bool)
        inter &= keep
        union &= keep
    return _jaccard_from_counts(_count(inter), _count(union))


def _jaccard_from_counts(inter: np.ndarray, union: np.ndarray) -> np.ndarray:
    inter, union = np.asarray(inter), np.asarray(union)
    j = np.ones(union.shape, dtype=np.float64)
    nonempty = union != 0
    j[nonempty] = inter[nonempty] / union[nonempty]
    return j


# --------------------------------------------------------------------------------------------
# Boundary measure F
# --------------------------------------------------------------------------------------------

def boundary_radius(height: int, width: int, bound_th: float = BOUND_TH) -> float:
    """Tolerance radius in pixels: ``ceil(bound_th * diagonal)``, or ``bound_th`` itself when >= 1.

    Returned as the float the official code hands to ``disk`` (e.g. 8.0 at 480 x 854).
    """
    if bound_th >= 1:
        return bound_th
    # np.linalg.norm of the integer shape: sqrt of the exact sum of squares, in float64.
    return float(np.ceil(bound_th * math.sqrt(float(height * height + width * width))))


@lru_cache(maxsize=16)
def disk_kernel(radius: float) -> np.ndarray:
    """uint8 disk structuring element of scikit-image (offsets with dy² + dx² <= r²)."""
    from skimage.morphology import disk  # imported lazily: skimage is slow to import in workers

    kernel = disk(radius).astype(np.uint8)
    kernel.flags.writeable = False
    return kernel


def boundary_map(masks: np.ndarray) -> np.ndarray:
    """One-pixel boundary maps of binary masks ``[..., H, W]`` (bool), like ``_seg2bmap``.

    A pixel is on the boundary when it differs from its right (e), lower (s) or lower-right (se)
    neighbour; pixels outside the image are never compared, so along the last row only e counts,
    along the last column only s, and the bottom-right pixel is never a boundary pixel.
    """
    seg = np.asarray(masks, dtype=bool)
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[..., :, :-1] = seg[..., :, 1:]
    south[..., :-1, :] = seg[..., 1:, :]
    south_east[..., :-1, :-1] = seg[..., 1:, 1:]
    bmap = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    bmap[..., -1, :] = seg[..., -1, :] ^ east[..., -1, :]
    bmap[..., :, -1] = seg[..., :, -1] ^ south[..., :, -1]
    bmap[..., -1, -1] = False
    return bmap


def dilate_maps(maps: Sequence[np.ndarray], kernel: np.ndarray) -> List[np.ndarray]:
    """OpenCV dilation of every 2-D map of a list (any sizes) with one ``cv2.dilate`` call.

    The maps are stacked into one tall image, each followed by empty rows as high as the kernel,
    so no map's dilation reaches into the next one; outside the image nothing contributes (OpenCV's
    default border for dilation), exactly as when each map is dilated on its own.
    """
    gap = kernel.shape[0]
    width = max(m.shape[1] for m in maps)
    tops = np.cumsum([0] + [m.shape[0] + gap for m in maps])
    tall = np.zeros((int(tops[-1]), width), dtype=np.uint8)
    for top, m in zip(tops, maps):
        tall[top:top + m.shape[0], :m.shape[1]] = m
    dilated = cv2.dilate(tall, kernel)
    return [dilated[top:top + m.shape[0], :m.shape[1]] != 0 for top, m in zip(tops, maps)]


def _f_from_counts(fg_hits, n_fg, gt_hits, n_gt) -> np.ndarray:
    """F = 2PR / (P + R) with ``f_measure``'s rules for empty boundary maps, elementwise."""
    fg_hits, n_fg = np.asarray(fg_hits), np.asarray(n_fg)
    gt_hits, n_gt = np.asarray(gt_hits), np.asarray(n_gt)
    # An empty predicted boundary has precision 1, an empty GT boundary recall 1; with the other
    # map non-empty the matching count is 0, which gives exactly the official special cases.
    precision = np.ones(n_fg.shape, dtype=np.float64)
    recall = np.ones(n_gt.shape, dtype=np.float64)
    np.divide(fg_hits, n_fg, out=precision, where=n_fg != 0)
    np.divide(gt_hits, n_gt, out=recall, where=n_gt != 0)
    total = precision + recall
    f = np.zeros(total.shape, dtype=np.float64)
    np.divide(2 * precision * recall, total, out=f, where=total != 0)
    return f


def boundary_f_measure(gt: np.ndarray, pred: np.ndarray, void: Optional[np.ndarray] = None,
                       bound_th: float = BOUND_TH) -> np.ndarray:
    """F of binary masks ``[..., H, W]`` -> float64 ``[...]``, like ``db_eval_boundary``.

    ``void`` pixels (optional) are removed from both masks before their boundaries are drawn.
    """
    gt, pred = _as_bool_pair(gt, pred)
    if void is not None:
        keep = ~np.asarray(void, dtype=bool)
        gt, pred = gt & keep, pred & keep
    lead = gt.shape[:-2]
    h, w = gt.shape[-2:]
    kernel = disk_kernel(boundary_radius(h, w, bound_th))
    _, f = _scores_stack(gt.reshape(-1, h, w), pred.reshape(-1, h, w), kernel, want_j=False)
    return f.reshape(lead)


def _scores_stack(gt: np.ndarray, pred: np.ndarray, kernel: np.ndarray,
                  want_j: bool = True, want_f: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """(J, F) float64 ``[T]`` of one object over a stack of binary masks ``[T, H, W]``.

    Each frame is scored on the box holding the foreground of both masks (see `_frame_crops`);
    frames where both masks are empty score J = 1 and F = 1.
    """
    t = gt.shape[0]
    j = np.ones(t, dtype=np.float64)
    f = np.ones(t, dtype=np.float64)
    for start in range(0, t, _FRAMES_PER_CHUNK):
        crops = _frame_crops(gt[start:start + _FRAMES_PER_CHUNK], pred[start:start + _FRAMES_PER_CHUNK])
        if not crops:
            continue
        frames = np.array([start + i for i, _ in crops])
        g = [gt[start + i][box] for i, box in crops]
        p = [pred[start + i][box] for i, box in crops]
        if want_j:
            inter = np.array([np.count_nonzero(a & b) for a, b in zip(g, p)])
            union = np.array([np.count_nonzero(a | b) for a, b in zip(g, p)])
            j[frames] = _jaccard_from_counts(inter, union)
        if want_f:
            g_b = [boundary_map(m) for m in g]
            p_b = [boundary_map(m) for m in p]
            dilated = dilate_maps(g_b + p_b, kernel)
            g_dil, p_dil = dilated[:len(g_b)], dilated[len(g_b):]
            f[frames] = _f_from_counts(
                [np.count_nonzero(b & d) for b, d in zip(p_b, g_dil)], [np.count_nonzero(b) for b in p_b],
                [np.count_nonzero(b & d) for b, d in zip(g_b, p_dil)], [np.count_nonzero(b) for b in g_b])
    return j, f


def _frame_crops(gt: np.ndarray, pred: np.ndarray) -> List[Tuple[int, Tuple[slice, slice]]]:
    """(frame, box) for every frame of ``[n, H, W]`` with foreground: the box holds all foreground
    pixels of both masks, grown by one pixel on every side (clipped to the image).

    Scoring on the box is exact. J counts only foreground. Boundary pixels lie in the box grown by
    one pixel up/left (a background pixel just before the object differs from its neighbour), and
    growing it on every side keeps the last-row / last-column rules exact: the box's last row is
    either the image's last row or an all-background row with all-background neighbours, which is
    not a boundary under either rule. Matches are only counted at boundary pixels, and only
    boundary pixels dilate, so nothing outside the box can change F.
    """
    fg = gt | pred
    rows_any, cols_any = fg.any(axis=2), fg.any(axis=1)
    h, w = gt.shape[-2:]
    crops = []
    for i in range(len(fg)):
        rows = np.flatnonzero(rows_any[i])
        if rows.size == 0:
            continue
        cols = np.flatnonzero(cols_any[i])
        box = (slice(max(rows[0] - 1, 0), min(rows[-1] + 2, h)), slice(max(cols[0] - 1, 0), min(cols[-1] + 2, w)))
        crops.append((i, box))
    return crops


# --------------------------------------------------------------------------------------------
# Label maps: all objects of a sequence
# --------------------------------------------------------------------------------------------

def object_scores(gt_labels: np.ndarray, pred_labels: np.ndarray, object_ids: Iterable[int],
                  bound_th: float = BOUND_TH) -> Tuple[np.ndarray, np.ndarray]:
    """Per-frame J and F of every object: label maps ``[T, H, W]`` -> two float64 ``[T, K]``.

    Object ``k`` is compared as ``gt == k`` against ``pred == k``; column i is ``object_ids[i]``.
    """
    gt_labels, pred_labels = np.asarray(gt_labels), np.asarray(pred_labels)
    if gt_labels.shape != pred_labels.shape or gt_labels.ndim != 3:
        raise ValueError(f"label maps must both be [T, H, W]; got {gt_labels.shape} and {pred_labels.shape}")
    ids = list(object_ids)
    t, h, w = gt_labels.shape
    kernel = disk_kernel(boundary_radius(h, w, bound_th))
    j = np.empty((t, len(ids)), dtype=np.float64)
    f = np.empty((t, len(ids)), dtype=np.float64)
    for col, obj in enumerate(ids):
        j[:, col], f[:, col] = _scores_stack(gt_labels == obj, pred_labels == obj, kernel)
    return j, f


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------

def decay_bins(n: int, uint8_quirk: bool = True) -> np.ndarray:
    """Boundaries b0..b4 of the four Decay bins for ``n`` frames (bin i = frames b_i..b_{i+1}).

    ``round(linspace(1, n, 5)) - 1`` with ties rounded up. The official code stores them as uint8,
    so from n = 256 on they wrap around and the last bin comes out empty or wrong, which makes
    Decay NaN (or meaningless) for long videos; ``uint8_quirk=True`` (default) reproduces this,
    ``False`` keeps exact integer boundaries.
    """
    ids = np.round(np.linspace(1, n, 5) + 1e-10) - 1
    if uint8_quirk:
        with np.errstate(invalid="ignore", over="ignore"):
            return ids.astype(np.uint8)
    return ids.astype(np.int64)


def mean_recall_decay(per_frame: Sequence[float], uint8_quirk: bool = True) -> Tuple[float, float, float]:
    """(Mean, Recall, Decay) of one object's per-frame scores, like ``db_statistics``.

    NaNs are skipped by the means. See ``decay_bins`` for the uint8 quirk of long videos.
    """
    values = np.asarray(per_frame, dtype=np.float64)
    ids = decay_bins(len(values), uint8_quirk)
    with warnings.catch_warnings(), np.errstate(over="ignore"):
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = np.nanmean(values)
        recall = np.nanmean(values > 0.5)
        # ids[i + 1] + 1 stays in the boundaries' dtype, as in the official code (uint8 wraps).
        bins = [values[ids[i]:ids[i + 1] + 1] for i in range(4)]
        decay = np.nanmean(bins[0]) - np.nanmean(bins[3])
    return float(mean), float(recall), float(decay)


# --------------------------------------------------------------------------------------------
# davisinteractive-compatible per-frame metrics (all frames, no first/last-frame exclusion)
# --------------------------------------------------------------------------------------------

def _as_ids(labels: np.ndarray) -> np.ndarray:
    # Integer label maps are compared with the ids as they are: an int64 copy of a video's uint8 masks
    # compares the same and is 8x their size (230 MB per array for 70 frames at 480p).
    labels = np.asarray(labels)
    return labels if np.issubdtype(labels.dtype, np.integer) else labels.astype(np.int64)


def _interactive_objects(y_true: np.ndarray, y_pred: np.ndarray, nb_objects: Optional[int]):
    y_true, y_pred = _as_ids(y_true), _as_ids(y_pred)
    if y_true.ndim != 3:
        raise ValueError("y_true array must have 3 dimensions.")
    if y_pred.ndim != 3:
        raise ValueError("y_pred array must have 3 dimensions.")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have the same shape. {y_true.shape} != {y_pred.shape}")
    if nb_objects is None:
        ids = np.unique(y_true[(y_true < 255) & (y_true > 0)])
    else:
        ids = np.arange(1, nb_objects + 1, dtype=np.int64)
    if len(ids) == 0:
        raise ValueError("Number of objects in y_true should be higher than 0.")
    return y_true, y_pred, [int(i) for i in ids]


def batched_jaccard(y_true: np.ndarray, y_pred: np.ndarray, average_over_objects: bool = True,
                    nb_objects: Optional[int] = None) -> np.ndarray:
    """davisinteractive ``batched_jaccard``: ``[B, H, W]`` label maps -> ``[B, nObj]`` or ``[B]``.

    Objects are ids 1..nb_objects, or without ``nb_objects`` the distinct GT ids other than 0 and
    255 (ascending). ``average_over_objects`` gives the plain per-frame mean over objects.
    """
    y_true, y_pred, ids = _interactive_objects(y_true, y_pred, nb_objects)
    jaccard = np.empty((len(y_true), len(ids)), dtype=np.float64)
    for col, obj in enumerate(ids):
        t, p = y_true == obj, y_pred == obj
        jaccard[:, col] = _jaccard_from_counts(_count(t & p), _count(t | p))
    return jaccard.mean(axis=1) if average_over_objects else jaccard


def batched_f_measure(y_true: np.ndarray, y_pred: np.ndarray, average_over_objects: bool = True,
                      nb_objects: Optional[int] = None, bound_th: float = BOUND_TH) -> np.ndarray:
    """davisinteractive ``batched_f_measure``: same object rules as `batched_jaccard`."""
    y_true, y_pred, ids = _interactive_objects(y_true, y_pred, nb_objects)
    kernel = disk_kernel(boundary_radius(*y_true.shape[-2:], bound_th))
    f = np.empty((len(y_true), len(ids)), dtype=np.float64)
    for col, obj in enumerate(ids):
        _, f[:, col] = _scores_stack(y_true == obj, y_pred == obj, kernel, want_j=False)
    return f.mean(axis=1) if average_over_objects else f


# --------------------------------------------------------------------------------------------

def _as_bool_pair(a: np.ndarray, b: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"masks must have the same shape; got {a.shape} and {b.shape}")
    if a.ndim < 2:
        raise ValueError(f"masks must be [..., H, W]; got shape {a.shape}")
    return a, b


def _count(masks: np.ndarray) -> np.ndarray:
    """Number of True pixels per map of ``[..., H, W]`` (int64)."""
    return np.count_nonzero(masks, axis=(-2, -1)).astype(np.int64)



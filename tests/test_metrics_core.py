"""common.evaluation.metrics building blocks against the rules of shared/parity/metrics/README.md."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from common.evaluation import metrics


def test_boundary_map_border_rules() -> None:
    seg = np.zeros((4, 5), bool)
    seg[1:3, 1:3] = True  # a 2x2 square inside
    expected = np.array([[1, 1, 1, 0, 0],
                         [1, 0, 1, 0, 0],
                         [1, 1, 1, 0, 0],
                         [0, 0, 0, 0, 0]], bool)
    np.testing.assert_array_equal(metrics.boundary_map(seg), expected)
    # Touching the bottom-right border: no boundary is drawn along the image border itself, the last
    # row compares only right, the last column only down, the corner is never a boundary.
    seg = np.zeros((3, 3), bool)
    seg[1:, 1:] = True
    expected = np.array([[1, 1, 1],
                         [1, 0, 0],
                         [1, 0, 0]], bool)
    np.testing.assert_array_equal(metrics.boundary_map(seg), expected)
    assert not metrics.boundary_map(np.ones((4, 4), bool)).any()


def test_radius_and_disk() -> None:
    assert metrics.boundary_radius(480, 854) == 8.0
    assert metrics.boundary_radius(120, 200) == 2.0  # sequences of the parity README
    assert metrics.boundary_radius(128, 224) == 3.0
    assert metrics.boundary_radius(120, 200, bound_th=5) == 5
    r = 3
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    np.testing.assert_array_equal(metrics.disk_kernel(3.0), (dy ** 2 + dx ** 2 <= r * r).astype(np.uint8))


def test_empty_mask_rules() -> None:
    empty = np.zeros((2, 20, 20), bool)
    full = empty.copy()
    full[:, 5:10, 5:10] = True
    assert metrics.region_similarity(empty, empty).tolist() == [1.0, 1.0]
    assert metrics.boundary_f_measure(empty, empty).tolist() == [1.0, 1.0]
    assert metrics.region_similarity(full, empty).tolist() == [0.0, 0.0]
    assert metrics.boundary_f_measure(full, empty).tolist() == [0.0, 0.0]  # precision 1, recall 0
    assert metrics.boundary_f_measure(empty, full).tolist() == [0.0, 0.0]  # precision 0, recall 1
    assert metrics.boundary_f_measure(full, full).tolist() == [1.0, 1.0]


def _naive_f(gt: np.ndarray, pred: np.ndarray, bound_th: float = metrics.BOUND_TH) -> np.ndarray:
    """Full-frame, frame-by-frame reference of the README's F definition."""
    kernel = metrics.disk_kernel(metrics.boundary_radius(*gt.shape[-2:], bound_th))
    out = []
    for g, p in zip(gt, pred):
        g_b, p_b = metrics.boundary_map(g), metrics.boundary_map(p)
        g_dil = cv2.dilate(g_b.astype(np.uint8), kernel) > 0
        p_dil = cv2.dilate(p_b.astype(np.uint8), kernel) > 0
        n_p, n_g = p_b.sum(), g_b.sum()
        precision = 1.0 if n_p == 0 else (p_b & g_dil).sum() / float(n_p)
        recall = 1.0 if n_g == 0 else (g_b & p_dil).sum() / float(n_g)
        out.append(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))
    return np.array(out)


def _random_masks(rng: np.random.Generator, t: int, h: int, w: int) -> np.ndarray:
    masks = np.zeros((t, h, w), bool)
    for k in range(t):
        if rng.random() < 0.85:  # some frames stay empty
            y0, x0 = rng.integers(-5, h), rng.integers(-5, w)  # often touching the border
            masks[k, max(y0, 0):y0 + rng.integers(1, h), max(x0, 0):x0 + rng.integers(1, w)] = True
            masks[k] ^= rng.random((h, w)) < 0.03
    return masks


@pytest.mark.parametrize("seed", range(4))
def test_cropped_scores_equal_full_frame_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t, h, w = 21, int(rng.integers(20, 70)), int(rng.integers(20, 90))  # more frames than one chunk
    gt, pred = _random_masks(rng, t, h, w), _random_masks(rng, t, h, w)
    np.testing.assert_array_equal(metrics.boundary_f_measure(gt, pred), _naive_f(gt, pred))
    np.testing.assert_array_equal(metrics.boundary_f_measure(gt, pred, bound_th=0.1), _naive_f(gt, pred, 0.1))
    inter, union = (gt & pred).sum((1, 2)), (gt | pred).sum((1, 2))
    naive_j = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
    np.testing.assert_array_equal(metrics.region_similarity(gt, pred), naive_j)
    labels_gt, labels_pred = gt.astype(np.uint8), pred.astype(np.uint8) * 2
    j, f = metrics.object_scores(labels_gt, labels_pred, [1, 2])
    np.testing.assert_array_equal(j[:, 0], np.where(gt.any((1, 2)), 0.0, 1.0))
    np.testing.assert_array_equal(f[:, 1], np.where(pred.any((1, 2)) & metrics.boundary_map(pred).any((1, 2)),
                                                    0.0, 1.0))


def test_decay_bins_match_readme() -> None:
    table = {10: [0, 2, 5, 7, 9], 12: [0, 3, 6, 8, 11], 14: [0, 3, 7, 10, 13], 16: [0, 4, 8, 11, 15],
             20: [0, 5, 10, 14, 19], 23: [0, 6, 11, 17, 22]}
    for n, bins in table.items():
        assert metrics.decay_bins(n).tolist() == bins


def test_statistics_and_uint8_quirk() -> None:
    values = np.linspace(1.0, 0.0, 10)
    mean, recall, decay = metrics.mean_recall_decay(values)
    assert mean == pytest.approx(0.5)
    assert recall == pytest.approx(0.5)  # strictly greater than 0.5
    assert decay == pytest.approx(np.mean(values[0:3]) - np.mean(values[7:10]))
    long = np.linspace(1.0, 0.0, 300)
    assert np.isnan(metrics.mean_recall_decay(long)[2])  # the official uint8 boundaries wrap around
    exact = metrics.mean_recall_decay(long, uint8_quirk=False)[2]
    assert exact == pytest.approx(np.mean(long[0:76]) - np.mean(long[224:300]))


def test_interactive_objects() -> None:
    gt = np.zeros((3, 10, 10), np.int64)
    gt[:, 2:5, 2:5] = 1
    gt[:, 6:8, 6:8] = 3
    gt[0, 0, :] = 255
    pred = gt.copy()
    pred[pred == 255] = 0
    assert metrics.batched_jaccard(gt, pred, average_over_objects=False).shape == (3, 2)  # ids 1 and 3
    per_object = metrics.batched_jaccard(gt, pred, average_over_objects=False, nb_objects=3)
    assert per_object.tolist() == [[1.0, 1.0, 1.0]] * 3  # id 2: empty in both -> 1
    assert metrics.batched_f_measure(gt, pred, nb_objects=3).tolist() == [1.0] * 3
    with pytest.raises(ValueError):
        metrics.batched_jaccard(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)))
    with pytest.raises(ValueError):
        metrics.batched_f_measure(np.zeros((1, 4, 4)), np.zeros((1, 4, 5)), nb_objects=1)

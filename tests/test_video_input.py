"""The evaluator convention shared by BMVOS, EMVOS and TBD (`common.inference.video_input`) and the fast modes'
given-mask bookkeeping (`common.modeling.given_masks`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.inference.video_input import (frames_to_tensor, given_mask_list, labels_at_frame_size, load_video_inputs,
                                          resize_like_evaluator, resized_size)
from common.modeling.given_masks import each_id_given_once, object_ids_in, two_channel_segs

pytestmark = pytest.mark.usefixtures("one_thread")


def boxes_mask(h: int, w: int, boxes: Dict[int, tuple]) -> torch.Tensor:
    """int64 `[1, 1, h, w]` label map with `label: (y0, y1, x0, x1)` boxes."""
    mask = torch.zeros(1, 1, h, w, dtype=torch.long)
    for label, (y0, y1, x0, x1) in boxes.items():
        mask[..., y0:y1, x0:x1] = label
    return mask


def per_frame_resize(imgs: torch.Tensor, size: tuple) -> torch.Tensor:
    """The straightforward reference: every frame on its own, bicubic."""
    return torch.stack([F.interpolate(imgs[:, t], size=size, mode="bicubic") for t in range(imgs.shape[1])], 1)


# ----------------------------------------------------------------------------------------------
# The 480p rule
# ----------------------------------------------------------------------------------------------

def test_resized_size():
    assert resized_size(720, 1280) == (480, 853)
    assert resized_size(1280, 720) == (853, 480)
    assert resized_size(480, 854) is None
    assert resized_size(910, 480) is None
    assert resized_size(600, 600) == (480, 480)
    assert resized_size(37, 50) == (480, 648)  # int(480 / 37 * 50) = int(648.6...)
    assert resized_size(32, 40, short_side=64) == (64, 80)


@pytest.mark.parametrize("shape", [(1, 4, 3, 37, 50),    # wide, upscaled
                                   (1, 3, 3, 61, 45),    # tall, upscaled
                                   (1, 2, 3, 530, 701)])  # wide, downscaled
def test_resize_equals_per_frame_interpolation(shape):
    """One call over all frames gives the same numbers, bit for bit, as resizing frame by frame."""
    torch.manual_seed(0)
    imgs = torch.rand(shape)
    h, w = shape[-2:]
    given = [boxes_mask(h, w, {1: (0, h, 0, w // 2), 2: (0, h, w // 2, w)}), None,
             *[None] * (shape[1] - 2)]
    out, masks, resized = resize_like_evaluator(imgs, given)
    size = resized_size(h, w)
    assert resized and out.shape == (*shape[:3], *size) and out.is_contiguous()
    assert torch.equal(out, per_frame_resize(imgs, size))
    assert torch.equal(masks[0], F.interpolate(given[0].float(), size=size, mode="nearest").long())
    assert masks[0].dtype == torch.long and all(m is None for m in masks[1:])


def test_short_side_already_480_is_kept():
    imgs = torch.rand(1, 2, 3, 480, 500)
    given = [boxes_mask(480, 500, {1: (0, 2, 0, 2)}), None]
    out, masks, resized = resize_like_evaluator(imgs, given)
    assert not resized and out is imgs and masks == given


def test_a_tiny_object_keeps_the_original_size():
    imgs = torch.rand(1, 3, 3, 60, 80)
    big = boxes_mask(60, 80, {1: (10, 50, 10, 70)})
    out, masks, resized = resize_like_evaluator(imgs, [big, None, None])
    assert resized and out.shape[-2:] == (480, 640) and masks[0].shape[-2:] == (480, 640)
    # 4 px -> 256 px at 480p, under 1000: the whole video keeps its size, wherever the object is given
    late_tiny = boxes_mask(60, 80, {2: (0, 2, 0, 2)})
    given = [big, None, late_tiny]
    out, masks, resized = resize_like_evaluator(imgs, given)
    assert not resized and out is imgs and all(a is b for a, b in zip(masks, given))
    # the limit is counted after resizing and can be set
    out, _, resized = resize_like_evaluator(imgs, given, min_object_pixels=256)
    assert resized and torch.equal(out, per_frame_resize(imgs, (480, 640)))
    out, _, resized = resize_like_evaluator(imgs, given, short_side=64, min_object_pixels=9)  # 2x2 -> 3x3
    assert resized and out.shape[-2:] == (64, 85)
    _, _, resized = resize_like_evaluator(imgs, given, short_side=64, min_object_pixels=10)
    assert not resized


def test_bicubic_values_are_not_clamped():
    imgs = torch.zeros(1, 1, 3, 20, 30)
    imgs[..., 15:] = 1  # a hard edge: bicubic overshoots on both sides
    out, _, resized = resize_like_evaluator(imgs, [None], short_side=40)
    assert resized and out.min() < 0 and out.max() > 1


# ----------------------------------------------------------------------------------------------
# Video -> tensors -> label maps
# ----------------------------------------------------------------------------------------------

def test_frames_and_given_masks_to_tensors():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 5, 7, 3), dtype=np.uint8)
    imgs = frames_to_tensor(frames)
    assert imgs.shape == (1, 3, 3, 5, 7) and imgs.dtype == torch.float32 and imgs.is_contiguous()
    expected = np.transpose(frames, (0, 3, 1, 2)).astype(np.float32) / np.float32(255)  # what ToTensor gives
    assert np.array_equal(imgs[0].numpy(), expected)
    labels = rng.integers(0, 3, (5, 7), dtype=np.uint8)
    given = given_mask_list({0: labels, 2: labels}, 3)
    assert given[1] is None and given[0].shape == (1, 1, 5, 7) and given[2].dtype == torch.int64
    assert np.array_equal(given[0][0, 0].numpy(), labels)


@dataclass
class StubVideo:
    """What `load_video_inputs` reads of a `common.data.datasets.Video`."""
    frames: np.ndarray
    given: Dict[int, np.ndarray]

    def load_frames(self) -> np.ndarray:
        return self.frames

    def load_given_masks(self) -> Dict[int, np.ndarray]:
        return self.given


def test_load_video_inputs_and_labels_back_at_frame_size():
    frames = np.zeros((2, 60, 80, 3), np.uint8)
    big = np.zeros((60, 80), np.uint8)
    big[10:40, 10:50] = 1
    video = StubVideo(frames, {0: big})
    imgs, given, frame_size = load_video_inputs(video, torch.device("cpu"))
    assert imgs.shape == (1, 2, 3, 480, 640) and given[0].shape == (1, 1, 480, 640) and given[1] is None
    assert frame_size == (60, 80)
    labels = labels_at_frame_size(given[0], frame_size)
    assert labels.dtype == np.uint8 and np.array_equal(labels[0], big)  # nearest, 8x up then down

    imgs, given, _ = load_video_inputs(video, torch.device("cpu"), short_side=None)
    assert imgs.shape[-2:] == (60, 80) and np.array_equal(given[0][0, 0].numpy(), big)
    tiny = np.zeros((60, 80), np.uint8)
    tiny[:2, :2] = 1
    imgs, _, _ = load_video_inputs(StubVideo(frames, {0: tiny}), torch.device("cpu"))
    assert imgs.shape[-2:] == (60, 80)
    same = torch.randint(0, 3, (4, 1, 60, 80))
    assert np.array_equal(labels_at_frame_size(same, (60, 80)), same[:, 0].numpy().astype(np.uint8))


# ----------------------------------------------------------------------------------------------
# Given-mask bookkeeping of the fast modes
# ----------------------------------------------------------------------------------------------

def test_each_id_given_once():
    first = boxes_mask(8, 8, {1: (0, 4, 0, 4), 3: (4, 8, 4, 8)})
    new = boxes_mask(8, 8, {2: (0, 2, 6, 8)})
    again = boxes_mask(8, 8, {1: (6, 8, 0, 2)})
    empty = torch.zeros(1, 1, 8, 8, dtype=torch.long)
    assert object_ids_in(first) == [1, 3]
    assert each_id_given_once([first, None, new])
    assert not each_id_given_once([first, new, again])
    assert not each_id_given_once([first, None, first])
    # frame 0 without objects: fine for TBD's fast mode, not for BMVOS's and EMVOS's
    assert each_id_given_once([empty, new]) and each_id_given_once([None, new])
    assert not each_id_given_once([empty, new], require_first_frame_objects=True)
    assert not each_id_given_once([None, new], require_first_frame_objects=True)
    assert each_id_given_once([first, new], require_first_frame_objects=True)
    assert not each_id_given_once([first, again], require_first_frame_objects=True)


def test_two_channel_segs():
    labels = torch.randint(0, 4, (1, 1, 5, 6))
    segs = two_channel_segs(labels, [1, 3])
    assert segs.shape == (2, 2, 5, 6) and segs.dtype == torch.float32
    assert torch.equal(segs[1, 1], (labels[0, 0] == 3).float()) and torch.equal(segs[0, 0], (labels[0, 0] != 1).float())

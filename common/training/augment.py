"""Joint image/label augmentation of the BMVOS/EMVOS/TBD training clips.

The official loaders apply, per frame: (EMVOS COCO only) a random affine, a resize of the short side to
480, joint horizontal/vertical flips, (TBD only) a random affine, and a "balanced" random resized crop
that picks one object of the first frame and retries until it keeps enough foreground pixels. The papers
differ only in the parameters and in where the affine sits, so one `ClipRecipe` describes each of them.

Random numbers come from Python's `random` module in the same order as the official code, so a seeded
run draws the same augmentation sequence as the reference would.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

# The official crop marks "no object picked" with this id, so the clip's mask becomes empty and the
# trainer skips the batch (see `Trainer`).
NO_OBJECT = -1


@dataclass(frozen=True)
class AffineRecipe:
    """Random affine of the static-image clips: angle, scale and shear drawn per frame and accumulated.

    Neither paper translates: EMVOS draws a translation with bound 0 (two random numbers, always 0) and TBD
    draws none, which matters only for the RNG sequence, so `draw_translation` says whether to consume them.
    """
    degree: float
    scale_range: Tuple[float, float]
    shear: float
    draw_translation: bool
    image_interpolation: InterpolationMode
    image_fill: Optional[Tuple[int, int, int]]


@dataclass(frozen=True)
class ClipRecipe:
    """Everything that differs between the official clip loaders of the papers.

    - `clip_length`: frames per clip (5 for COCO, 10 for videos in both papers).
    - `output_size`: (H, W) of the crop (384x384 upstream; tiny in smoke tests).
    - `short_side`: resize the short side to this (480 upstream) before cropping; None = keep the size.
    - `affine` / `affine_before_resize`: the random affine and where it sits (EMVOS: before the resize and
      flips; TBD: after the flips).
    - `crop_scale`: area range of the random resized crop; `min_fg_pixels` / `crop_attempts`: the balanced
      crop retries up to `crop_attempts` times until the chosen object keeps that many pixels.
    """
    clip_length: int
    output_size: Tuple[int, int] = (384, 384)
    short_side: Optional[int] = 480
    affine: Optional[AffineRecipe] = None
    affine_before_resize: bool = False
    crop_scale: Tuple[float, float] = (0.8, 1.25)
    min_fg_pixels: int = 256
    crop_attempts: int = 10

    def scaled(self, *, output_size: Optional[Tuple[int, int]] = None, short_side: Optional[int] = -1,
               clip_length: Optional[int] = None, min_fg_pixels: Optional[int] = None) -> "ClipRecipe":
        """The same recipe with smaller sizes (for smoke runs); `short_side=-1` keeps it as is."""
        return replace(
            self,
            output_size=self.output_size if output_size is None else tuple(output_size),
            short_side=self.short_side if short_side == -1 else short_side,
            clip_length=self.clip_length if clip_length is None else clip_length,
            min_fg_pixels=self.min_fg_pixels if min_fg_pixels is None else min_fg_pixels,
        )


# --- The official recipes --------------------------------------------------------------------------------------------

EMVOS_COCO = ClipRecipe(
    clip_length=5,
    affine=AffineRecipe(degree=10, scale_range=(0.9, 1.1), shear=10, draw_translation=True,
                        # EMVOS passes no interpolation, so torchvision's default (nearest) warps the image too.
                        image_interpolation=InterpolationMode.NEAREST, image_fill=(124, 116, 104)),
    affine_before_resize=True,
    crop_scale=(0.8, 1.25),
)
EMVOS_VIDEO = ClipRecipe(clip_length=10, crop_scale=(0.8, 1.25))

TBD_COCO = ClipRecipe(
    clip_length=5,
    short_side=None,
    affine=AffineRecipe(degree=20, scale_range=(0.8, 1.25), shear=20, draw_translation=False,
                        image_interpolation=InterpolationMode.BICUBIC, image_fill=None),
    crop_scale=(0.5, 1.0),
)
_TBD_VIDEO_AFFINE = AffineRecipe(degree=5, scale_range=(0.95, 1.05), shear=5, draw_translation=False,
                                 image_interpolation=InterpolationMode.BICUBIC, image_fill=None)
# TBD's DAVIS loader does not resize (DAVIS 480p already has a 480 short side); its YouTube-VOS loader
# resizes to 480 only when needed, which PIL does anyway (a same-size resize is a copy).
TBD_DAVIS = ClipRecipe(clip_length=10, short_side=None, affine=_TBD_VIDEO_AFFINE, crop_scale=(0.8, 1.0))
TBD_YTVOS = ClipRecipe(clip_length=10, short_side=480, affine=_TBD_VIDEO_AFFINE, crop_scale=(0.8, 1.0))


# --- Building blocks ---------------------------------------------------------------------------------------------------

def label_to_long(mask: Image.Image) -> torch.Tensor:
    """A palette/grey label image as int64 `[1, H, W]`, void (255) turned into background."""
    label = torch.from_numpy(np.array(mask, dtype=np.uint8)).long()
    if label.ndim == 3:  # multi-channel label images: the official loader keeps channel 0
        label = label[..., 0]
    label = label.unsqueeze(0)
    label[label == 255] = 0
    return label


def draw_affine(recipe: AffineRecipe, rng: random.Random) -> tuple:
    """(angle, translate, scale, shear) drawn in the official order."""
    angle = rng.uniform(-recipe.degree, recipe.degree)
    if recipe.draw_translation:
        # translate=0 upstream: the draws are consumed, the result is always (0, 0).
        rng.uniform(-0.0, 0.0)
        rng.uniform(-0.0, 0.0)
    scale = rng.uniform(recipe.scale_range[0], recipe.scale_range[1])
    shear = [rng.uniform(-recipe.shear, recipe.shear), rng.uniform(-recipe.shear, recipe.shear)]
    return angle, (0, 0), scale, shear


def accumulate_affine(new: tuple, old: tuple) -> tuple:
    """Frames after the first compose their draw with the previous frame's transform (angles and shears
    add, scales multiply), so a static image turns into a smoothly moving clip."""
    return (new[0] + old[0], (0, 0), new[2] * old[2], [new[3][0] + old[3][0], new[3][1] + old[3][1]])


def apply_affine(img: Image.Image, mask: Image.Image, params: tuple,
                 recipe: AffineRecipe) -> Tuple[Image.Image, Image.Image]:
    angle, translate, scale, shear = params
    fill = None if recipe.image_fill is None else list(recipe.image_fill)
    img = TF.affine(img, angle, list(translate), scale, list(shear), recipe.image_interpolation, fill)
    mask = TF.affine(mask, angle, list(translate), scale, list(shear), InterpolationMode.NEAREST)
    return img, mask


def resize_short_side(img: Image.Image, mask: Image.Image, short_side: int) -> Tuple[Image.Image, Image.Image]:
    """Short side to `short_side` (bicubic image, nearest label), the long side as `int(ratio * side)`."""
    w, h = img.size
    if h > w:
        size = (short_side, int(short_side / w * h))
    else:
        size = (int(short_side / h * w), short_side)
    return img.resize(size, Image.BICUBIC), mask.resize(size, Image.NEAREST)


def random_crop_params(size_wh: Tuple[int, int], scale: Tuple[float, float], rng: random.Random,
                       ratio: Tuple[float, float] = (3 / 4, 4 / 3)) -> Tuple[int, int, int, int]:
    """(top, left, height, width) of a random crop covering `scale` of the area (torchvision's
    RandomResizedCrop rule, with its centre-crop fallback after 10 failed draws)."""
    width, height = size_wh
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = rng.uniform(*scale) * area
        aspect_ratio = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _select(label: torch.Tensor, object_id: int) -> torch.Tensor:
    return (label == object_id).long()


class ClipAugmenter:
    """Turns a list of (RGB image, label image) frames into one training clip.

    Draw the flips with `draw_flips(rng)` once per clip *where the official loader draws them*, then call it. Returns
    `imgs` float `[L, 3, H, W]` in [0, 1] and `masks` int64 `[L, 1, H, W]` in {0, 1}.
    """

    def __init__(self, recipe: ClipRecipe) -> None:
        self.recipe = recipe

    @staticmethod
    def draw_flips(rng: random.Random) -> Tuple[bool, bool]:
        return rng.random() > 0.5, rng.random() > 0.5

    def __call__(self, frames: Sequence[Tuple[Image.Image, Image.Image]], flips: Tuple[bool, bool],
                 rng: random.Random) -> dict:
        r = self.recipe
        h_flip, v_flip = flips
        imgs: List[torch.Tensor] = []
        masks: List[torch.Tensor] = []
        affine_so_far = None
        crop = None
        object_id = NO_OBJECT
        for i, (img, mask) in enumerate(frames):
            if r.affine is not None and r.affine_before_resize:
                img, mask, affine_so_far = self._affine(img, mask, affine_so_far, rng)
            if r.short_side is not None:
                img, mask = resize_short_side(img, mask, r.short_side)
            if h_flip:
                img, mask = TF.hflip(img), TF.hflip(mask)
            if v_flip:
                img, mask = TF.vflip(img), TF.vflip(mask)
            if r.affine is not None and not r.affine_before_resize:
                img, mask, affine_so_far = self._affine(img, mask, affine_so_far, rng)

            if i == 0:
                crop, object_id, label = self._balanced_crop(mask, rng)
            else:
                label = _select(self._crop_label(mask, crop), object_id)
            imgs.append(TF.to_tensor(TF.resized_crop(img, *crop, list(r.output_size), InterpolationMode.BICUBIC)))
            masks.append(label)
        return {"imgs": torch.stack(imgs), "masks": torch.stack(masks)}

    def _affine(self, img, mask, so_far, rng):
        assert self.recipe.affine is not None
        params = draw_affine(self.recipe.affine, rng)
        if so_far is not None:
            params = accumulate_affine(params, so_far)
        img, mask = apply_affine(img, mask, params, self.recipe.affine)
        return img, mask, params

    def _crop_label(self, mask: Image.Image, crop: Tuple[int, int, int, int]) -> torch.Tensor:
        return label_to_long(TF.resized_crop(mask, *crop, list(self.recipe.output_size), InterpolationMode.NEAREST))

    def _balanced_crop(self, mask: Image.Image, rng: random.Random):
        """Random crops of the first frame until the randomly chosen object keeps `min_fg_pixels` pixels
        (the last attempt is taken whatever it holds)."""
        r = self.recipe
        for attempt in range(r.crop_attempts):
            crop = random_crop_params(mask.size, r.crop_scale, rng)
            label = self._crop_label(mask, crop)
            ids = [k for k in label.unique().tolist() if k != 0]
            object_id = rng.choice(ids) if ids else NO_OBJECT
            label = _select(label, object_id)
            if int(label.sum()) >= r.min_fg_pixels or attempt == r.crop_attempts - 1:
                return crop, object_id, label
        raise AssertionError("unreachable")

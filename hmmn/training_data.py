"""HMMN's training clips: static images turned into 3-frame clips (pre-training) and 3 frames sampled from
DAVIS 2017 / YouTube-VOS videos with a growing maximum skip (main training).

HMMN's authors did not release their training code and pointed to STCN's (Hongje/HMMN issues 2, 4); these
loaders rebuild STCN's (`dataset/static_dataset.py`, `dataset/vos_dataset.py`, `train.py`) in this
project's terms, which is also the STM/KMN recipe the HMMN paper follows (3-frame clips, 384x384 crops).
Every source is listed in hmmn/README.md ("Training").

Each item is `{'imgs': float [L, 3, H, W] in [0, 1], 'masks': int64 [L, 1, H, W]}` with labels 0 =
background, 1 = the target object, 2 = a second object of the same clip (videos only; STCN trains two
objects at once so the memory encoder's "other objects" input learns, see `hmmn.model.MemoryEncoder`).
Random numbers come from Python's `random` (the DataLoader reseeds it in every worker), so a seeded run
repeats. `len()` is the number of clips per epoch, as in `common.training.clips`.
"""
from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode

from common.data.datasets import COCO, read_list
from common.data.paths import PathLike
from common.runtime.errors import UserError
from common.training.clips import CHECKED_UP_FRONT, check_label_mode, require_label_mode

IMAGE_FILL = (124, 116, 104)  # STCN's `im_mean` (ImageNet mean * 255): the fill of affine warps and crop padding
SECOND_OBJECT = 2
TARGET_TRIALS = 5  # STCN's VOSDataset retries the frame draw 5 times when frame 0 holds no object


@dataclass(frozen=True)
class ClipAugmentation:
    """STCN's augmentation parameters; the `*_p` probabilities exist so tests can force every branch."""
    crop: int = 384
    clip_length: int = 3
    # the same for every frame of a clip
    crop_scale: Tuple[float, float] = (0.36, 1.0)        # videos: RandomResizedCrop area (DAVIS/YouTube-VOS)
    static_scale: Tuple[float, float] = (0.8, 1.5)       # static images: clip-wide RandomAffine scale
    flip_p: float = 0.5
    clip_jitter: Tuple[float, float, float] = (0.1, 0.03, 0.03)  # brightness, contrast, saturation
    grayscale_p: float = 0.05
    # drawn per frame
    frame_degrees: float = 15.0                          # videos (static images: 20, see STATIC)
    frame_shear: float = 10.0
    frame_scale: Tuple[float, float] = (1.0, 1.0)        # static images: (0.9, 1.1)
    frame_jitter: Tuple[float, float, float] = (0.01, 0.01, 0.01)
    enabled: bool = True                                 # False (--no-augment): frame resized to crop x crop

    def scaled(self, crop: Optional[int] = None, clip_length: Optional[int] = None,
               enabled: Optional[bool] = None) -> "ClipAugmentation":
        return replace(self, crop=crop or self.crop, clip_length=clip_length or self.clip_length,
                       enabled=self.enabled if enabled is None else enabled)


VIDEO = ClipAugmentation()
STATIC = ClipAugmentation(frame_degrees=20.0, frame_scale=(0.9, 1.1), clip_jitter=(0.1, 0.05, 0.05),
                          frame_jitter=(0.1, 0.05, 0.05))


def random_resized_crop(size_wh: Tuple[int, int], scale: Tuple[float, float], rng,
                        ratio: Tuple[float, float] = (3 / 4, 4 / 3)) -> Tuple[int, int, int, int]:
    """(top, left, height, width) by torchvision's RandomResizedCrop rule, drawn from `rng`."""
    width, height = size_wh
    area = width * height
    for _ in range(10):
        target = rng.uniform(*scale) * area
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    side = min(width, height)
    return (height - side) // 2, (width - side) // 2, side, side


def _affine(img: Image.Image, label: Image.Image, angle: float, scale: float, shear: Sequence[float]):
    img = TF.affine(img, angle, [0, 0], scale, list(shear), InterpolationMode.BICUBIC, list(IMAGE_FILL))
    label = TF.affine(label, angle, [0, 0], scale, list(shear), InterpolationMode.NEAREST, [0])
    return img, label


def _jitter(img: Image.Image, strength: Tuple[float, float, float], rng) -> Image.Image:
    """Colour jitter of the image only (brightness, contrast, saturation factors in 1 +- strength)."""
    b, c, s = (rng.uniform(max(0.0, 1 - k), 1 + k) for k in strength)
    return TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(img, b), c), s)


class ClipAugmenter:
    """Turns (RGB image, instance-id label image) frames into one clip, the same geometry on image and label.

    Videos (`static=False`): clip-wide horizontal flip and random resized crop to `crop`, then per frame a small
    random affine (STCN `VOSDataset`). Static images (`static=True`): clip-wide random scale and flip, then per
    frame a random affine, the short side resized to `crop` and a random `crop` x `crop` crop (STCN
    `StaticTransformDataset`). Colour jitter and greyscale touch only the image. Returns the frames as tensors
    and the label maps (instance ids) as int64 `[L, H, W]`.
    """

    def __init__(self, aug: ClipAugmentation, static: bool) -> None:
        self.aug = aug
        self.static = static

    def __call__(self, frames: Sequence[Tuple[Image.Image, Image.Image]], rng) -> Tuple[torch.Tensor, torch.Tensor]:
        a = self.aug
        out_imgs, out_labels = [], []
        if not a.enabled:
            for img, label in frames:
                out_imgs.append(TF.to_tensor(img.resize((a.crop, a.crop), Image.BICUBIC)))
                out_labels.append(_label_tensor(label.resize((a.crop, a.crop), Image.NEAREST)))
            return torch.stack(out_imgs), torch.stack(out_labels)

        flip = rng.random() < a.flip_p
        gray = rng.random() < a.grayscale_p
        clip_jitter = tuple(rng.uniform(max(0.0, 1 - k), 1 + k) for k in a.clip_jitter)
        clip_scale = rng.uniform(*a.static_scale) if self.static else 1.0
        crop_box = None if self.static else random_resized_crop(frames[0][0].size, a.crop_scale, rng)
        for img, label in frames:
            if flip:
                img, label = TF.hflip(img), TF.hflip(label)
            if self.static:
                img, label = _affine(img, label, 0.0, clip_scale, (0.0, 0.0))
                img, label = self._static_frame(img, label, rng)
            else:
                img = TF.resized_crop(img, *crop_box, [a.crop, a.crop], InterpolationMode.BICUBIC)
                label = TF.resized_crop(label, *crop_box, [a.crop, a.crop], InterpolationMode.NEAREST)
                img, label = _affine(img, label, rng.uniform(-a.frame_degrees, a.frame_degrees), 1.0,
                                     (rng.uniform(-a.frame_shear, a.frame_shear), 0.0))
            b, c, s = clip_jitter
            img = TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(img, b), c), s)
            img = _jitter(img, a.frame_jitter, rng)
            if gray:
                img = TF.rgb_to_grayscale(img, num_output_channels=3)
            out_imgs.append(TF.to_tensor(img))
            out_labels.append(_label_tensor(label))
        return torch.stack(out_imgs), torch.stack(out_labels)

    def _static_frame(self, img: Image.Image, label: Image.Image, rng):
        a = self.aug
        img, label = _affine(img, label, rng.uniform(-a.frame_degrees, a.frame_degrees), rng.uniform(*a.frame_scale),
                             (rng.uniform(-a.frame_shear, a.frame_shear), 0.0))
        w, h = img.size
        size = (a.crop, max(a.crop, round(h * a.crop / w))) if w <= h else (max(a.crop, round(w * a.crop / h)), a.crop)
        img, label = img.resize(size, Image.BICUBIC), label.resize(size, Image.NEAREST)
        top, left = rng.randint(0, size[1] - a.crop), rng.randint(0, size[0] - a.crop)
        return TF.crop(img, top, left, a.crop, a.crop), TF.crop(label, top, left, a.crop, a.crop)


def _label_tensor(label: Image.Image) -> torch.Tensor:
    array = np.array(label, dtype=np.uint8)  # object ids: `_open` admits label modes only (P, L, 1)
    t = torch.from_numpy(array.astype(np.int64))
    t[t == 255] = 0  # void counts as background, as in the other papers' loaders
    return t


def _open(img_path: Path, label_path: Path) -> Tuple[Image.Image, Image.Image]:
    try:
        with Image.open(img_path) as img, Image.open(label_path) as label:
            img.load()
            label.load()
            rgb = img.convert("RGB")
            ids = label.copy()
    except OSError as err:
        raise UserError(f"cannot read training frame {img_path} / {label_path}: {err}") from err
    require_label_mode(label_path, ids.mode)  # as the other papers' loaders: an RGB rendering is not ids
    return rgb, ids


def pick_objects(labels: torch.Tensor, rng, two: bool) -> Tuple[int, Optional[int]]:
    """A random object of frame 0 (and, for `two`, a random other one), as STCN's `VOSDataset` picks them."""
    ids = sorted(i for i in torch.unique(labels[0]).tolist() if i != 0)
    if not ids:
        return -1, None
    target = rng.choice(ids)
    others = [i for i in ids if i != target]
    return target, (rng.choice(others) if two and others else None)


def relabel(labels: torch.Tensor, target: int, second: Optional[int]) -> torch.Tensor:
    """Instance ids `[L, H, W]` -> `[L, 1, H, W]` with 1 = target, 2 = second object, 0 elsewhere."""
    out = (labels == target).long()
    if second is not None:
        out[labels == second] = SECOND_OBJECT
    return out.unsqueeze(1)


# --- static images ----------------------------------------------------------------------------------------------------

class StaticClips(Dataset):
    """Clips of `clip_length` frames made from one static image (COCO layout: JPEGImages/ + Annotations/ of
    instance ids), single object as STCN's stage 0 (the other objects are background)."""

    def __init__(self, root: PathLike, aug: ClipAugmentation = STATIC, clips_per_epoch: int = 16000, rng=None):
        self.pairs = list(COCO(root))
        for _, label_path in self.pairs[:CHECKED_UP_FRONT]:
            check_label_mode(label_path)
        self.augment = ClipAugmenter(aug, static=True)
        self.clips_per_epoch = clips_per_epoch
        self.rng = rng

    def __len__(self) -> int:
        return self.clips_per_epoch

    def set_progress(self, fraction: float) -> None:
        """The static stage has no curriculum."""

    def __getitem__(self, index: int) -> dict:
        rng = self.rng or random
        frame = _open(*self.pairs[rng.randrange(len(self.pairs))])
        for _ in range(TARGET_TRIALS):
            imgs, labels = self.augment([frame] * self.augment.aug.clip_length, rng)
            target, _ = pick_objects(labels, rng, two=False)
            if target >= 0:
                break
        return {"imgs": imgs, "masks": relabel(labels, target, None)}


# --- videos -----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainVideo:
    name: str
    frames: List[Path]
    labels: List[Path]
    skip_divisor: int   # YouTube-VOS train keeps every 5th frame: STCN divides its max skip by 5 there
    weight: float       # STCN repeats DAVIS 5 times next to YouTube-VOS


def _annotated_frames(image_dir: Path, label_dir: Path) -> Tuple[List[Path], List[Path]]:
    for folder in (image_dir, label_dir):
        if not folder.is_dir():
            raise UserError(f"training folder not found: {folder}")
    labels = {n[:-4] for n in os.listdir(label_dir) if n.endswith(".png") and not n.startswith(".")}
    stems = sorted(n[:-4] for n in os.listdir(image_dir) if n.endswith(".jpg") and n[:-4] in labels)
    return [image_dir / f"{s}.jpg" for s in stems], [label_dir / f"{s}.png" for s in stems]


def davis_videos(root: PathLike, weight: float = 5.0) -> List[TrainVideo]:
    """DAVIS 2017 `ImageSets/2017/train.txt` videos (JPEGImages/480p + Annotations/480p)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"DAVIS root not found: {root}; pass the DAVIS 2017 folder (JPEGImages/, Annotations/, "
                        f"ImageSets/)")
    names = read_list(root / "ImageSets" / "2017" / "train.txt",
                      "the DAVIS 2017 trainval release contains ImageSets/2017/train.txt", "video")
    return [TrainVideo(n, *_annotated_frames(root / "JPEGImages" / "480p" / n, root / "Annotations" / "480p" / n),
                       skip_divisor=1, weight=weight) for n in names]


def ytvos_videos(root: PathLike) -> List[TrainVideo]:
    """YouTube-VOS `<root>/train/{JPEGImages,Annotations}/<video>/` (every video; annotated frames only)."""
    base = Path(root) / "train"
    if not (base / "JPEGImages").is_dir():
        raise UserError(f"YouTube-VOS training frames not found: {base / 'JPEGImages'}; pass the YouTube-VOS root "
                        f"that contains train/JPEGImages and train/Annotations")
    names = sorted(n for n in os.listdir(base / "JPEGImages") if not n.startswith("."))
    return [TrainVideo(n, *_annotated_frames(base / "JPEGImages" / n, base / "Annotations" / n),
                       skip_divisor=5, weight=1.0) for n in names]


def sample_frame_ids(length: int, clip_length: int, max_skip: int, rng) -> List[int]:
    """STCN's frame draw, for any clip length: a start frame, then each next frame 1..max_skip+1 later, with
    the range kept off the video's end (so a short video is not biased to its last frames)."""
    jump = min(length, max_skip)
    ids = [rng.randrange(length - jump + 1)]
    for k in range(1, clip_length):
        limit = length - jump if k < clip_length - 1 else length - jump // 2
        ids.append(min(ids[-1] + rng.randrange(jump + 1) + 1, limit, length - 1))
    return ids


class VideoClips(Dataset):
    """Clips of `clip_length` frames of one video, two objects when it has them (STCN `VOSDataset`).

    `max_skip` follows the curriculum of `set_progress` unless fixed (`--max-skip`).
    """

    def __init__(self, videos: Sequence[TrainVideo], aug: ClipAugmentation = VIDEO, clips_per_epoch: int = 8000,
                 curriculum: Sequence[Tuple[float, int]] = (), max_skip: Optional[int] = None, rng=None):
        usable = [v for v in videos if len(v.frames) >= aug.clip_length]
        if not usable:
            raise UserError(f"no training video has {aug.clip_length} annotated frames (a JPEG with its PNG): "
                            f"checked {len(videos)} video(s), e.g. {videos[0].name if videos else 'none listed'}; "
                            f"a clip needs {aug.clip_length} frames")
        for video in usable:
            check_label_mode(video.labels[0])
        self.videos = usable
        self.weights = [v.weight for v in usable]
        self.augment = ClipAugmenter(aug, static=False)
        self.clips_per_epoch = clips_per_epoch
        self.curriculum = list(curriculum)
        self.fixed_skip = max_skip
        self.max_skip = max_skip if max_skip is not None else (self.curriculum[0][1] if self.curriculum else 5)
        self.rng = rng

    def __len__(self) -> int:
        return self.clips_per_epoch

    def set_progress(self, fraction: float) -> None:
        """Max skip for the epoch that starts at `fraction` of the stage (STCN `train.py` renews its loaders
        with `skip_values[i]` once `increase_skip_fraction[i]` of the epochs are done)."""
        if self.fixed_skip is not None:
            return
        for start, skip in self.curriculum:
            if fraction >= start:
                self.max_skip = skip

    def __getitem__(self, index: int) -> dict:
        rng = self.rng or random
        video = rng.choices(self.videos, weights=self.weights)[0]
        skip = max(1, self.max_skip // video.skip_divisor)
        for _ in range(TARGET_TRIALS):
            ids = sample_frame_ids(len(video.frames), self.augment.aug.clip_length, skip, rng)
            if rng.random() < 0.5:
                ids = ids[::-1]  # time reversal
            imgs, labels = self.augment([_open(video.frames[i], video.labels[i]) for i in ids], rng)
            target, second = pick_objects(labels, rng, two=True)
            if target >= 0:
                break
        return {"imgs": imgs, "masks": relabel(labels, target, second)}

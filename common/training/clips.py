"""Training clip datasets: COCO static images and DAVIS 2017 / YouTube-VOS videos.

Each item is a fresh random clip (`{'imgs': float [L,3,H,W], 'masks': int64 [L,1,H,W] in {0,1}}`) of one
object, drawn with Python's `random` like the official loaders (the DataLoader seeds `random` in every
worker from torch's generator, so a seeded run is reproducible). `len()` is the number of clips per
"epoch" (the official `clip_n`, 128), because upstream an epoch is one pass over that many random clips.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from PIL import Image
from torch.utils.data import Dataset

from common.data.datasets import read_list
from common.data.paths import PathLike
from common.runtime.errors import UserError
from common.training.augment import ClipAugmenter, ClipRecipe

# label image modes that hold object ids directly: palette (DAVIS, the COCO conversion), greyscale, bilevel
LABEL_MODES = ("P", "L", "1")
# masks checked (header only) when a dataset is built; the rest when their clip is drawn
CHECKED_UP_FRONT = 100


def require_label_mode(path: Path, mode: str) -> None:
    """Refuse a training annotation of image `mode` that does not hold object ids (an RGB rendering)."""
    if mode not in LABEL_MODES:
        raise UserError(f"training mask {path} has image mode {mode}; annotations must be palette (P) or greyscale "
                        f"(L) PNGs holding object ids (0 = background), as DAVIS ships them -- an RGB rendering of "
                        f"the colours cannot be read back as ids; convert it to a palette PNG")


def check_label_mode(path: Path) -> None:
    """`require_label_mode` from the file's header alone (for the checks made when a dataset is built)."""
    try:
        with Image.open(path) as image:
            mode = image.mode
    except OSError as err:
        raise UserError(f"cannot read training mask {path}: {err}") from err
    require_label_mode(path, mode)


def _open_pair(img_path: Path, mask_path: Path) -> Tuple[Image.Image, Image.Image]:
    try:
        img = Image.open(img_path)
        img.load()
        mask = Image.open(mask_path)
        mask.load()
    except OSError as err:
        raise UserError(f"cannot read training frame {img_path} / {mask_path}: {err}") from err
    require_label_mode(mask_path, mask.mode)
    return img.convert("RGB"), mask


def _files(folder: Path, suffix: str) -> List[Path]:
    if not folder.is_dir():
        raise UserError(f"training folder not found: {folder}")
    return sorted(folder / n for n in os.listdir(folder) if n.endswith(suffix) and not n.startswith("."))


def _keep_rng(rng) -> Optional[random.Random]:
    """A private `random.Random` is kept; the `random` module (the default, as upstream) is looked up at
    call time so the dataset stays picklable for DataLoader workers, which reseed it per worker."""
    return rng if isinstance(rng, random.Random) else None


class COCOClips(Dataset):
    """Static COCO images turned into clips by the recipe's accumulated random affine.

    Layout: `root/JPEGImages/<id>.jpg` + `root/Annotations/<id>.png` (instance ids; see `common.data.datasets.COCO`).
    """

    def __init__(self, root: PathLike, recipe: ClipRecipe, clips_per_epoch: int = 128, rng=random) -> None:
        from common.data.datasets import COCO  # the shared loader checks the layout and the pairing
        self.pairs: List[Tuple[Path, Path]] = list(COCO(root))
        for _, mask_path in self.pairs[:CHECKED_UP_FRONT]:
            check_label_mode(mask_path)
        self.augment = ClipAugmenter(recipe)
        self.clips_per_epoch = clips_per_epoch
        self.rng = _keep_rng(rng)

    def __len__(self) -> int:
        return self.clips_per_epoch

    def __getitem__(self, index: int) -> dict:
        rng = self.rng or random
        flips = ClipAugmenter.draw_flips(rng)
        img_path, mask_path = self.pairs[rng.choice(range(len(self.pairs)))]
        img, mask = _open_pair(img_path, mask_path)
        return self.augment([(img, mask)] * self.augment.recipe.clip_length, flips, rng)


class VideoClips(Dataset):
    """Clips of consecutive annotated frames from a list of videos (DAVIS / YouTube-VOS train).

    Per clip, as upstream: pick a video, reverse it with probability 0.5, draw the flips, pick a random
    start frame and take the following frames, repeating the last one when the video ends.
    """

    def __init__(self, videos: Sequence[Tuple[str, Sequence[Path], Sequence[Path]]], recipe: ClipRecipe,
                 clips_per_epoch: int = 128, rng=random) -> None:
        self.videos = [(name, list(imgs), list(masks)) for name, imgs, masks in videos]
        for name, imgs, masks in self.videos:
            if not imgs or len(imgs) != len(masks):
                raise UserError(f"training video {name!r} has {len(imgs)} frames but {len(masks)} annotations; "
                                f"every training frame needs its annotation PNG")
            check_label_mode(masks[0])
        self.augment = ClipAugmenter(recipe)
        self.clips_per_epoch = clips_per_epoch
        self.rng = _keep_rng(rng)

    def __len__(self) -> int:
        return self.clips_per_epoch

    def __getitem__(self, index: int) -> dict:
        rng = self.rng or random
        _, img_list, mask_list = rng.choice(self.videos)
        if rng.random() > 0.5:
            img_list, mask_list = img_list[::-1], mask_list[::-1]
        flips = ClipAugmenter.draw_flips(rng)
        frame_ids = rng.sample(range(len(img_list)), 1)
        for _ in range(self.augment.recipe.clip_length - 1):
            frame_ids.append(min(frame_ids[-1] + 1, len(img_list) - 1))
        frames = [_open_pair(img_list[f], mask_list[f]) for f in frame_ids]
        return self.augment(frames, flips, rng)


def davis_train_clips(root: PathLike, recipe: ClipRecipe, clips_per_epoch: int = 128, year: int = 2017,
                      split: str = "train", rng=random) -> VideoClips:
    """DAVIS `ImageSets/<year>/<split>.txt` videos from `JPEGImages/480p` + `Annotations/480p`."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"DAVIS root not found: {root}; pass the DAVIS 2017 folder (JPEGImages/, Annotations/, "
                        f"ImageSets/)")
    names = read_list(root / "ImageSets" / str(year) / f"{split}.txt",
                      "the DAVIS 2017 trainval release contains ImageSets/2017/train.txt", "video")
    videos = [(n, _files(root / "JPEGImages" / "480p" / n, ".jpg"), _files(root / "Annotations" / "480p" / n, ".png"))
              for n in names]
    return VideoClips(videos, recipe, clips_per_epoch, rng)


def ytvos_train_clips(root: PathLike, recipe: ClipRecipe, clips_per_epoch: int = 128, split_dir: str = "train",
                      video_list: Optional[str] = "train", rng=random) -> VideoClips:
    """YouTube-VOS `<root>/<split_dir>/{JPEGImages,Annotations}/<video>/` training videos.

    `video_list` names `root/ImageSets/<video_list>.txt` (EMVOS: `train`; TBD: the authors' `cho_train`
    split). When the list is `train` and that file does not exist, every video of `<split_dir>` is used
    (the official train set), with a notice.
    """
    root = Path(root)
    base = root / split_dir
    if not (base / "JPEGImages").is_dir():
        raise UserError(f"YouTube-VOS training frames not found: {base / 'JPEGImages'}; pass the YouTube-VOS root "
                        f"that contains {split_dir}/JPEGImages and {split_dir}/Annotations")
    list_path = root / "ImageSets" / f"{video_list}.txt" if video_list else None
    if list_path is not None and (list_path.is_file() or video_list != "train"):
        names = read_list(list_path, "put the video list there (one video name per line)", "video")
    else:
        if list_path is not None:
            print(f"notice: {list_path} not found; training on every video in {base / 'JPEGImages'}")
        names = sorted(n for n in os.listdir(base / "JPEGImages") if not n.startswith("."))
    videos = [(n, _files(base / "JPEGImages" / n, ".jpg"), _files(base / "Annotations" / n, ".png")) for n in names]
    return VideoClips(videos, recipe, clips_per_epoch, rng)

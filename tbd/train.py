"""TBD's part of the shared training pipeline (`common.training`): its clip forward and official schedule.

Official recipe (`run.py --train`, `trainer.py`): COCO pre-training (5-frame clips from static images,
TBD's affine/crop recipe, batch 16, 8000 epochs of 128 clips, checkpoint every 4000, DAVIS 2017 val every
400), then DAVIS 2017 train (10-frame clips, batch 8, 4000 epochs, checkpoint every 1000, validation every
100) -- or YouTube-VOS 2018 on the authors' custom split (`cho_train` for training, validation on `cho_val`,
both drawn from the official train set; same schedule as DAVIS). Adam 1e-4 per stage, swap-and-attach with
probability 0.2, the model kept in eval() mode, DataLoader without shuffling, stage 2 starting from stage
1's final weights. Upstream does not seed; `--seed` makes runs repeatable.

The trainer hands TBD a distance matrix built for 384x384 crops; `tbd_forward_clip` builds it for the
clip's actual size (identical for 384 crops, and what makes smaller smoke-test crops possible).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from common.datasets import Video
from common.errors import UserError
from common.training import (TBD_COCO, TBD_DAVIS, TBD_YTVOS, ClipRecipe, COCOClips, TrainConfig, Trainer, Validate,
                             VideoClips, davis_train_clips, davis_validator)
from tbd.inference import segment_video
from tbd.model import distance_matrix

STAGES = ("coco", "davis", "ytvos")


def tbd_forward_clip(model: nn.Module, imgs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The official trainer's call with the clip's distance matrix -> raw logits `[B, L-1, 2, H, W]`."""
    b, length, _, height, width = imgs.shape
    dist = distance_matrix(height, width, imgs.device).unsqueeze(0).repeat(b, 1, 1)
    return model(imgs, [masks[:, 0]] + (length - 1) * [None], dist, None)["scores"]


@dataclass(frozen=True)
class Stage:
    recipe: ClipRecipe
    epochs: int
    batch_size: int
    save_step: int
    val_step: int
    clips_per_epoch: int = 128


OFFICIAL: Dict[str, Stage] = {
    "coco": Stage(TBD_COCO, epochs=8000, batch_size=16, save_step=4000, val_step=400),
    "davis": Stage(TBD_DAVIS, epochs=4000, batch_size=8, save_step=1000, val_step=100),
    "ytvos": Stage(TBD_YTVOS, epochs=4000, batch_size=8, save_step=1000, val_step=100),
}


@dataclass
class Overrides:
    """Command-line changes to the official schedule (None keeps the official value)."""
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    save_step: Optional[int] = None
    val_step: Optional[int] = None
    clips_per_epoch: Optional[int] = None
    crop: Optional[int] = None
    short_side: Optional[int] = None
    coco_clip_length: Optional[int] = None
    video_clip_length: Optional[int] = None
    min_fg_pixels: Optional[int] = None


def stage_plan(stage: str, o: Overrides) -> Stage:
    s = OFFICIAL[stage]
    recipe = s.recipe.scaled(output_size=(o.crop, o.crop) if o.crop else None,
                             short_side=o.short_side if o.short_side else -1,
                             clip_length=o.coco_clip_length if stage == "coco" else o.video_clip_length,
                             min_fg_pixels=o.min_fg_pixels)

    def pick(new, old):
        return old if new is None else new

    return replace(s, recipe=recipe, epochs=pick(o.epochs, s.epochs), batch_size=pick(o.batch_size, s.batch_size),
                   save_step=pick(o.save_step, s.save_step), val_step=pick(o.val_step, s.val_step),
                   clips_per_epoch=pick(o.clips_per_epoch, s.clips_per_epoch))


def save_name(stages: Sequence[str], index: int) -> str:
    """Official names: 'coco', then 'coco_davis' / 'coco_ytvos'; without COCO just 'davis' / 'ytvos'."""
    return "_".join(stages[: index + 1])


# ----------------------------------------------------------------------------------------------
# YouTube-VOS custom split (cho_train / cho_val, both inside the official train set)
# ----------------------------------------------------------------------------------------------

def _read_names(path: Path) -> List[str]:
    if not path.is_file():
        raise UserError(f"video list not found: {path}; download the authors' custom split (cho_train.txt, "
                        f"cho_val.txt, linked from the TBD README) or pass the file with --ytvos-train-list / "
                        f"--ytvos-val-list")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise UserError(f"video list {path} is empty; it should name one video per line")
    return names


def _sorted_files(folder: Path, suffix: str) -> List[Path]:
    if not folder.is_dir():
        raise UserError(f"YouTube-VOS training folder not found: {folder}; pass the root holding train/JPEGImages "
                        f"and train/Annotations")
    return sorted(folder / n for n in os.listdir(folder) if n.endswith(suffix) and not n.startswith("."))


def ytvos_split_list(root: Path, explicit: Optional[Path], name: str) -> Optional[Path]:
    """The list file to use: the explicit one, else `<root>/ImageSets/<name>.txt` when it exists."""
    if explicit is not None:
        return explicit
    default = root / "ImageSets" / f"{name}.txt"
    return default if default.is_file() else None


def ytvos_train_videos(root: Path, names: Sequence[str]) -> List[tuple]:
    """(name, frame paths, annotation paths) of `names` in `<root>/train/{JPEGImages,Annotations}`."""
    base = root / "train"
    return [(n, _sorted_files(base / "JPEGImages" / n, ".jpg"), _sorted_files(base / "Annotations" / n, ".png"))
            for n in names]


def cho_val_videos(root: Path, names: Sequence[str]) -> List[Video]:
    """The `cho_val` videos as the official TestYTVOS(split='cho_val') reads them: frames from the first
    annotated one on, only that frame's mask given, every frame's annotation as ground truth."""
    base = root / "train"
    videos = []
    for name in names:
        frames = _sorted_files(base / "JPEGImages" / name, ".jpg")
        annotations = {p.stem for p in _sorted_files(base / "Annotations" / name, ".png")}
        if not annotations:
            raise UserError(f"YouTube-VOS video {name} has no annotation in {base / 'Annotations' / name}")
        first = min(annotations, key=int)
        frames = [p for p in frames if int(p.stem) >= int(first)]
        missing = [p.stem for p in frames if p.stem not in annotations]
        if missing:
            raise UserError(f"cho_val video {name} lacks annotations for frames {missing[:3]}; the custom split "
                            f"needs the official train set, where every frame is annotated")
        masks = [base / "Annotations" / name / f"{p.stem}.png" for p in frames]
        videos.append(Video(name=name, frame_paths=frames, frame_names=[p.stem for p in frames],
                            mask_paths={0: masks[0]}, gt_paths=masks))
    return videos


def cho_val_validator(videos: List[Video], device: torch.device) -> Validate:
    """J&F as the official trainer computes it: per object present in frames 1..T-2, mean J and mean F over
    those frames; the score is (mean of all objects' J + mean of all objects' F) / 2."""
    from common.metrics import mean_recall_decay, object_scores

    def validate(model: nn.Module) -> float:
        j_means, f_means = [], []
        for video in videos:
            labels = segment_video(model, video, device, resize=False)
            pred = np.stack([labels[i] for i in range(len(video))])[1:-1]
            gt = video.load_gt()[1:-1]
            ids = [k for k in np.unique(gt).tolist() if k != 0]
            j, f = object_scores(gt, pred, ids)
            for col in range(len(ids)):
                j_means.append(mean_recall_decay(j[:, col])[0])
                f_means.append(mean_recall_decay(f[:, col])[0])
        return float((np.mean(j_means) + np.mean(f_means)) / 2)

    return validate


# ----------------------------------------------------------------------------------------------
# Stages
# ----------------------------------------------------------------------------------------------

def train(model: nn.Module, stages: Sequence[str], roots: Dict[str, Optional[Path]], out_dir: Path,
          device: torch.device, overrides: Overrides = Overrides(), num_workers: int = 4, resume: bool = False,
          bn_train: bool = False, swap_attach_probability: Optional[float] = None,
          ytvos_train_list: Optional[Path] = None, ytvos_val_list: Optional[Path] = None,
          forward_clip: Callable = tbd_forward_clip) -> List[Path]:
    """Run the stages in order on `model`; returns each stage's final resume checkpoint path.

    `roots`: 'coco', 'davis', 'ytvos' dataset roots. COCO and DAVIS stages validate on DAVIS 2017 val
    (when a DAVIS root is given); the YouTube-VOS stage on the cho_val list when there is one.
    """
    for stage in stages:
        if stage not in OFFICIAL:
            raise UserError(f"unknown training stage {stage!r}; choose from {', '.join(STAGES)}")
        if roots.get(stage) is None:
            raise UserError(f"stage {stage!r} needs its dataset root: pass --{stage} PATH")

    def davis_validation() -> Optional[Validate]:
        if roots.get("davis") is None:
            print("notice: no DAVIS root (--davis); training without validation or best checkpoints")
            return None
        # The trainer validates at the native size (the 480p rule belongs to the evaluator only).
        return davis_validator(roots["davis"], lambda m, video: segment_video(m, video, device, resize=False))

    finished = []
    davis_val: Optional[Validate] = None
    for index, stage in enumerate(stages):
        plan = stage_plan(stage, overrides)
        validate: Optional[Validate]
        if stage in ("coco", "davis"):
            davis_val = davis_val or davis_validation()
            validate = davis_val
            data = (COCOClips(roots["coco"], plan.recipe, plan.clips_per_epoch) if stage == "coco"
                    else davis_train_clips(roots["davis"], plan.recipe, plan.clips_per_epoch))
        else:
            root = Path(roots["ytvos"])
            train_list = ytvos_split_list(root, ytvos_train_list, "cho_train")
            if train_list is None:
                names = sorted(n for n in os.listdir(root / "train" / "JPEGImages") if not n.startswith("."))
                print(f"notice: no cho_train list ({root / 'ImageSets' / 'cho_train.txt'}); training on every "
                      f"video of {root / 'train'}")
            else:
                names = _read_names(train_list)
            data = VideoClips(ytvos_train_videos(root, names), plan.recipe, plan.clips_per_epoch)
            val_list = ytvos_split_list(root, ytvos_val_list, "cho_val")
            if val_list is None:
                print("notice: no cho_val list; training on YouTube-VOS without validation or best checkpoints")
                validate = None
            else:
                validate = cho_val_validator(cho_val_videos(root, _read_names(val_list)), device)
        config = TrainConfig(save_name=save_name(stages, index), epochs=plan.epochs, batch_size=plan.batch_size,
                             save_step=plan.save_step, val_step=plan.val_step, num_workers=num_workers,
                             shuffle=False, bn_train=bn_train)
        if swap_attach_probability is not None:
            config.swap_attach_probability = swap_attach_probability
        trainer = Trainer(model, forward_clip, data, config, out_dir, device, validate, resume=resume)
        trainer.train()
        finished.append(trainer.resume_path)
    return finished

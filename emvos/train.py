"""EMVOS's part of the shared training pipeline: its clip forward and the official two-stage schedule.

Official recipe (`run.py --train`): COCO pre-training (5-frame clips from static images, batch 16, 8000
epochs of 128 clips, checkpoint every 4000, DAVIS 2017 val every 400), then DAVIS 2017 train (10-frame clips,
batch 8, 4000 epochs, checkpoint every 2000, validation every 200) -- or YouTube-VOS 2018 train (batch 8,
8000 epochs, checkpoint every 2000, no validation). Each stage has its own Adam (lr 1e-4); stage 2 starts
from stage 1's final weights. Seed 19971007, set before the model is built.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from common.training import (EMVOS_COCO, EMVOS_VIDEO, COCOClips, ClipRecipe, TrainConfig, Trainer, davis_train_clips,
                             davis_validator, ytvos_train_clips)
from emvos.inference import segment_video

SEED = 19971007
STAGES = ("coco", "davis", "ytvos")


def emvos_forward_clip(model: nn.Module, imgs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The official trainer's call: `model(imgs, masks[:, :1], None)['scores']` -> `[B, L-1, 2, H, W]`."""
    return model(imgs, masks[:, :1], None)["scores"]


@dataclass(frozen=True)
class Stage:
    dataset: str                # 'coco' | 'davis' | 'ytvos'
    recipe: ClipRecipe
    epochs: int
    batch_size: int
    save_step: int
    val_step: int
    validate_on_davis: bool
    clips_per_epoch: int = 128


OFFICIAL: Dict[str, Stage] = {
    "coco": Stage("coco", EMVOS_COCO, epochs=8000, batch_size=16, save_step=4000, val_step=400, validate_on_davis=True),
    "davis": Stage("davis", EMVOS_VIDEO, epochs=4000, batch_size=8, save_step=2000, val_step=200,
                   validate_on_davis=True),
    "ytvos": Stage("ytvos", EMVOS_VIDEO, epochs=8000, batch_size=8, save_step=2000, val_step=200,
                   validate_on_davis=False),
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
    clip_length = o.coco_clip_length if stage == "coco" else o.video_clip_length
    recipe = s.recipe.scaled(output_size=(o.crop, o.crop) if o.crop else None,
                             short_side=o.short_side if o.short_side else -1,
                             clip_length=clip_length, min_fg_pixels=o.min_fg_pixels)
    pick = lambda new, old: old if new is None else new  # noqa: E731
    return replace(s, recipe=recipe, epochs=pick(o.epochs, s.epochs), batch_size=pick(o.batch_size, s.batch_size),
                   save_step=pick(o.save_step, s.save_step), val_step=pick(o.val_step, s.val_step),
                   clips_per_epoch=pick(o.clips_per_epoch, s.clips_per_epoch))


def save_name(stages: Sequence[str], index: int) -> str:
    """Official names: 'coco', then 'coco_davis' / 'coco_ytvos'; without COCO just 'davis' / 'ytvos'."""
    return "_".join(stages[: index + 1])


def train(model: nn.Module, stages: Sequence[str], roots: Dict[str, Optional[Path]], out_dir: Path,
          device: torch.device, overrides: Overrides = Overrides(), num_workers: int = 4, resume: bool = False,
          bn_train: bool = False, swap_attach_probability: Optional[float] = None) -> List[Path]:
    """Run the stages in order on `model`; returns each stage's final resume checkpoint path."""
    from common.errors import UserError

    for stage in stages:
        if stage not in OFFICIAL:
            raise UserError(f"unknown training stage {stage!r}; choose from {', '.join(STAGES)}")
        if roots.get(stage) is None:
            raise UserError(f"stage {stage!r} needs its dataset root: pass --{stage} PATH")
    needs_val = any(OFFICIAL[s].validate_on_davis for s in stages)
    validate = None
    if needs_val and roots.get("davis_val") is not None:
        validate = davis_validator(roots["davis_val"], lambda m, video: segment_video(m, video, device, resize=False))
    elif needs_val:
        print("notice: no DAVIS root for validation (--davis); training without validation or best checkpoints")

    finished = []
    for index, stage in enumerate(stages):
        plan = stage_plan(stage, overrides)
        if stage == "coco":
            data = COCOClips(roots["coco"], plan.recipe, plan.clips_per_epoch)
        elif stage == "davis":
            data = davis_train_clips(roots["davis"], plan.recipe, plan.clips_per_epoch)
        else:
            data = ytvos_train_clips(roots["ytvos"], plan.recipe, plan.clips_per_epoch)
        config = TrainConfig(save_name=save_name(stages, index), epochs=plan.epochs, batch_size=plan.batch_size,
                             save_step=plan.save_step, val_step=plan.val_step, num_workers=num_workers,
                             bn_train=bn_train)
        if swap_attach_probability is not None:
            config.swap_attach_probability = swap_attach_probability
        trainer = Trainer(model, emvos_forward_clip, data, config, out_dir, device,
                          validate if plan.validate_on_davis else None, resume=resume)
        trainer.train()
        finished.append(trainer.resume_path)
    return finished

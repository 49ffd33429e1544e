"""EMVOS's part of the shared training pipeline: its clip forward and the official two-stage schedule.

Official recipe (`run.py --train`): COCO pre-training (5-frame clips from static images, batch 16, 8000
epochs of 128 clips, checkpoint every 4000, DAVIS 2017 val every 400), then DAVIS 2017 train (10-frame clips,
batch 8, 4000 epochs, checkpoint every 2000, validation every 200) -- or YouTube-VOS 2018 train (batch 8,
8000 epochs, checkpoint every 2000, no validation). Each stage has its own Adam (lr 1e-4); stage 2 starts
from stage 1's final weights. Seed 19971007, set before the model is built.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from common.training import (EMVOS_COCO, EMVOS_VIDEO, COCOClips, Trainer, davis_train_clips, davis_validator,
                             ytvos_train_clips)
from common.training.schedule import Overrides, Stage, check_resume, check_stages, save_name, stage_plan
from emvos.inference import segment_video

SEED = 19971007
OFFICIAL: Dict[str, Stage] = {
    "coco": Stage(EMVOS_COCO, epochs=8000, batch_size=16, save_step=4000, val_step=400),
    "davis": Stage(EMVOS_VIDEO, epochs=4000, batch_size=8, save_step=2000, val_step=200),
    "ytvos": Stage(EMVOS_VIDEO, epochs=8000, batch_size=8, save_step=2000, val_step=200),
}
VALIDATED_ON_DAVIS = ("coco", "davis")  # upstream trains the YouTube-VOS stage without validation


def emvos_forward_clip(model: nn.Module, imgs: torch.Tensor, masks: torch.Tensor,
                       teacher_forcing: bool = False) -> torch.Tensor:
    """The official trainer's call: `model(imgs, masks[:, :1], None)['scores']` -> `[B, L-1, 2, H, W]`.
    `teacher_forcing` (`--teacher-forcing`, not upstream): the state follows the clip's masks, not the prediction."""
    return model(imgs, masks[:, :1], None, state_masks=masks if teacher_forcing else None)["scores"]


def train(model: nn.Module, stages: Sequence[str], roots: Dict[str, Optional[Path]], out_dir: Path,
          device: torch.device, overrides: Overrides = Overrides(), num_workers: int = 4, resume: bool = False,
          bn_train: bool = False, swap_attach_probability: Optional[float] = None) -> List[Path]:
    """Run the stages in order on `model`; returns each stage's final resume checkpoint path."""
    check_stages(stages, OFFICIAL, roots)
    check_resume(out_dir, stages, resume)
    needs_val = any(s in VALIDATED_ON_DAVIS for s in stages)
    validate = None
    if needs_val and roots.get("davis_val") is not None:
        validate = davis_validator(roots["davis_val"], lambda m, video: segment_video(m, video, resize=False))
    elif needs_val:
        print("notice: no DAVIS root for validation (--davis); training without validation or best checkpoints")

    finished = []
    for index, stage in enumerate(stages):
        plan = stage_plan(OFFICIAL, stage, overrides)
        if stage == "coco":
            data = COCOClips(roots["coco"], plan.recipe, plan.clips_per_epoch)
        elif stage == "davis":
            data = davis_train_clips(roots["davis"], plan.recipe, plan.clips_per_epoch)
        else:
            data = ytvos_train_clips(roots["ytvos"], plan.recipe, plan.clips_per_epoch)
        config = overrides.train_config(plan, save_name(stages, index), num_workers=num_workers, bn_train=bn_train,
                                        swap_attach_probability=swap_attach_probability,
                                        extend_time_limit=index == len(stages) - 1)
        trainer = Trainer(model, emvos_forward_clip, data, config, out_dir, device,
                          validate if stage in VALIDATED_ON_DAVIS else None, resume=resume)
        trainer.train()
        finished.append(trainer.resume_path)
    return finished

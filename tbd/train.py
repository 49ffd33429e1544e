"""TBD's part of the shared training pipeline (`common.training`): its clip forward and validation inference.

The official recipe (`run.py --train`, `trainer.py`) lives in `common.training.tbd_recipe`, because BMVOS
trains with it too: COCO pre-training, then DAVIS 2017 train or YouTube-VOS 2018 on the authors' custom split
(`cho_train`, validated on `cho_val`), Adam 1e-4 per stage, swap-and-attach with probability 0.2, the model
kept in eval() mode, DataLoader without shuffling. Upstream does not seed; `--seed` makes runs repeatable.

The trainer hands TBD a distance matrix built for 384x384 crops; `tbd_forward_clip` builds it for the
clip's actual size (identical for 384 crops, and what makes smaller smoke-test crops possible).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from common.training.schedule import Overrides
from common.training.tbd_recipe import train_tbd_recipe
from tbd.inference import segment_video
from tbd.model import distance_matrix


def tbd_forward_clip(model: nn.Module, imgs: torch.Tensor, masks: torch.Tensor,
                     teacher_forcing: bool = False) -> torch.Tensor:
    """The official trainer's call with the clip's distance matrix -> raw logits `[B, L-1, 2, H, W]`.
    `teacher_forcing` (`--teacher-forcing`, not upstream): the state follows the clip's masks, not the prediction."""
    b, length, _, height, width = imgs.shape
    dist = distance_matrix(height, width, imgs.device).unsqueeze(0).repeat(b, 1, 1)
    return model(imgs, [masks[:, 0]] + (length - 1) * [None], dist, None,
                 state_masks=masks if teacher_forcing else None)["scores"]


def train(model: nn.Module, stages: Sequence[str], roots: Dict[str, Optional[Path]], out_dir: Path,
          device: torch.device, overrides: Overrides = Overrides(), num_workers: int = 4, resume: bool = False,
          bn_train: bool = False, swap_attach_probability: Optional[float] = None,
          ytvos_train_list: Optional[Path] = None, ytvos_val_list: Optional[Path] = None,
          forward_clip: Callable = tbd_forward_clip) -> List[Path]:
    """Run the stages in order on `model`; returns each stage's final resume checkpoint path.

    `roots`: 'coco', 'davis', 'ytvos' dataset roots. COCO and DAVIS stages validate on DAVIS 2017 val
    (when a DAVIS root is given); the YouTube-VOS stage on the cho_val list when there is one.
    """
    return train_tbd_recipe(model, forward_clip, lambda m, video: segment_video(m, video, resize=False),
                            stages, roots, out_dir, device, overrides, num_workers=num_workers, resume=resume,
                            bn_train=bn_train, swap_attach_probability=swap_attach_probability,
                            ytvos_train_list=ytvos_train_list, ytvos_val_list=ytvos_val_list)

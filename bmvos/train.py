"""BMVOS training through the shared trainer (`common.training`), with TBD's official recipe.

    python -m bmvos.train --coco data/COCO --davis data/DAVIS [--stages coco,davis] [--output-dir DIR]
    python -m bmvos.train --coco data/COCO --ytvos data/YTVOS18 --stages coco,ytvos \
        [--ytvos-train-list cho_train.txt --ytvos-val-list cho_val.txt]
    python -m bmvos.main_runfile --train ...          (the same)

The official BMVOS README says "please follow the instructions in TBD" for training, so this is TBD's
`run.py --train` (`common.training.tbd_recipe`, shared with `tbd.train`): COCO pre-training (5-frame clips made from
static images, batch 16, 8000 epochs of 128 clips, checkpoint every 4000, DAVIS 2017 val every 400), then
DAVIS 2017 train (10-frame clips, batch 8, 4000 epochs, checkpoint every 1000, validation every 100) or
YouTube-VOS 2018 on the authors' custom split (`cho_train`, validated on `cho_val`). Adam 1e-4,
swap-and-attach with probability 0.2, the model left in eval() mode (BatchNorm running statistics), the
encoder frozen (run without gradient), each stage starting from the previous one's weights. Checkpoints:
`<output-dir>/<stage>_{NNNN,best,last}.pth`; `--resume` continues an interrupted run. Sizes and schedules can
be shrunk for smoke runs (`--epochs`, `--crop`, ...).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence

from common.data.output_folder import check_checkpoint_folder
from common.runtime.device import add_device_argument, pick_device, seed_everything
from common.runtime.errors import run_cli
from common.runtime.training_arguments import (TBD_SCHEDULE_HELP, add_custom_split_arguments, add_schedule_arguments,
                                               add_training_arguments)

if TYPE_CHECKING:  # the model, torch and the trainer load after the arguments are parsed (`--help` answers at once)
    import torch
    import torch.nn as nn

    from bmvos.model import BMVOS

SEED = 19971007  # upstream does not seed; a fixed seed makes runs repeatable


def bmvos_forward_clip(model: nn.Module, imgs: torch.Tensor, masks: torch.Tensor,
                       teacher_forcing: bool = False) -> torch.Tensor:
    """Trainer hook: clips `[B, L, 3, H, W]` + masks `[B, L, 1, H, W]` -> logits `[B, L-1, 2, H, W]`.
    `teacher_forcing` (`--teacher-forcing`, not upstream): the state follows the clip's masks, not the prediction."""
    return model.forward_train(imgs, masks[:, 0], masks if teacher_forcing else None)


def train(model: BMVOS, stages: Sequence[str], args: argparse.Namespace, device: torch.device,
          forward_clip: Callable = bmvos_forward_clip) -> List[Path]:
    """Run `stages` of TBD's recipe in order on `model`; returns each stage's resume checkpoint."""
    from bmvos.inference import segment_video
    from common.training.schedule import Overrides
    from common.training.tbd_recipe import train_tbd_recipe

    # validation runs at the stored size: the 480p rule belongs to the official evaluator only
    return train_tbd_recipe(model, forward_clip, lambda m, video: segment_video(m, video, resize=False), stages,
                            {"coco": args.coco, "davis": args.davis, "ytvos": args.ytvos}, args.output_dir, device,
                            Overrides.from_args(args), num_workers=args.workers, resume=args.resume,
                            bn_train=args.bn_train, swap_attach_probability=0.0 if args.no_swap_attach else None,
                            ytvos_train_list=args.ytvos_train_list, ytvos_val_list=args.ytvos_val_list)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bmvos.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--coco", type=Path, help="COCO root (JPEGImages/*.jpg, Annotations/*.png)")
    p.add_argument("--davis", type=Path, help="DAVIS 2017 root (train clips, and val for validation)")
    p.add_argument("--ytvos", type=Path, help="YouTube-VOS 2018 root holding train/{JPEGImages,Annotations}")
    p.add_argument("--stages", default="coco,davis", help="comma-separated, in order: coco, davis, ytvos "
                                                          "(official: coco,davis or coco,ytvos)")
    add_custom_split_arguments(p)
    add_training_arguments(p, output_dir=Path("trained_model/bmvos"), seed=SEED)
    add_schedule_arguments(p.add_argument_group("schedule and sizes (default: official; shrink them for smoke runs)"),
                           **TBD_SCHEDULE_HELP)
    add_device_argument(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    check_checkpoint_folder(args.output_dir)
    from bmvos.model import BMVOS
    from common.training.schedule import build_training_model, check_resume, parse_stages, start_init
    from common.training.tbd_recipe import TBD_SCHEDULE

    stages = parse_stages(args.stages, TBD_SCHEDULE)
    check_resume(args.output_dir, stages, args.resume)  # before any ImageNet download
    device = pick_device(args.device)
    seed_everything(args.seed)  # before the model is built, so the decoder's initialisation repeats
    model = build_training_model(BMVOS, start_init(args.init, args.output_dir, stages, args.resume))
    for path in train(model, stages, args, device):
        print(f"stage checkpoint: {path}")
    return 0


if __name__ == "__main__":
    run_cli(main)

"""BMVOS training through the shared trainer (`common.training`), with TBD's official recipe.

    python -m bmvos.train --coco data/COCO --davis data/DAVIS [--stages coco,davis] [--output-dir DIR]
    python -m bmvos.train --coco data/COCO --ytvos data/YTVOS18 --stages coco,ytvos \
        [--ytvos-train-list cho_train.txt --ytvos-val-list cho_val.txt]
    python -m bmvos.main_runfile --train ...          (the same)

The official BMVOS README says "please follow the instructions in TBD" for training, so this is TBD's
`run.py --train`: COCO pre-training (5-frame clips made from static images, batch 16, 8000 epochs of 128
clips, checkpoint every 4000, DAVIS 2017 val every 400), then DAVIS 2017 train (10-frame clips, batch 8,
4000 epochs, checkpoint every 1000, validation every 100) or YouTube-VOS 2018 on the authors' custom split
(`cho_train`, validated on `cho_val`). Adam 1e-4, swap-and-attach with probability 0.2, the model left in
eval() mode (BatchNorm running statistics), the encoder frozen (run without gradient), each stage starting
from the previous one's weights. Checkpoints: `<output-dir>/<stage>_{NNNN,best,last}.pth`; `--resume`
continues an interrupted run. Sizes and schedules can be shrunk for smoke runs (`--epochs`, `--crop`, ...).
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from bmvos.inference import segment_video
from bmvos.model import BMVOS
from common.datasets import Video
from common.device import add_device_argument, pick_device, seed_everything
from common.errors import UserError, run_cli
from common.training import (TBD_COCO, TBD_DAVIS, TBD_YTVOS, ClipRecipe, COCOClips, TrainConfig, Trainer, Validate,
                             VideoClips, davis_train_clips, davis_validator)

SEED = 19971007  # upstream does not seed; a fixed seed makes runs repeatable


def bmvos_forward_clip(model: nn.Module, imgs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Trainer hook: clips `[B, L, 3, H, W]` + masks `[B, L, 1, H, W]` -> logits `[B, L-1, 2, H, W]`."""
    return model.forward_train(imgs, masks[:, 0])


@dataclass(frozen=True)
class Stage:
    recipe: ClipRecipe
    epochs: int
    batch_size: int
    save_step: int
    val_step: int
    clips_per_epoch: int = 128


OFFICIAL: Dict[str, Stage] = {  # TBD's run.py
    "coco": Stage(TBD_COCO, epochs=8000, batch_size=16, save_step=4000, val_step=400),
    "davis": Stage(TBD_DAVIS, epochs=4000, batch_size=8, save_step=1000, val_step=100),
    "ytvos": Stage(TBD_YTVOS, epochs=4000, batch_size=8, save_step=1000, val_step=100),
}


def stage_plan(name: str, args: argparse.Namespace) -> Stage:
    """The official stage with the command line's smoke-run overrides (None keeps the official value)."""
    stage = OFFICIAL[name]
    clip_length = args.coco_clip_length if name == "coco" else args.video_clip_length
    recipe = stage.recipe.scaled(output_size=(args.crop, args.crop) if args.crop else None,
                                 short_side=args.short_side if args.short_side else -1,
                                 clip_length=clip_length, min_fg_pixels=args.min_fg_pixels)
    keep = lambda new, old: old if new is None else new  # noqa: E731
    return replace(stage, recipe=recipe, epochs=keep(args.epochs, stage.epochs),
                   batch_size=keep(args.batch_size, stage.batch_size), save_step=keep(args.save_step, stage.save_step),
                   val_step=keep(args.val_step, stage.val_step),
                   clips_per_epoch=keep(args.clips_per_epoch, stage.clips_per_epoch))


# ----------------------------------------------------------------------------------------------
# YouTube-VOS custom split: cho_train / cho_val, both inside the official train set
# ----------------------------------------------------------------------------------------------

def _names(path: Path) -> List[str]:
    if not path.is_file():
        raise UserError(f"video list not found: {path}; get the authors' custom split (linked from the BMVOS/TBD "
                        f"READMEs) or pass the file with --ytvos-train-list / --ytvos-val-list")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise UserError(f"video list {path} is empty; it should name one video per line")
    return names


def _files(folder: Path, suffix: str) -> List[Path]:
    if not folder.is_dir():
        raise UserError(f"YouTube-VOS training folder not found: {folder}; pass the root holding "
                        f"train/JPEGImages and train/Annotations")
    return sorted(folder / n for n in os.listdir(folder) if n.endswith(suffix) and not n.startswith("."))


def ytvos_lists(root: Path, train_list: Optional[Path], val_list: Optional[Path]):
    """(training video names, validation video names or None) of the custom split, with fallbacks."""
    train_list = train_list or root / "ImageSets" / "cho_train.txt"
    val_list = val_list or root / "ImageSets" / "cho_val.txt"
    if train_list.is_file():
        train_names = _names(train_list)
    else:
        print(f"notice: no cho_train list at {train_list}; training on every video of {root / 'train'}")
        train_names = sorted(p.name for p in _files(root / "train" / "JPEGImages", ""))
    if not val_list.is_file():
        print("notice: no cho_val list; training on YouTube-VOS without validation or best checkpoints")
        return train_names, None
    return train_names, _names(val_list)


def cho_val_videos(root: Path, names: Sequence[str]) -> List[Video]:
    """Videos as the official cho_val tester reads them: from the first annotated frame on, that frame's
    mask given, every frame's annotation as ground truth."""
    base, videos = root / "train", []
    for name in names:
        annotated = {p.stem: p for p in _files(base / "Annotations" / name, ".png")}
        if not annotated:
            raise UserError(f"YouTube-VOS video {name} has no annotation in {base / 'Annotations' / name}")
        first = min(annotated, key=int)
        frames = [p for p in _files(base / "JPEGImages" / name, ".jpg") if int(p.stem) >= int(first)]
        missing = [p.stem for p in frames if p.stem not in annotated]
        if missing:
            raise UserError(f"cho_val video {name} lacks annotations for frames {missing[:3]}; the custom split "
                            f"comes from the official train set, where every frame is annotated")
        gt = [annotated[p.stem] for p in frames]
        videos.append(Video(name=name, frame_paths=frames, frame_names=[p.stem for p in frames],
                            mask_paths={0: gt[0]}, gt_paths=gt))
    return videos


def cho_val_validator(videos: List[Video]) -> Validate:
    """The official trainer's score: per object of frames 1..T-2 mean J and mean F; (mean J + mean F) / 2."""
    from common.metrics import mean_recall_decay, object_scores

    def validate(model: nn.Module) -> float:
        j_means, f_means = [], []
        for video in videos:
            labels = segment_video(model, video, short_side=None)
            pred = np.stack([labels[i] for i in range(len(video))])[1:-1]
            gt = video.load_gt()[1:-1]
            ids = [k for k in np.unique(gt).tolist() if k not in (0, 255)]
            j, f = object_scores(gt, pred, ids)
            j_means += [mean_recall_decay(j[:, c])[0] for c in range(len(ids))]
            f_means += [mean_recall_decay(f[:, c])[0] for c in range(len(ids))]
        return float((np.mean(j_means) + np.mean(f_means)) / 2)

    return validate


# ----------------------------------------------------------------------------------------------
# Stages
# ----------------------------------------------------------------------------------------------

def build_training_model(init: str) -> BMVOS:
    """'imagenet' (official: torchvision's ImageNet DenseNet-121), 'scratch', or a checkpoint to start from."""
    if init == "imagenet":
        try:
            model = BMVOS(imagenet_pretrained=True)
        except Exception as err:  # torchvision's download: offline and not cached
            raise UserError(f"could not load torchvision's ImageNet DenseNet-121 weights ({err}); put "
                            f"densenet121-a639ec97.pth into $TORCH_HOME/hub/checkpoints or pass --init scratch") from err
    else:
        model = BMVOS()
        if init != "scratch":
            from common.weights import load_into
            load_into(model, init)
    return model.eval()  # the official trainer never calls train(): BatchNorm keeps its running statistics


def train(model: BMVOS, stages: Sequence[str], args: argparse.Namespace, device: torch.device,
          forward_clip: Callable = bmvos_forward_clip) -> List[Path]:
    """Run `stages` in order on `model`; returns each stage's resume checkpoint."""
    roots: Dict[str, Optional[Path]] = {"coco": args.coco, "davis": args.davis, "ytvos": args.ytvos}
    for stage in stages:
        if stage not in OFFICIAL:
            raise UserError(f"unknown training stage {stage!r}; choose from {', '.join(OFFICIAL)}")
        if roots[stage] is None:
            raise UserError(f"stage {stage!r} needs its dataset root: pass --{stage} PATH")

    davis_val: Optional[Validate] = None
    if args.davis is not None and any(s in ("coco", "davis") for s in stages):
        # validation runs at the stored size: the 480p rule belongs to the official evaluator only
        davis_val = davis_validator(args.davis, lambda m, video: segment_video(m, video, short_side=None))
    elif any(s in ("coco", "davis") for s in stages):
        print("notice: no DAVIS root (--davis); training without validation or best checkpoints")

    finished = []
    for index, stage in enumerate(stages):
        plan = stage_plan(stage, args)
        validate = davis_val
        if stage == "coco":
            data = COCOClips(args.coco, plan.recipe, plan.clips_per_epoch)
        elif stage == "davis":
            data = davis_train_clips(args.davis, plan.recipe, plan.clips_per_epoch)
        else:
            root = Path(args.ytvos)
            train_names, val_names = ytvos_lists(root, args.ytvos_train_list, args.ytvos_val_list)
            videos = [(n, _files(root / "train" / "JPEGImages" / n, ".jpg"),
                       _files(root / "train" / "Annotations" / n, ".png")) for n in train_names]
            data = VideoClips(videos, plan.recipe, plan.clips_per_epoch)
            validate = None if val_names is None else cho_val_validator(cho_val_videos(root, val_names))
        config = TrainConfig(save_name="_".join(stages[: index + 1]), epochs=plan.epochs,
                             batch_size=plan.batch_size, save_step=plan.save_step, val_step=plan.val_step,
                             num_workers=args.workers, shuffle=False, bn_train=args.bn_train)
        if args.no_swap_attach:
            config.swap_attach_probability = 0.0
        trainer = Trainer(model, forward_clip, data, config, args.output_dir, device, validate, resume=args.resume)
        trainer.train()
        finished.append(trainer.resume_path)
    return finished


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bmvos.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--coco", type=Path, help="COCO root (JPEGImages/*.jpg, Annotations/*.png)")
    p.add_argument("--davis", type=Path, help="DAVIS 2017 root (train clips, and val for validation)")
    p.add_argument("--ytvos", type=Path, help="YouTube-VOS 2018 root holding train/{JPEGImages,Annotations}")
    p.add_argument("--stages", default="coco,davis", help="comma-separated, in order: coco, davis, ytvos "
                                                          "(official: coco,davis or coco,ytvos)")
    p.add_argument("--ytvos-train-list", type=Path, help="cho_train.txt (default: <ytvos>/ImageSets/cho_train.txt)")
    p.add_argument("--ytvos-val-list", type=Path, help="cho_val.txt (default: <ytvos>/ImageSets/cho_val.txt)")
    p.add_argument("--output-dir", type=Path, default=Path("trained_model/bmvos"), help="checkpoint folder")
    p.add_argument("--resume", action="store_true", help="continue from <output-dir>/<stage>_last.pth")
    p.add_argument("--seed", type=int, default=SEED, help="seed set before the model is built")
    p.add_argument("--init", default="imagenet",
                   help="imagenet (official), scratch, or a checkpoint path / registry name to start from")
    p.add_argument("--bn-train", action="store_true", help="BatchNorm in train() mode (official: eval())")
    p.add_argument("--no-swap-attach", action="store_true", help="disable swap-and-attach (official: p=0.2)")
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers (official 4)")
    small = p.add_argument_group("schedule and sizes (default: official; shrink them for smoke runs)")
    for name in ("epochs", "batch-size", "save-step", "val-step", "clips-per-epoch", "crop", "short-side",
                 "coco-clip-length", "video-clip-length", "min-fg-pixels"):
        small.add_argument(f"--{name}", type=int, default=None)
    add_device_argument(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in OFFICIAL]
    if unknown or not stages:
        raise UserError(f"unknown training stage {unknown[0] if unknown else args.stages!r}; "
                        f"choose from {', '.join(OFFICIAL)} (comma-separated, in order)")
    device = pick_device(args.device)
    seed_everything(args.seed)  # before the model is built, so the decoder's initialisation repeats
    model = build_training_model(args.init)
    for path in train(model, stages, args, device):
        print(f"stage checkpoint: {path}")
    return 0


if __name__ == "__main__":
    run_cli(main)

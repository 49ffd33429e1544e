"""TBD's official training recipe, which BMVOS trains with too (its README: "follow the instructions in TBD").

`run.py --train` / `trainer.py` upstream: COCO pre-training (5-frame clips from static images, TBD's
affine/crop recipe, batch 16, 8000 epochs of 128 clips, checkpoint every 4000, DAVIS 2017 val every 400),
then DAVIS 2017 train (10-frame clips, batch 8, 4000 epochs, checkpoint every 1000, validation every 100)
-- or YouTube-VOS 2018 on the authors' custom split (`cho_train` for training, validation on `cho_val`, both
drawn from the official train set; same schedule as DAVIS). Adam 1e-4 per stage, swap-and-attach with
probability 0.2, the model kept in eval() mode, DataLoader without shuffling, each stage starting from the
previous one's weights.

    train_tbd_recipe(model, forward_clip, segment, ["coco", "davis"], {"coco": ..., "davis": ...}, out_dir, device)
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from common.data.datasets import Video, read_list
from common.runtime import training_arguments as _arguments
from common.runtime.errors import UserError
from common.training.augment import TBD_COCO, TBD_DAVIS, TBD_YTVOS
from common.training.clips import COCOClips, VideoClips, davis_train_clips
from common.training.schedule import Overrides, Stage, check_resume, check_stages, save_name, stage_plan
from common.training.trainer import ForwardClip, Trainer, Validate
from common.training.validation import Segment, davis_validator

TBD_SCHEDULE: Dict[str, Stage] = {
    "coco": Stage(TBD_COCO, epochs=8000, batch_size=16, save_step=4000, val_step=400),
    "davis": Stage(TBD_DAVIS, epochs=4000, batch_size=8, save_step=1000, val_step=100),
    "ytvos": Stage(TBD_YTVOS, epochs=4000, batch_size=8, save_step=1000, val_step=100),
}
# the command-line flags live in the torch-free common.runtime.training_arguments; their names stay importable here
TBD_SCHEDULE_HELP, add_custom_split_arguments = _arguments.TBD_SCHEDULE_HELP, _arguments.add_custom_split_arguments


# --- YouTube-VOS custom split (cho_train / cho_val, both inside the official train set) ------------------------------

def read_video_list(path: Path) -> List[str]:
    return read_list(path, "download the authors' custom split (cho_train.txt, cho_val.txt, linked from the TBD "
                            "and BMVOS READMEs) or pass the file with --ytvos-train-list / --ytvos-val-list", "video")


def _sorted_files(folder: Path, suffix: str) -> List[Path]:
    if not folder.is_dir():
        raise UserError(f"YouTube-VOS training folder not found: {folder}; pass the root holding train/JPEGImages "
                        f"and train/Annotations")
    return sorted(p for p in folder.iterdir() if p.name.endswith(suffix) and not p.name.startswith("."))


def ytvos_split_list(root: Path, explicit: Optional[Path], name: str) -> Optional[Path]:
    """The list file to use: the explicit one, else `<root>/ImageSets/<name>.txt` when it exists."""
    if explicit is not None:
        return explicit
    default = root / "ImageSets" / f"{name}.txt"
    return default if default.is_file() else None


def cho_train_names(root: Path, explicit: Optional[Path]) -> List[str]:
    """The training videos: the cho_train list, else (no list at all) every video of `<root>/train`."""
    train_list = ytvos_split_list(root, explicit, "cho_train")
    if train_list is not None:
        return read_video_list(train_list)
    print(f"notice: no cho_train list ({root / 'ImageSets' / 'cho_train.txt'}); training on every video of "
          f"{root / 'train'}")
    return [p.name for p in _sorted_files(root / "train" / "JPEGImages", "")]


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
        annotated = {p.stem: p for p in _sorted_files(base / "Annotations" / name, ".png")}
        if not annotated:
            raise UserError(f"YouTube-VOS video {name} has no annotation in {base / 'Annotations' / name}")
        first = min(annotated, key=int)
        frames = [p for p in _sorted_files(base / "JPEGImages" / name, ".jpg") if int(p.stem) >= int(first)]
        missing = [p.stem for p in frames if p.stem not in annotated]
        if missing:
            raise UserError(f"cho_val video {name} lacks annotations for frames {missing[:3]}; the custom split "
                            f"needs the official train set, where every frame is annotated")
        gt = [annotated[p.stem] for p in frames]
        videos.append(Video(name=name, frame_paths=frames, frame_names=[p.stem for p in frames],
                            mask_paths={0: gt[0]}, gt_paths=gt))
    return videos


def cho_val_validator(videos: List[Video], segment: Segment) -> Validate:
    """J&F as the official trainer computes it: per object present in frames 1..T-2, mean J and mean F over
    those frames; the score is (mean of all objects' J + mean of all objects' F) / 2."""
    from common.evaluation.metrics import mean_recall_decay, object_scores

    def validate(model: nn.Module) -> float:
        j_means, f_means = [], []
        for video in videos:
            labels = segment(model, video)
            pred = np.stack([labels[i] for i in range(len(video))])[1:-1]
            gt = video.load_gt()[1:-1]
            ids = [k for k in np.unique(gt).tolist() if k not in (0, 255)]  # 255: void, never an object
            j, f = object_scores(gt, pred, ids)
            j_means += [mean_recall_decay(j[:, col])[0] for col in range(len(ids))]
            f_means += [mean_recall_decay(f[:, col])[0] for col in range(len(ids))]
        return float((np.mean(j_means) + np.mean(f_means)) / 2)

    return validate


# --- the stages ------------------------------------------------------------------------------------------------------

def train_tbd_recipe(model: nn.Module, forward_clip: ForwardClip, segment: Segment, stages: Sequence[str],
                     roots: Mapping[str, Optional[Path]], out_dir: Path, device: torch.device,
                     overrides: Overrides = Overrides(), *, num_workers: int = 4, resume: bool = False,
                     bn_train: bool = False, swap_attach_probability: Optional[float] = None,
                     ytvos_train_list: Optional[Path] = None, ytvos_val_list: Optional[Path] = None) -> List[Path]:
    """Run `stages` of TBD's schedule in order on `model`; returns each stage's final resume checkpoint path.

    `roots`: 'coco', 'davis', 'ytvos' dataset roots. `segment(model, video)` is the paper's inference for
    validation, at the stored size (the 480p rule belongs to the evaluator only). COCO and DAVIS stages
    validate on DAVIS 2017 val (when a DAVIS root is given); the YouTube-VOS stage on the cho_val list when
    there is one.
    """
    check_stages(stages, TBD_SCHEDULE, roots)
    check_resume(out_dir, stages, resume)
    davis_stages = [s for s in stages if s in ("coco", "davis")]
    davis_val: Optional[Validate] = None
    if davis_stages and roots.get("davis") is not None:
        davis_val = davis_validator(roots["davis"], segment)
    elif davis_stages:
        print("notice: no DAVIS root (--davis); training without validation or best checkpoints")

    finished = []
    for index, stage in enumerate(stages):
        plan = stage_plan(TBD_SCHEDULE, stage, overrides)
        validate = davis_val
        if stage == "coco":
            data = COCOClips(roots["coco"], plan.recipe, plan.clips_per_epoch)
        elif stage == "davis":
            data = davis_train_clips(roots["davis"], plan.recipe, plan.clips_per_epoch)
        else:
            root = Path(roots["ytvos"])
            data = VideoClips(ytvos_train_videos(root, cho_train_names(root, ytvos_train_list)), plan.recipe,
                              plan.clips_per_epoch)
            val_list = ytvos_split_list(root, ytvos_val_list, "cho_val")
            if val_list is None:
                print("notice: no cho_val list; training on YouTube-VOS without validation or best checkpoints")
                validate = None
            else:
                validate = cho_val_validator(cho_val_videos(root, read_video_list(val_list)), segment)
        config = overrides.train_config(plan, save_name(stages, index), num_workers=num_workers, bn_train=bn_train,
                                        shuffle=False, swap_attach_probability=swap_attach_probability,
                                        extend_time_limit=index == len(stages) - 1)
        trainer = Trainer(model, forward_clip, data, config, out_dir, device, validate, resume=resume)
        trainer.train()
        finished.append(trainer.resume_path)
    return finished

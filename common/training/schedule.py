"""Official training schedules and the command line that shrinks them (BMVOS, EMVOS and TBD alike).

Each paper names its stages ('coco', then 'davis' or 'ytvos') with a `Stage` per name; `Overrides` are the
`--epochs`, `--crop`, ... flags (None keeps the official value), and `stage_plan` applies them to one
stage. `add_training_arguments` / `add_schedule_arguments` add the flags the three training command lines
share; `build_training_model` builds the model a run starts from (`--init`).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Callable, Collection, List, Mapping, Optional, Sequence, TypeVar

import torch.nn as nn

from common.runtime import training_arguments as _arguments
from common.runtime.errors import UserError
from common.training.augment import ClipRecipe
from common.training.trainer import TrainConfig

M = TypeVar("M", bound=nn.Module)


@dataclass(frozen=True)
class Stage:
    """One official training stage: its clip recipe and schedule (epochs as upstream counts them)."""
    recipe: ClipRecipe
    epochs: int
    batch_size: int
    save_step: int
    val_step: int
    clips_per_epoch: int = 128

    def train_config(self, save_name: str, *, num_workers: int, bn_train: bool, shuffle: bool = True,
                     swap_attach_probability: Optional[float] = None, lr: Optional[float] = None,
                     train_encoder: bool = False, deep_supervision: bool = False, matching_supervision: bool = False,
                     teacher_forcing: bool = False, cosine_lr: bool = False,
                     time_limit_minutes: Optional[float] = None, extend_time_limit: bool = False) -> TrainConfig:
        """The `Trainer` configuration of this stage (`swap_attach_probability=None` keeps the official 0.2,
        `lr=None` the official 1e-4; `train_encoder`, `deep_supervision`, `matching_supervision`, `teacher_forcing`,
        `cosine_lr` and a time limit are not in the official recipe; `extend_time_limit` for a command's last stage,
        which a resume with a larger time limit continues once it has stopped at its limit)."""
        config = TrainConfig(save_name=save_name, epochs=self.epochs, batch_size=self.batch_size,
                             save_step=self.save_step, val_step=self.val_step, num_workers=num_workers,
                             shuffle=shuffle, bn_train=bn_train, train_encoder=train_encoder,
                             deep_supervision=deep_supervision, matching_supervision=matching_supervision,
                             teacher_forcing=teacher_forcing, cosine_lr=cosine_lr,
                             time_limit_s=60.0 * time_limit_minutes if time_limit_minutes else 0.0,
                             extend_time_limit=extend_time_limit)
        if swap_attach_probability is not None:
            config.swap_attach_probability = swap_attach_probability
        if lr is not None:
            config.lr = lr
        return config


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
    # scratch-training switches (`add_training_arguments`); off / None = the official recipe
    lr: Optional[float] = None
    train_encoder: bool = False
    deep_supervision: bool = False
    matching_supervision: bool = False
    teacher_forcing: bool = False
    cosine_lr: bool = False
    time_limit: Optional[float] = None  # --time-limit: minutes per stage

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Overrides":
        """The values of the flags `add_schedule_arguments` (and `add_training_arguments`) add."""
        return cls(**{f.name: getattr(args, f.name, f.default) for f in fields(cls)})

    def train_config(self, plan: Stage, save_name: str, *, num_workers: int, bn_train: bool, shuffle: bool = True,
                     swap_attach_probability: Optional[float] = None, extend_time_limit: bool = False) -> TrainConfig:
        """`plan.train_config(...)` with these overrides' learning rate and scratch-training switches."""
        return plan.train_config(save_name, num_workers=num_workers, bn_train=bn_train, shuffle=shuffle,
                                 swap_attach_probability=swap_attach_probability, lr=self.lr,
                                 train_encoder=self.train_encoder, deep_supervision=self.deep_supervision,
                                 matching_supervision=self.matching_supervision, teacher_forcing=self.teacher_forcing,
                                 cosine_lr=self.cosine_lr,
                                 time_limit_minutes=self.time_limit, extend_time_limit=extend_time_limit)


def stage_plan(official: Mapping[str, Stage], name: str, o: Overrides) -> Stage:
    """Stage `name` of the `official` schedule with the overrides applied."""
    s = official[name]
    recipe = s.recipe.scaled(output_size=(o.crop, o.crop) if o.crop else None,
                             short_side=o.short_side if o.short_side else -1,
                             clip_length=o.coco_clip_length if name == "coco" else o.video_clip_length,
                             min_fg_pixels=o.min_fg_pixels)

    def pick(new: Optional[int], old: int) -> int:
        return old if new is None else new

    return replace(s, recipe=recipe, epochs=pick(o.epochs, s.epochs), batch_size=pick(o.batch_size, s.batch_size),
                   save_step=pick(o.save_step, s.save_step), val_step=pick(o.val_step, s.val_step),
                   clips_per_epoch=pick(o.clips_per_epoch, s.clips_per_epoch))


def save_name(stages: Sequence[str], index: int) -> str:
    """Official names: 'coco', then 'coco_davis' / 'coco_ytvos'; without COCO just 'davis' / 'ytvos'."""
    return "_".join(stages[: index + 1])


def parse_stages(text: str, known: Collection[str]) -> List[str]:
    """`--stages coco,davis` -> ['coco', 'davis'], refusing unknown names and an empty list."""
    stages = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in stages if s not in known]
    if unknown or not stages:
        raise UserError(f"unknown training stage {unknown[0] if unknown else text!r}; "
                        f"choose from {', '.join(known)} (comma-separated, in order)")
    return stages


def check_resume(out_dir: Path, stages: Sequence[str], resume: bool) -> None:
    """`--resume` needs the first stage's resume checkpoint (later stages may legitimately not have started)."""
    first = _arguments.resume_checkpoint(out_dir, save_name(stages, 0))
    if resume and not first.is_file():
        raise UserError(f"--resume: nothing to resume in {out_dir} (no {first.name}); drop --resume to start a "
                        f"new run there, or pass the --output-dir of the run to continue")


def start_init(init: str, out_dir: Path, stages: Sequence[str], resume: bool) -> str:
    """The `--init` to build the model from: 'scratch' for a resumed run started from 'imagenet', whose weights all
    come back from its checkpoint (no ImageNet download)."""
    if init == "imagenet" and resume and _arguments.resume_checkpoint(out_dir, save_name(stages, 0)).exists():
        return "scratch"
    return init


def check_stages(stages: Sequence[str], known: Collection[str], roots: Mapping[str, Optional[Path]]) -> None:
    """Every stage is known and has its dataset root (before anything is loaded)."""
    for stage in stages:
        if stage not in known:
            raise UserError(f"unknown training stage {stage!r}; choose from {', '.join(known)}")
        if roots.get(stage) is None:
            raise UserError(f"stage {stage!r} needs its dataset root: pass --{stage} PATH")


# --- command line: the flags live in the torch-free common.runtime.training_arguments (a parser is built before torch
# loads); their names stay importable from here
SCHEDULE_MINIMUM, SCHEDULE_HELP = _arguments.SCHEDULE_MINIMUM, _arguments.SCHEDULE_HELP
add_training_arguments, add_schedule_arguments = _arguments.add_training_arguments, _arguments.add_schedule_arguments


def build_training_model(make: Callable[..., M], init: str) -> M:
    """`make()` started as `--init` says: 'imagenet' (official: torchvision's ImageNet DenseNet-121 encoder,
    `make(imagenet_pretrained=True)`), 'scratch', or a checkpoint path / registry name."""
    if init == "imagenet":
        try:
            model = make(imagenet_pretrained=True)
        except Exception as err:  # torchvision download: no network, no cache
            raise UserError(f"could not load torchvision's ImageNet DenseNet-121 weights ({err}); put "
                            f"densenet121-a639ec97.pth into $TORCH_HOME/hub/checkpoints or pass --init scratch"
                            ) from err
    else:
        model = make()
        if init != "scratch":
            from common.hub.checkpoints import load_into
            load_into(model, init)
    return model.eval()  # the official trainer never calls train(): BatchNorm keeps its running statistics

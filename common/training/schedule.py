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
from typing import Callable, Collection, Dict, List, Mapping, Optional, Sequence, TypeVar

import torch.nn as nn

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
                     swap_attach_probability: Optional[float] = None) -> TrainConfig:
        """The `Trainer` configuration of this stage (`swap_attach_probability=None` keeps the official 0.2)."""
        config = TrainConfig(save_name=save_name, epochs=self.epochs, batch_size=self.batch_size,
                             save_step=self.save_step, val_step=self.val_step, num_workers=num_workers,
                             shuffle=shuffle, bn_train=bn_train)
        if swap_attach_probability is not None:
            config.swap_attach_probability = swap_attach_probability
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

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Overrides":
        """The values of the flags `add_schedule_arguments` adds."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


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


def check_stages(stages: Sequence[str], known: Collection[str], roots: Mapping[str, Optional[Path]]) -> None:
    """Every stage is known and has its dataset root (before anything is loaded)."""
    for stage in stages:
        if stage not in known:
            raise UserError(f"unknown training stage {stage!r}; choose from {', '.join(known)}")
        if roots.get(stage) is None:
            raise UserError(f"stage {stage!r} needs its dataset root: pass --{stage} PATH")


# --- command line ---------------------------------------------------------------------------------------------------

# help of each schedule flag (keyed by the Overrides field); papers replace those whose numbers are their own
SCHEDULE_HELP: Dict[str, str] = {
    "epochs": "epochs per stage",
    "batch_size": "clips per batch (official 16 COCO, 8 video)",
    "save_step": "numbered checkpoint every N epochs",
    "val_step": "validation every N epochs",
    "clips_per_epoch": "random clips per epoch (official 128)",
    "crop": "square crop size (official 384)",
    "short_side": "resize the short side before cropping (official 480)",
    "coco_clip_length": "frames per COCO clip (official 5)",
    "video_clip_length": "frames per video clip (official 10)",
    "min_fg_pixels": "balanced crop: object pixels to keep (official 256)",
}


def add_training_arguments(group, *, output_dir: Path, seed: int,
                           seed_help: str = "seed set before the model is built") -> None:
    """--output-dir, --resume, --seed, --init, --bn-train, --no-swap-attach, --workers on `group` (a parser
    or an argument group)."""
    group.add_argument("--output-dir", type=Path, default=output_dir, help="checkpoint folder")
    group.add_argument("--resume", action="store_true", help="continue from <output-dir>/<stage>_last.pth")
    group.add_argument("--seed", type=int, default=seed, help=seed_help)
    group.add_argument("--init", default="imagenet",
                       help="encoder start: 'imagenet' (official; torchvision's DenseNet-121 weights), 'scratch', "
                            "or a checkpoint path to start from")
    group.add_argument("--bn-train", action="store_true",
                       help="train with BatchNorm in train mode (the official trainer keeps the model in eval mode)")
    group.add_argument("--no-swap-attach", action="store_true", help="disable swap-and-attach (official: p=0.2)")
    group.add_argument("--workers", type=int, default=4, help="DataLoader workers (official 4)")


def add_schedule_arguments(group, **paper_help: str) -> None:
    """The integer flags of `Overrides` (--epochs, --batch-size, ..., --min-fg-pixels; unset = official).
    `paper_help` (keyed like `SCHEDULE_HELP`) gives the help of flags whose official numbers are the paper's."""
    unknown = sorted(set(paper_help) - set(SCHEDULE_HELP))
    if unknown:
        raise TypeError(f"no schedule flag for {unknown}; known: {', '.join(SCHEDULE_HELP)}")
    for name, help_ in {**SCHEDULE_HELP, **paper_help}.items():
        group.add_argument(f"--{name.replace('_', '-')}", type=int, help=help_)


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

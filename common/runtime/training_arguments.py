"""The flags the three training command lines share (BMVOS, EMVOS and TBD), importable without torch.

They live here rather than in `common.training` (whose package import loads torch and the trainer) because a
command line builds its parser before it knows whether it will train: `--help` and a mistyped flag must answer
at once. `common.training.schedule` and `common.training.tbd_recipe` re-export these names. `resume_checkpoint`
names the file `--resume` continues from, for the trainer that writes it and the checks that look for it before
torch loads (`vos.train_sample`).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Dict

AUTHORS_SEED = 19971007  # the seed of the authors' trainers (EMVOS's official one; BMVOS and TBD do not seed)


def resume_checkpoint(out_dir: Path, save_name: str) -> Path:
    """The file `--resume` continues a stage from, `<output-dir>/<save_name>_last.pth` (the trainer writes it; the
    command lines and the sample training look for it before torch loads)."""
    return Path(out_dir) / f"{save_name}_last.pth"


def at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: an integer >= `minimum` (so `--batch-size 0` is refused before anything runs)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


# smallest value of each schedule flag: a clip needs frame 0 plus one frame to predict
SCHEDULE_MINIMUM: Dict[str, int] = {"coco_clip_length": 2, "video_clip_length": 2, "min_fg_pixels": 0}

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
                           seed_help: str = "seed set before the model is built", **paper_help: str) -> None:
    """--output-dir, --resume, --seed, --init, --bn-train, --no-swap-attach, --workers, --time-limit and the
    scratch-training switches --train-encoder, --lr, --cosine-lr, --deep-supervision, --matching-supervision,
    --teacher-forcing on `group`
    (a parser or an argument group). `paper_help` (keyed like `TRAINING_HELP`) rewords a flag for a paper whose
    official recipe differs from the DenseNet trainers'."""
    unknown = sorted(set(paper_help) - set(TRAINING_HELP))
    if unknown:
        raise TypeError(f"no training flag for {unknown}; known: {', '.join(TRAINING_HELP)}")
    help_ = {**TRAINING_HELP, **paper_help}
    group.add_argument("--output-dir", type=Path, default=output_dir, help="checkpoint folder")
    group.add_argument("--resume", action="store_true", help="continue from <output-dir>/<stage>_last.pth")
    group.add_argument("--seed", type=int, default=seed, help=seed_help)
    group.add_argument("--init", default="imagenet", help=help_["init"])
    group.add_argument("--bn-train", action="store_true", help=help_["bn_train"])
    group.add_argument("--no-swap-attach", action="store_true", help="disable swap-and-attach (official: p=0.2)")
    group.add_argument("--workers", type=at_least(0), default=4, help="DataLoader workers (official 4)")
    group.add_argument("--train-encoder", action="store_true", help=help_["train_encoder"])
    group.add_argument("--lr", type=positive_float, help=help_["lr"])
    group.add_argument("--cosine-lr", action="store_true", help=help_["cosine_lr"])
    group.add_argument("--deep-supervision", action="store_true", help=help_["deep_supervision"])
    group.add_argument("--matching-supervision", action="store_true", help=help_["matching_supervision"])
    group.add_argument("--teacher-forcing", action="store_true", help=help_["teacher_forcing"])
    group.add_argument("--time-limit", type=positive_float, metavar="MINUTES",
                       help="end each stage at the first epoch end past this many minutes of training, as if its "
                            "epochs were done; with --resume the minutes trained before count, and a last stage that "
                            "stopped at a smaller limit trains on (default: no limit)")


# The help of `add_training_arguments`' flags whose official setting is the DenseNet trainers' (BMVOS, EMVOS, TBD)
TRAINING_HELP: Dict[str, str] = {
    "init": "encoder start: 'imagenet' (official; torchvision's DenseNet-121 weights), 'scratch', or a checkpoint "
            "path to start from",
    "bn_train": "train with BatchNorm in train mode (the official trainer keeps the model in eval mode)",
    "train_encoder": "train the DenseNet encoder too (the official recipe keeps it frozen; a randomly initialised "
                     "encoder, --init scratch, needs it)",
    "lr": "Adam learning rate (official 1e-4)",
    "cosine_lr": "lower the learning rate along a half cosine from --lr to 0 over each stage: over its epochs, or "
                 "over its --time-limit when that ends it sooner (the official learning rate is constant)",
    "deep_supervision": "also supervise the decoder's coarse 1/8 and 1/4 masks (not in the official recipe, which "
                        "supervises the final logits only; a random start learns to tell the target from the other "
                        "objects much sooner with it)",
    "matching_supervision": "EMVOS only: also train its matching's cosine similarities against the mask (not in the "
                            "official recipe; from a random start its decoder otherwise learns to follow the previous "
                            "mask and barely uses the matching)",
    "teacher_forcing": "let each training clip's state (templates, previous mask) follow its ground-truth masks "
                       "(the official trainer feeds back the prediction, which from a random start is noise the "
                       "decoder learns to ignore)",
}


def add_schedule_arguments(group, **paper_help: str) -> None:
    """The integer flags of `Overrides` (--epochs, --batch-size, ..., --min-fg-pixels; unset = official).
    `paper_help` (keyed like `SCHEDULE_HELP`) gives the help of flags whose official numbers are the paper's."""
    unknown = sorted(set(paper_help) - set(SCHEDULE_HELP))
    if unknown:
        raise TypeError(f"no schedule flag for {unknown}; known: {', '.join(SCHEDULE_HELP)}")
    for name, help_ in {**SCHEDULE_HELP, **paper_help}.items():
        group.add_argument(f"--{name.replace('_', '-')}", type=at_least(SCHEDULE_MINIMUM.get(name, 1)), help=help_)


# `add_schedule_arguments(group, **TBD_SCHEDULE_HELP)`: the help texts that carry TBD's numbers
TBD_SCHEDULE_HELP: Dict[str, str] = {
    "epochs": "epochs per stage (official 8000 COCO / 4000 video)",
    "save_step": "numbered checkpoint every N epochs (official 4000 / 1000)",
    "val_step": "validation every N epochs (official 400 / 100)",
    "short_side": "YouTube-VOS: resize the short side before cropping (official 480)",
}


def add_custom_split_arguments(group) -> None:
    """--ytvos-train-list / --ytvos-val-list: the authors' YouTube-VOS split files."""
    group.add_argument("--ytvos-train-list", type=Path,
                       help="the authors' cho_train.txt (default: <ytvos>/ImageSets/cho_train.txt if present, "
                            "else every train video)")
    group.add_argument("--ytvos-val-list", type=Path,
                       help="the authors' cho_val.txt for validation (default: <ytvos>/ImageSets/cho_val.txt if "
                            "present)")

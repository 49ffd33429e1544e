"""Train HMMN (a reconstruction: the authors released inference only; sources in hmmn/README.md "Training").

    python -m hmmn.train --coco data/COCO --davis data/DAVIS --ytvos data/YTVOS18 [--stages coco,main]
                         [--output-dir trained_model/hmmn] [--resume] [--init imagenet|scratch|PATH]
                         [--epochs N --batch-size N --clips-per-epoch N --crop N ...]
    torchrun --nproc_per_node=N -m hmmn.train ...          (DDP; --batch-size stays the global batch)

Stages: `coco` pre-trains on static images turned into 3-frame clips (COCO layout: JPEGImages/ +
Annotations/ of instance ids; any static-image set converted to it), `main` trains on DAVIS 2017 train (x5)
+ YouTube-VOS train, 3-frame clips with a growing maximum frame skip. Each stage starts from the previous
one's final weights. Checkpoints (`<stage>_NNNN.pth`, `<stage>_best.pth` when validated on DAVIS 2017 val,
`<stage>_last.pth` to resume) are plain `HMMN` state_dicts, so `python -m hmmn.eval_davis --weights PATH` and
`--init PATH` take them as they are (the official `HMMN_weights.pth` too: `--init hmmn` fine-tunes it).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

from common.data.output_folder import check_checkpoint_folder
from common.runtime.device import add_device_argument, pick_device, seed_everything
from common.runtime.errors import UserError, run_cli
from common.runtime.training_arguments import add_schedule_arguments, add_training_arguments
from hmmn.options import MEMORY_DROPOUT, MIN_CROP, SEED, STAGES

if TYPE_CHECKING:  # torch loads after the arguments are parsed: --help and argument errors answer at once
    from common.training.schedule import Overrides
    from hmmn.model import HMMN
    from hmmn.training import Recipe
    from hmmn.training_data import ClipAugmentation

# STCN train.py: max skip 5, then 10, 15, 20, 25 and back to 5 after 10/20/30/40/90 % of the main stage
SKIP_CURRICULUM = ((0.0, 5), (0.1, 10), (0.2, 15), (0.3, 20), (0.4, 25), (0.9, 5))


@dataclass(frozen=True)
class HMMNStage:
    """One stage: STCN's iterations expressed as this project's epochs of `clips_per_epoch` random clips
    (1000 optimizer steps per epoch at the official batch)."""
    aug: ClipAugmentation
    recipe: Recipe
    epochs: int
    batch_size: int
    clips_per_epoch: int
    save_step: int
    val_step: int


def official_stages() -> Dict[str, HMMNStage]:
    from hmmn.training import MAIN_RECIPE, STATIC_RECIPE
    from hmmn.training_data import STATIC, VIDEO
    return {
        # STCN stage 0: 300K iterations, batch 16 (8 per GPU x 2), lr 1e-5 -> 1e-6 at 150K
        "coco": HMMNStage(STATIC, STATIC_RECIPE, epochs=300, batch_size=16, clips_per_epoch=16_000, save_step=50,
                          val_step=50),
        # STCN stage 3: 150K iterations, batch 8 (4 per GPU x 2), lr 1e-5 -> 1e-6 at 125K
        "main": HMMNStage(VIDEO, MAIN_RECIPE, epochs=150, batch_size=8, clips_per_epoch=8_000, save_step=50,
                          val_step=50),
    }
REFUSED = {"short_side": "--short-side", "min_fg_pixels": "--min-fg-pixels"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hmmn.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--coco", type=Path, help="static-image clips in COCO layout (stage coco)")
    p.add_argument("--davis", type=Path, help="DAVIS 2017 root: train videos (stage main) and val (validation)")
    p.add_argument("--ytvos", type=Path, help="YouTube-VOS root with train/JPEGImages, train/Annotations (stage main)")
    p.add_argument("--stages", default="coco,main", help="comma-separated stages in order: coco, main")
    add_device_argument(p)
    add_training_arguments(
        p, output_dir=Path("trained_model/hmmn"), seed=SEED, seed_help="seed set before the model is built (STCN's)",
        init="start: 'imagenet' (ImageNet ResNet-50 encoders, as STM-family trainers), 'scratch', or a checkpoint "
             "path or registry name ('hmmn': the official weights, to fine-tune)",
        bn_train="train with BatchNorm in train mode (the reconstructed recipe, like STCN's, keeps it frozen)",
        train_encoder="no effect for HMMN: its recipe (STCN's) trains the encoders anyway",
        lr="Adam learning rate (reconstructed recipe: 1e-5, STCN's)",
        deep_supervision="not for HMMN (refused): its decoder has no coarse masks to supervise",
        matching_supervision="add the binary cross-entropy of the /16 read-out attention's share on memory cells of "
                             "the query cell's own object (not in the recipe; scratch training: HMMN's decoder sees "
                             "no previous mask, so its matching has to be learned from nothing)",
        teacher_forcing="memorise each training clip's ground-truth masks instead of its predictions (the "
                        "reconstructed recipe, like STCN's, memorises the soft prediction; from a random start that is "
                        "noise)",
        cosine_lr="lower the learning rate along a half cosine from --lr to 0 over each stage (over its epochs, or "
                  "over its --time-limit when that ends it sooner) instead of the recipe's tenfold step decay (not in "
                  "the recipe; scratch training)")
    add_schedule_arguments(
        p, epochs="epochs per stage (1000 steps each at the official batch; 300 coco / 150 main)",
        batch_size="clips per batch, global over DDP processes (16 coco, 8 main)",
        save_step="numbered checkpoint every N epochs (50)", val_step="DAVIS 2017 val J&F every N epochs (50)",
        clips_per_epoch="random clips per epoch (16000 coco, 8000 main)",
        crop=f"square crop (384; a multiple of 16, at least {MIN_CROP})",
        short_side="not part of HMMN's recipe (refused)", min_fg_pixels="not part of HMMN's recipe (refused)",
        coco_clip_length="frames per static-image clip (3)", video_clip_length="frames per video clip (3)")
    h = p.add_argument_group("HMMN")
    h.add_argument("--max-skip", type=int, help="fixed maximum frame skip instead of the curriculum 5..25")
    h.add_argument("--memory-dropout", type=float, default=MEMORY_DROPOUT,
                   help="probability of dropping the /8 and /4 memory read-out per pass (0.5)")
    h.add_argument("--unclamped-aggregation", action="store_true",
                   help="the loss takes the soft aggregation computed in log space, without the released clamp of "
                        "the probabilities to [1e-7, 1-1e-7], whose zero gradient stalls training from a random start "
                        "at lr 3e-4 (scratch training; the network and inference are unchanged)")
    h.add_argument("--no-bootstrap", action="store_true",
                   help="the cross-entropy of every pixel throughout instead of STCN's bootstrapped share of the "
                        "hardest (scratch training: from a random start, the hardest pixels pull the masks to an even "
                        "0.5)")
    h.add_argument("--warmup-steps", type=int, default=0, metavar="N",
                   help="raise the learning rate linearly from lr/N to lr over each stage's first N optimizer steps "
                        "(scratch training: from a random start, Adam's first steps at 3e-4 saturate the /16 read-out "
                        "attention on background cells; the recipe has no warm-up)")
    h.add_argument("--dice-loss", action="store_true",
                   help="add a soft Dice term per object to the bootstrapped cross-entropy (Cutie's loss; scratch "
                        "training: the cross-entropy weighs pixels, so the generated videos' small second objects "
                        "count for little; the recipe's loss alone is what the log's loss column shows)")
    h.add_argument("--matching-labels", action="store_true",
                   help="add the cross-entropy of the /16 read-out attention against an even spread over the memory "
                        "cells whose larger part has the query cell's label (background, target, second object) "
                        "(scratch training: it keeps the attention from settling on one cell per query cell)")
    h.add_argument("--fine-matching-supervision", action="store_true",
                   help="add --matching-supervision's share loss at /8 and /4, over each top-k guided read's "
                        "candidate pixels, per query pixel (scratch training: the generated objects are two /16 cells "
                        "across, four at /8)")
    h.add_argument("--zero-init-residual", action="store_true",
                   help="with --init scratch: start every encoder bottleneck as the identity, the scale of its last "
                        "BatchNorm at zero (torchvision's zero_init_residual; scratch training: the 50-layer encoders "
                        "learn far sooner)")
    h.add_argument("--no-augment", action="store_true",
                   help="no augmentation: whole frames resized to the crop (for overfitting checks)")
    return p


def check_args(args, stages: Sequence[str], o: Overrides) -> None:
    """Everything that can be refused before a model or a dataset is built."""
    for field, flag in REFUSED.items():
        if getattr(o, field) is not None:
            raise UserError(f"{flag} is not part of HMMN's training recipe (STCN-style random crops); leave it out")
    if o.crop is not None and (o.crop % 16 or o.crop < MIN_CROP):
        raise UserError(f"--crop {o.crop}: HMMN needs a multiple of 16 of at least {MIN_CROP} (its /8 top-32 "
                        f"matching needs 32 cells at /16)")
    if args.max_skip is not None and args.max_skip < 1:
        raise UserError(f"--max-skip must be at least 1, got {args.max_skip}")
    if args.warmup_steps < 0:
        raise UserError(f"--warmup-steps must be at least 0, got {args.warmup_steps}")
    if args.zero_init_residual and args.init != "scratch":
        raise UserError(f"--zero-init-residual sets the initial weights of a random start; with --init {args.init} "
                        f"it would overwrite them: pass --init scratch or leave it out")
    if not 0.0 <= args.memory_dropout <= 1.0:
        raise UserError(f"--memory-dropout is a probability in [0, 1], got {args.memory_dropout}")
    if args.deep_supervision:
        raise UserError("--deep-supervision is a switch of the BMVOS/EMVOS/TBD trainers, not of HMMN's: leave it out")
    if args.train_encoder:
        print("notice: --train-encoder changes nothing for HMMN: its recipe (STCN's) trains the encoders anyway")
    if "coco" in stages and args.coco is None:
        raise UserError("stage 'coco' needs its static-image root: pass --coco PATH (or --stages main)")
    if "main" in stages and args.davis is None and args.ytvos is None:
        raise UserError("stage 'main' needs --davis PATH and/or --ytvos PATH")
    for flag, path in (("--coco", args.coco), ("--davis", args.davis), ("--ytvos", args.ytvos)):
        if path is not None and not path.is_dir():
            raise UserError(f"{flag} folder not found: {path}")


def plan(stage: str, o: Overrides, args) -> HMMNStage:
    s = official_stages()[stage]
    clip_length = o.coco_clip_length if stage == "coco" else o.video_clip_length
    aug = s.aug.scaled(crop=o.crop, clip_length=clip_length, enabled=False if args.no_augment else None)
    recipe = s.recipe if args.lr is None else replace(s.recipe, lr=args.lr)
    if args.no_bootstrap:
        recipe = replace(recipe, top_p=1.0)
    recipe = replace(recipe, warmup_steps=args.warmup_steps, cosine=args.cosine_lr)

    def pick(new: Optional[int], old: int) -> int:
        return old if new is None else new

    return HMMNStage(aug, recipe, epochs=pick(o.epochs, s.epochs), batch_size=pick(o.batch_size, s.batch_size),
                     clips_per_epoch=pick(o.clips_per_epoch, s.clips_per_epoch),
                     save_step=pick(o.save_step, s.save_step), val_step=pick(o.val_step, s.val_step))


def training_set(stage: str, s: HMMNStage, args):
    from hmmn.training_data import StaticClips, VideoClips, davis_videos, ytvos_videos
    if stage == "coco":
        return StaticClips(args.coco, s.aug, s.clips_per_epoch)
    videos = (davis_videos(args.davis) if args.davis else []) + (ytvos_videos(args.ytvos) if args.ytvos else [])
    return VideoClips(videos, s.aug, s.clips_per_epoch, curriculum=SKIP_CURRICULUM, max_skip=args.max_skip)


def build_model(init: str, zero_residual: bool = False) -> HMMN:
    """`--init`: 'imagenet' (ImageNet ResNet-50 encoders, as STM-family papers start), 'scratch', or a
    checkpoint path / registry name (e.g. `hmmn`, the official weights) loaded strictly. `zero_residual`
    (`--zero-init-residual`, scratch only): both encoders' bottlenecks start as the identity."""
    from common.modeling.resnet import zero_init_residual
    from hmmn.model import HMMN
    if init == "imagenet":
        try:
            return HMMN(imagenet=True).eval()
        except Exception as err:  # torchvision download: no network, no cache
            raise UserError(f"could not load torchvision's ImageNet ResNet-50 weights ({err}); put "
                            f"resnet50-0676ba61.pth into $TORCH_HOME/hub/checkpoints or pass --init scratch") from err
    model = HMMN()
    if zero_residual:
        zero_init_residual(model.Encoder_M)
        zero_init_residual(model.Encoder_Q)
    if init != "scratch":
        from common.hub.checkpoints import load_into
        load_into(model, init)
    return model.eval()  # BatchNorm keeps its running statistics while training (STCN, the shared Trainer)


def run(args) -> List[Path]:
    from common.training.schedule import Overrides, check_resume, parse_stages, save_name, start_init
    from common.training.trainer import TrainConfig
    from common.training.validation import davis_validator
    from hmmn.inference import segment_video
    from hmmn.training import HMMNTrainer

    stages = parse_stages(args.stages, STAGES)
    overrides = Overrides.from_args(args)
    check_args(args, stages, overrides)
    check_checkpoint_folder(args.output_dir)
    check_resume(args.output_dir, stages, args.resume)
    device = pick_device(args.device)
    plans = {stage: plan(stage, overrides, args) for stage in stages}
    datasets = {stage: training_set(stage, plans[stage], args) for stage in stages}  # checks the data up front
    validate = None
    if args.davis is not None:
        validate = davis_validator(args.davis, lambda model, video: segment_video(model, video))
    else:
        print("notice: no DAVIS root (--davis); training without validation or best checkpoints")

    seed_everything(args.seed)  # before the model is built, as upstream trainers do
    model = build_model(start_init(args.init, args.output_dir, stages, args.resume), args.zero_init_residual)
    finished = []
    for index, stage in enumerate(stages):
        s = plans[stage]
        config = TrainConfig(save_name=save_name(stages, index), epochs=s.epochs, batch_size=s.batch_size,
                             save_step=s.save_step, val_step=s.val_step, num_workers=args.workers,
                             bn_train=args.bn_train, teacher_forcing=args.teacher_forcing,
                             time_limit_s=60.0 * (args.time_limit or 0.0),
                             extend_time_limit=index == len(stages) - 1)
        trainer = HMMNTrainer(model, datasets[stage], config, args.output_dir, device, s.recipe, validate,
                              resume=args.resume, memory_dropout=args.memory_dropout,
                              unclamped_aggregation=args.unclamped_aggregation,
                              readout_supervision=args.matching_supervision,
                              readout_labels=args.matching_labels,
                              readout_fine=args.fine_matching_supervision, dice=args.dice_loss)
        trainer.train()
        finished.append(trainer.resume_path)
    return finished


def main(argv: Optional[Sequence[str]] = None) -> int:
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    run_cli(main)

"""Shared training pipeline of BMVOS, EMVOS and TBD (their official trainers and loaders are near-identical).

Public interface (what a paper package uses)::

    from common.training import (Trainer, TrainConfig, ClipRecipe, COCOClips, davis_train_clips,
                                 ytvos_train_clips, davis_validator, swap_and_attach)

    recipe = EMVOS_COCO.scaled(output_size=(64, 64))           # or TBD_COCO / TBD_DAVIS / ...; sizes for smoke runs
    train_set = COCOClips(coco_root, recipe, clips_per_epoch=128)
    validate = davis_validator(davis_root, segment)             # segment(model, Video) -> {frame: uint8 labels}
    config = TrainConfig(save_name="coco", epochs=8000, batch_size=16, save_step=4000, val_step=400)
    Trainer(model, forward_clip, train_set, config, out_dir, device, validate, resume=True).train()

- `forward_clip(model, imgs [B,L,3,H,W] float in [0,1], masks [B,L,1,H,W] int64 in {0,1})` returns the raw
  logits `[B, L-1, 2, H, W]` of frames 1..L-1 (EMVOS: `model(imgs, masks[:, :1], None)['scores']`; TBD feeds its
  distance matrix). Everything else — swap-and-attach (p=0.2), the skip rule, the loss, the IoU statistic, Adam,
  checkpoints (`<save_name>_{NNNN,best,last}.pth`), validation, NaN checks, resume — is shared.
- `davis_validator` scores with `common.evaluation.evaluate` (davis2017-evaluation J&F-Mean, in [0, 1] like upstream).
- A NaN/inf loss raises `LossNotFinite` (a `UserError`) naming the epoch and the checkpoint to resume from; a
  `Trainer` refuses to start over an existing `<save_name>_last.pth` unless `resume=True`.
- BatchNorm stays in eval() during training by default, as the official code does (`TrainConfig.bn_train`).
- Training from a random start (all off by default, the official recipe): `TrainConfig.train_encoder` gives the
  submodules named `encoder` gradients during the training forward (the papers run theirs under no_grad),
  `TrainConfig.lr`, and `TrainConfig.time_limit_s` ends a stage at the first epoch end past that many seconds.
  On the command line: `--train-encoder`, `--bn-train`, `--lr` (`Overrides.train_config` turns them into a
  `TrainConfig`); the time limit is `Overrides.time_limit` (`--time-limit`, minutes).
- Logs next to the checkpoints: `<save_name>_log.jsonl` (per epoch), `<save_name>_log.csv` (per optimizer step:
  step, epoch, loss, iou, jf, lr) and `<save_name>_curves.png` (`common.training.curves`).
- A stage whose first batches all break the skip rule stops with a `UserError` (no usable clips); a `UserError`
  raised in a DataLoader worker (an RGB annotation, an unreadable frame) keeps its one line.
- Seeding is the caller's job (seed before building the model, as upstream: `common.runtime.device.seed_everything`);
  resume checkpoints carry all RNG states.
- Schedules (epochs, batch sizes, save/val steps) are per paper: a `Stage` per stage name (`emvos.train.OFFICIAL`;
  TBD's, which BMVOS uses too, is `TBD_SCHEDULE` in `common.training.tbd_recipe`). `Overrides` / `stage_plan`
  shrink them for smoke runs; `add_training_arguments` / `add_schedule_arguments` add the shared flags.
"""
from common.training.augment import (EMVOS_COCO, EMVOS_VIDEO, TBD_COCO, TBD_DAVIS, TBD_YTVOS, AffineRecipe,
                                     ClipAugmenter, ClipRecipe)
from common.training.clips import COCOClips, VideoClips, davis_train_clips, ytvos_train_clips
from common.training.schedule import (Overrides, Stage, add_schedule_arguments, add_training_arguments,
                                      build_training_model, parse_stages, stage_plan)
from common.training.swap_attach import SWAP_ATTACH_PROBABILITY, maybe_swap_and_attach, swap_and_attach
from common.training.trainer import (ForwardClip, LossNotFinite, TrainConfig, Trainer, Validate, atomic_save, clip_loss,
                                     fg_iou, has_one_object_each)
from common.training.validation import davis_validator

__all__ = [
    "EMVOS_COCO", "EMVOS_VIDEO", "TBD_COCO", "TBD_DAVIS", "TBD_YTVOS", "AffineRecipe", "ClipAugmenter", "ClipRecipe",
    "COCOClips", "VideoClips", "davis_train_clips", "ytvos_train_clips",
    "SWAP_ATTACH_PROBABILITY", "maybe_swap_and_attach", "swap_and_attach",
    "ForwardClip", "LossNotFinite", "TrainConfig", "Trainer", "Validate", "atomic_save", "clip_loss", "fg_iou",
    "has_one_object_each", "davis_validator",
    "Overrides", "Stage", "add_schedule_arguments", "add_training_arguments", "build_training_model", "parse_stages",
    "stage_plan",
]

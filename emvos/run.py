"""EMVOS command line, mirroring the official `run.py --test` / `run.py --train`.

    python -m emvos.run --test --davis data/DAVIS [--ytvos data/YTVOS18] [--sets davis17-val ...]
                        [--weights emvos-coco_davis | PATH] [--output outputs/emvos] [--device cuda]
                        [--fast [--compile]]
    torchrun --nproc_per_node=N -m emvos.run --test ...      (videos sharded over N processes; rank 0 scores)
    python -m emvos.run --train --coco data/COCO --davis data/DAVIS [--stages coco,davis] [--output-dir ...]
                        [--resume] [--epochs N --batch-size N --crop N ...]   (smaller sizes for smoke runs)

`--test` writes palette PNGs to `<output>/<SET>/<video>/<frame>.png` (finished videos are skipped on a rerun),
prints per-video and total fps, and for the val sets the J&F table (also saved as CSV). test-dev and YouTube-VOS
results are zipped for the challenge servers. `--fast` segments all objects of a frame in one batched pass
(autocast on CUDA, channels_last; see `emvos.fast`); the default is the faithful, official order of operations.
Under torchrun every rank segments its share of the videos; rank 0 alone scores, zips and prints the tables. `--train` runs the official two-stage recipe (see `emvos.train`).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from common.device import add_device_argument, pick_device, seed_everything
from common.distributed import DistContext, init_distributed
from common.errors import UserError, run_cli
from emvos.model import EMVOS

# name -> (output folder as upstream, dataset, year, split, evaluated in-process)
TEST_SETS = {
    "davis16-val": ("DAVIS16_val", "davis", 2016, "val", True),
    "davis17-val": ("DAVIS17_val", "davis", 2017, "val", True),
    "davis17-test-dev": ("DAVIS17_test-dev", "davis", 2017, "test-dev", False),
    "ytvos18-valid": ("YTVOS18_val", "ytvos", 2018, "valid", False),
}
DEFAULT_WEIGHTS = {"davis": "emvos-coco_davis", "ytvos": "emvos-coco_ytvos"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m emvos.run", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--test", action="store_true", help="segment the test sets with trained weights")
    mode.add_argument("--train", action="store_true", help="train with the official recipe")
    p.add_argument("--davis", type=Path, help="DAVIS 2017 root (JPEGImages/, Annotations/, ImageSets/)")
    p.add_argument("--ytvos", type=Path, help="YouTube-VOS 2018 root (valid/, valid_all_frames/ for --test; "
                                              "train/ for --train)")
    p.add_argument("--coco", type=Path, help="COCO root for pre-training (JPEGImages/*.jpg, Annotations/*.png)")
    add_device_argument(p)
    t = p.add_argument_group("testing")
    t.add_argument("--sets", nargs="+", choices=sorted(TEST_SETS),
                   help="test sets (default: the DAVIS sets, plus ytvos18-valid when --ytvos is given)")
    t.add_argument("--weights", help="registry name (emvos-coco_davis, emvos-coco_ytvos) or checkpoint path "
                                     "(default: emvos-coco_davis for DAVIS, emvos-coco_ytvos for YouTube-VOS)")
    t.add_argument("--output", type=Path, default=Path("outputs/emvos"), help="results folder")
    t.add_argument("--no-resize", action="store_true", help="run at the native size (skip the official 480p rule)")
    t.add_argument("--fast", action="store_true",
                   help="batched objects, shared matching, autocast on CUDA, channels_last (results agree with the "
                        "default faithful mode within noise; see emvos.fast)")
    t.add_argument("--compile", action="store_true", help="with --fast: torch.compile the encoder and decoder")
    r = p.add_argument_group("training")
    r.add_argument("--stages", default="coco,davis",
                   help="comma-separated stages in order: coco, davis, ytvos (default coco,davis as upstream)")
    r.add_argument("--output-dir", type=Path, default=Path("trained_model/emvos"), help="checkpoint folder")
    r.add_argument("--resume", action="store_true", help="continue from <output-dir>/<stage>_last.pth")
    r.add_argument("--seed", type=int, default=19971007, help="seed set before the model is built (official)")
    r.add_argument("--init", default="imagenet",
                   help="encoder start: 'imagenet' (official; torchvision's DenseNet-121 weights), 'scratch', "
                        "or a checkpoint path to start from")
    r.add_argument("--bn-train", action="store_true",
                   help="train with BatchNorm in train mode (the official trainer keeps the model in eval mode)")
    r.add_argument("--no-swap-attach", action="store_true", help="disable swap-and-attach (official: p=0.2)")
    r.add_argument("--workers", type=int, default=4, help="DataLoader workers (official 4)")
    for name, help_ in (("epochs", "epochs per stage (official 8000 / 4000 / 8000)"),
                        ("batch-size", "clips per batch (official 16 COCO, 8 video)"),
                        ("save-step", "numbered checkpoint every N epochs"),
                        ("val-step", "DAVIS 2017 val J&F every N epochs"),
                        ("clips-per-epoch", "random clips per epoch (official 128)"),
                        ("crop", "square crop size (official 384)"),
                        ("short-side", "resize the short side before cropping (official 480)"),
                        ("coco-clip-length", "frames per COCO clip (official 5)"),
                        ("video-clip-length", "frames per video clip (official 10)"),
                        ("min-fg-pixels", "balanced crop: object pixels to keep (official 256)")):
        r.add_argument(f"--{name}", type=int, help=help_)
    return p


def load_weights(model: torch.nn.Module, weights: str) -> None:
    from common.weights import load_into
    load_into(model, weights)


def run_test(args, device: torch.device, dist: Optional[DistContext] = None) -> Dict[str, dict]:
    """Segment, then score or zip each set; under torchrun (`dist` enabled) each rank segments its share of
    the videos and only rank 0 scores and zips (after run_videos' barrier)."""
    from common.datasets import DAVIS, YouTubeVOS
    from common.evaluate import evaluate
    from common.runner import run_videos, zip_submission
    from emvos.fast import FastEMVOS
    from emvos.inference import segment_video

    if args.compile and not args.fast:
        raise UserError("--compile applies to fast mode; add --fast")
    is_main = dist is None or dist.is_main

    sets = args.sets or [s for s in TEST_SETS if TEST_SETS[s][1] == "davis" or args.ytvos is not None]
    summary: Dict[str, dict] = {}
    models: Dict[str, object] = {}
    for name in sets:
        folder, family, year, split, scored = TEST_SETS[name]
        root = args.davis if family == "davis" else args.ytvos
        if root is None:
            raise UserError(f"test set {name} needs --{family} PATH")
        # the dataset layout is checked before any weights are downloaded
        dataset = DAVIS(root, year=year, split=split) if family == "davis" else YouTubeVOS(root, year=year,
                                                                                           split=split)
        weights = args.weights or DEFAULT_WEIGHTS[family]
        if weights not in models:
            model = EMVOS()
            load_weights(model, weights)
            model = model.eval().to(device)
            models[weights] = FastEMVOS(model, compile=args.compile) if args.fast else model
        model = models[weights]
        out = args.output / folder
        print(f"== {name}: {len(dataset.videos())} videos, weights {weights} -> {out}")
        stats = run_videos(dataset.videos(), lambda v: segment_video(model, v, device, resize=not args.no_resize),
                           out, device=device, desc=f"EMVOS {name}", dist=dist)
        summary[name] = {"fps": stats.fps, "frames": stats.total_frames}
        if not is_main:
            continue
        if scored:
            result = evaluate(root, out, split=split, year=year)
            print(result.format_table())
            result.write_csvs(out.parent / f"{folder}_scores")
            summary[name].update(result.global_row)
        else:
            zip_path = zip_submission(out, args.output / f"{folder}.zip",
                                      layout="davis" if family == "davis" else "youtube")
            print(f"submission archive: {zip_path}")
    return summary


def run_train(args, device: torch.device) -> List[Path]:
    from emvos.train import Overrides, train

    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    seed_everything(args.seed)  # before the model is built, as upstream
    first_checkpoint = args.output_dir / f"{stages[0] if stages else ''}_last.pth"
    if args.init == "imagenet" and args.resume and first_checkpoint.exists():
        model = EMVOS()  # every weight comes back from the checkpoint: no need for the ImageNet download
    elif args.init == "imagenet":
        try:
            model = EMVOS(imagenet_pretrained=True)
        except Exception as err:  # torchvision download: no network, no cache
            raise UserError(f"could not load torchvision's ImageNet DenseNet-121 weights ({err}); put "
                            f"densenet121-a639ec97.pth into $TORCH_HOME/hub/checkpoints or pass --init scratch") from err
    else:
        model = EMVOS()
        if args.init != "scratch":
            load_weights(model, args.init)
    model.eval()  # the official trainer never switches to train(): BatchNorm keeps its running statistics
    overrides = Overrides(epochs=args.epochs, batch_size=args.batch_size, save_step=args.save_step,
                          val_step=args.val_step, clips_per_epoch=args.clips_per_epoch, crop=args.crop,
                          short_side=args.short_side, coco_clip_length=args.coco_clip_length,
                          video_clip_length=args.video_clip_length, min_fg_pixels=args.min_fg_pixels)
    roots = {"coco": args.coco, "davis": args.davis, "ytvos": args.ytvos, "davis_val": args.davis}
    return train(model, stages, roots, args.output_dir, device, overrides, num_workers=args.workers,
                 resume=args.resume, bn_train=args.bn_train,
                 swap_attach_probability=0.0 if args.no_swap_attach else None)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    device = pick_device(args.device)
    if args.test:
        if args.davis is None and args.ytvos is None:
            raise UserError("--test needs --davis PATH and/or --ytvos PATH")
        ctx = init_distributed(device)  # torchrun: this rank's device and share of the videos; else a no-op
        with torch.no_grad():
            run_test(args, ctx.device, dist=ctx)
    else:
        run_train(args, device)
    return 0


if __name__ == "__main__":
    run_cli(main)

"""TBD command line, mirroring the official `run.py --test` / `run.py --train`.

    python -m tbd.run --test --davis data/DAVIS [--ytvos data/YTVOS18] [--sets davis17-val ...]
                      [--weights tbd-davis | PATH] [--output outputs/tbd] [--device cuda]
                      [--fast [--amp auto|off|encoder|all] [--compile]]
    torchrun --nproc_per_node=N -m tbd.run --test ...     (videos sharded over N processes; rank 0 scores)
    python -m tbd.run --train --coco data/COCO --davis data/DAVIS [--stages coco,davis] [--output-dir ...]
                      [--ytvos data/YTVOS18 --ytvos-train-list cho_train.txt --ytvos-val-list cho_val.txt]
                      [--resume] [--epochs N --batch-size N --crop N ...]   (smaller sizes for smoke runs)

`--test` writes palette PNGs to `<output>/<SET>/<video>/<frame>.png` (finished videos are skipped on a
rerun), prints per-video and total fps, and for the val sets the J&F table (also saved as CSV). test-dev and
YouTube-VOS results are zipped for the challenge servers. `--fast` runs the batched, mixed-precision
inference of `tbd.fast` (same weights; results agree up to float noise). Under torchrun every rank segments its
share of the videos and rank 0 alone scores and zips them. `--train` runs the official recipe (`tbd.train`);
under torchrun it trains with DistributedDataParallel (common.training).
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from common.device import add_device_argument, pick_device, seed_everything
from common.distributed import DistContext, init_distributed
from common.errors import UserError, run_cli
from tbd.model import TBD

# name -> (output folder as upstream, dataset, year, split, evaluated in-process)
TEST_SETS = {
    "davis16-val": ("DAVIS16_val", "davis", 2016, "val", True),
    "davis17-val": ("DAVIS17_val", "davis", 2017, "val", True),
    "davis17-test-dev": ("DAVIS17_test-dev", "davis", 2017, "test-dev", False),
    "ytvos18-valid": ("YTVOS18_val", "ytvos", 2018, "valid", False),
}
DEFAULT_WEIGHTS = {"davis": "tbd-davis", "ytvos": "tbd-ytvos"}
AMP_CHOICES = ("auto", "off", "encoder", "all")
SEED = 19971007  # the authors' seed in their other trainers; TBD's run.py itself does not seed


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tbd.run", description=__doc__.split("\n\n")[0],
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
    t.add_argument("--weights", help="registry name (tbd-davis, tbd-ytvos) or checkpoint path "
                                     "(default: tbd-davis for DAVIS, tbd-ytvos for YouTube-VOS)")
    t.add_argument("--output", type=Path, default=Path("outputs/tbd"), help="results folder")
    t.add_argument("--no-resize", action="store_true", help="run at the native size (skip the official 480p rule)")
    t.add_argument("--fast", action="store_true",
                   help="batched inference: all objects of a frame at once, shared work done once per frame, "
                        "fp16 autocast and channels_last on CUDA (results agree up to float noise)")
    t.add_argument("--amp", choices=AMP_CHOICES, default="auto",
                   help="with --fast: which parts run under fp16 autocast on CUDA (auto = the encoder on CUDA, "
                        "nothing on CPU; 'all' adds the decoder: faster, but logits move by ~1e-3 relative)")
    t.add_argument("--compile", action="store_true", help="with --fast: torch.compile the encoder and decoder")
    r = p.add_argument_group("training")
    r.add_argument("--stages", default="coco,davis",
                   help="comma-separated stages in order: coco, davis, ytvos (default coco,davis as upstream)")
    r.add_argument("--ytvos-train-list", type=Path,
                   help="the authors' cho_train.txt (default: <ytvos>/ImageSets/cho_train.txt if present, "
                        "else every train video)")
    r.add_argument("--ytvos-val-list", type=Path,
                   help="the authors' cho_val.txt for validation (default: <ytvos>/ImageSets/cho_val.txt if present)")
    r.add_argument("--output-dir", type=Path, default=Path("trained_model/tbd"), help="checkpoint folder")
    r.add_argument("--resume", action="store_true", help="continue from <output-dir>/<stage>_last.pth")
    r.add_argument("--seed", type=int, default=SEED, help="seed set before the model is built")
    r.add_argument("--init", default="imagenet",
                   help="encoder start: 'imagenet' (official; torchvision's DenseNet-121 weights), 'scratch', "
                        "or a checkpoint path to start from")
    r.add_argument("--bn-train", action="store_true",
                   help="train with BatchNorm in train mode (the official trainer keeps the model in eval mode)")
    r.add_argument("--no-swap-attach", action="store_true", help="disable swap-and-attach (official: p=0.2)")
    r.add_argument("--workers", type=int, default=4, help="DataLoader workers (official 4)")
    for name, help_ in (("epochs", "epochs per stage (official 8000 COCO / 4000 video)"),
                        ("batch-size", "clips per batch (official 16 COCO, 8 video)"),
                        ("save-step", "numbered checkpoint every N epochs (official 4000 / 1000)"),
                        ("val-step", "validation every N epochs (official 400 / 100)"),
                        ("clips-per-epoch", "random clips per epoch (official 128)"),
                        ("crop", "square crop size (official 384)"),
                        ("short-side", "YouTube-VOS: resize the short side before cropping (official 480)"),
                        ("coco-clip-length", "frames per COCO clip (official 5)"),
                        ("video-clip-length", "frames per video clip (official 10)"),
                        ("min-fg-pixels", "balanced crop: object pixels to keep (official 256)")):
        r.add_argument(f"--{name}", type=int, help=help_)
    return p


def fast_options(device: torch.device, amp: str = "auto", compile: bool = False):
    """`tbd.fast.FastOptions` for `--fast` on `device` with the `--amp` choice."""
    from tbd.fast import FastOptions

    if amp not in AMP_CHOICES:
        raise UserError(f"--amp {amp!r}: choose one of {', '.join(AMP_CHOICES)}")
    options = FastOptions.for_device(device, compile=compile)
    if amp == "auto":
        return options
    if amp == "off":
        return replace(options, amp_dtype=None, amp_decoder=False)
    dtype = options.amp_dtype or torch.bfloat16  # the CPU's autocast type
    return replace(options, amp_dtype=dtype, amp_decoder=amp == "all")


def run_test(args, device: torch.device, dist: Optional[DistContext] = None) -> Dict[str, dict]:
    if (args.compile or args.amp != "auto") and not args.fast:
        raise UserError("--compile and --amp apply to the fast mode only; add --fast")
    sets = args.sets or [s for s in TEST_SETS if TEST_SETS[s][1] == "davis" or args.ytvos is not None]
    fast = fast_options(device, args.amp, args.compile) if args.fast else None
    return run_sets(sets, {"davis": args.davis, "ytvos": args.ytvos}, args.weights, args.output, device,
                    resize=not args.no_resize, fast=fast, dist=dist)


def run_sets(sets: Sequence[str], roots: Dict[str, Optional[Path]], weights: Optional[str], output: Path,
             device: torch.device, resize: bool = True, overwrite: bool = False,
             models: Optional[Dict[str, torch.nn.Module]] = None, fast=None,
             dist: Optional[DistContext] = None) -> Dict[str, dict]:
    """Segment each test set (resuming finished videos), score the val sets, zip the server sets.

    Returns {set: {'fps', 'frames', J&F global row for scored sets, 'zip' for server sets}}. `models` maps a
    weights name to a ready model (e.g. seeded weights for the demo); others are loaded with common.weights.
    `fast` (a `tbd.fast.FastOptions`) switches to the fast inference path. With an enabled `dist` context each
    rank segments its share of the videos; rank 0 alone scores and zips (the others return fps/frames only).
    """
    from common.datasets import DAVIS, YouTubeVOS
    from common.evaluate import evaluate
    from common.runner import run_videos, zip_submission
    from common.weights import load_into
    from tbd.inference import segment_video

    summary: Dict[str, dict] = {}
    models = dict(models or {})
    for name in sets:
        folder, family, year, split, scored = TEST_SETS[name]
        root = roots.get(family)
        if root is None:
            raise UserError(f"test set {name} needs --{family} PATH")
        name_or_path = weights or DEFAULT_WEIGHTS[family]
        if name_or_path not in models:
            model = TBD()
            load_into(model, name_or_path)
            models[name_or_path] = model
        model = models[name_or_path].eval().to(device)
        if fast is not None:
            from tbd.fast import FastTBD

            fast_key = (name_or_path, "fast")
            if fast_key not in models:
                models[fast_key] = FastTBD(model, fast)
            model = models[fast_key]
        dataset = (DAVIS(root, year=year, split=split) if family == "davis"
                   else YouTubeVOS(root, year=year, split=split))
        out = Path(output) / folder
        if dist is None or dist.is_main:
            print(f"== {name}: {len(dataset.videos())} videos, weights {name_or_path}"
                  f"{' (fast mode)' if fast is not None else ''} -> {out}"
                  f"{f' on {dist.world_size} processes' if dist is not None and dist.enabled else ''}")
        stats = run_videos(dataset.videos(), lambda v: segment_video(model, v, device, resize=resize),
                           out, device=device, desc=f"TBD {name}", overwrite=overwrite, dist=dist)
        summary[name] = {"fps": stats.fps, "frames": stats.total_frames}
        if dist is not None and not dist.is_main:  # every rank's videos are written (run_videos' barrier)
            continue
        if scored:
            result = evaluate(root, out, split=split, year=year)
            print(result.format_table())
            result.write_csvs(out.parent / f"{folder}_scores")
            summary[name].update(result.global_row)
        else:
            zip_path = zip_submission(out, Path(output) / f"{folder}.zip",
                                      layout="davis" if family == "davis" else "youtube")
            print(f"submission archive: {zip_path}")
            summary[name]["zip"] = zip_path
    return summary


def build_training_model(init: str) -> TBD:
    if init == "imagenet":
        try:
            model = TBD(imagenet_pretrained=True)
        except Exception as err:  # torchvision download: no network, no cache
            raise UserError(f"could not load torchvision's ImageNet DenseNet-121 weights ({err}); put "
                            f"densenet121-a639ec97.pth into $TORCH_HOME/hub/checkpoints or pass --init scratch") from err
    else:
        model = TBD()
        if init != "scratch":
            from common.weights import load_into
            load_into(model, init)
    return model.eval()  # the official trainer never calls train(): BatchNorm keeps its running statistics


def run_train(args, device: torch.device) -> List[Path]:
    from tbd.train import Overrides, train

    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    seed_everything(args.seed)  # before the model is built, so the decoder's initialisation repeats
    model = build_training_model(args.init)
    overrides = Overrides(epochs=args.epochs, batch_size=args.batch_size, save_step=args.save_step,
                          val_step=args.val_step, clips_per_epoch=args.clips_per_epoch, crop=args.crop,
                          short_side=args.short_side, coco_clip_length=args.coco_clip_length,
                          video_clip_length=args.video_clip_length, min_fg_pixels=args.min_fg_pixels)
    roots = {"coco": args.coco, "davis": args.davis, "ytvos": args.ytvos}
    return train(model, stages, roots, args.output_dir, device, overrides, num_workers=args.workers,
                 resume=args.resume, bn_train=args.bn_train,
                 swap_attach_probability=0.0 if args.no_swap_attach else None,
                 ytvos_train_list=args.ytvos_train_list, ytvos_val_list=args.ytvos_val_list)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.test and args.davis is None and args.ytvos is None:
        raise UserError("--test needs --davis PATH and/or --ytvos PATH")
    ctx = init_distributed(pick_device(args.device))  # torchrun: this rank's device and group; else a no-op
    if args.test:
        with torch.no_grad():
            run_test(args, ctx.device, ctx)
    else:
        run_train(args, ctx.device)
    return 0


if __name__ == "__main__":
    run_cli(main)

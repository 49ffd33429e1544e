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

from common.inference import benchmark_sets
from common.inference.benchmark_sets import add_test_arguments, default_sets, run_parser
from common.runtime.device import pick_device, seed_everything
from common.runtime.distributed import DistContext, init_distributed
from common.runtime.errors import UserError, run_cli
from common.training.schedule import (Overrides, add_schedule_arguments, add_training_arguments,
                                      build_training_model, parse_stages)
from common.training.tbd_recipe import TBD_SCHEDULE, TBD_SCHEDULE_HELP, add_custom_split_arguments
from tbd.model import TBD

DEFAULT_WEIGHTS = {"davis": "tbd-davis", "ytvos": "tbd-ytvos"}
AMP_CHOICES = ("auto", "off", "encoder", "all")
SEED = 19971007  # the authors' seed in their other trainers; TBD's run.py itself does not seed


def build_parser() -> argparse.ArgumentParser:
    p = run_parser("python -m tbd.run", __doc__)
    t = add_test_arguments(
        p, weights_help="registry name (tbd-davis, tbd-ytvos) or checkpoint path, or 'seeded' "
                        "(a seeded initialisation, no download; the numbers are not the paper's) "
                        "(default: tbd-davis for DAVIS, tbd-ytvos for YouTube-VOS)",
        output=Path("outputs/tbd"),
        fast_help="batched inference: all objects of a frame at once, shared work done once per frame, "
                  "fp16 autocast and channels_last on CUDA (results agree up to float noise)")
    t.add_argument("--amp", choices=AMP_CHOICES, default="auto",
                   help="with --fast: which parts run under fp16 autocast on CUDA (auto = the encoder on CUDA, "
                        "nothing on CPU; 'all' adds the decoder: faster, but logits move by ~1e-3 relative)")
    r = p.add_argument_group("training")
    r.add_argument("--stages", default="coco,davis",
                   help="comma-separated stages in order: coco, davis, ytvos (default coco,davis as upstream)")
    add_custom_split_arguments(r)
    add_training_arguments(r, output_dir=Path("trained_model/tbd"), seed=SEED)
    add_schedule_arguments(r, **TBD_SCHEDULE_HELP)
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
    fast = fast_options(device, args.amp, args.compile) if args.fast else None
    roots = {"davis": args.davis, "ytvos": args.ytvos}
    return run_sets(args.sets or default_sets(roots), roots, args.weights,
                    args.output, device, resize=not args.no_resize, fast=fast, dist=dist)


def run_sets(sets: Sequence[str], roots: Dict[str, Optional[Path]], weights: Optional[str], output: Path,
             device: torch.device, resize: bool = True, overwrite: bool = False,
             models: Optional[Dict[str, torch.nn.Module]] = None, fast=None,
             dist: Optional[DistContext] = None) -> Dict[str, dict]:
    """Segment each test set (resuming finished videos), score the val sets, zip the server sets
    (`common.inference.benchmark_sets.run_sets`).

    Returns {set: {'fps', 'frames', J&F global row for scored sets, 'zip' for server sets}}. `models` maps a
    weights name to a ready model (e.g. seeded weights for the demo); others are loaded with common.hub.checkpoints.
    `fast` (a `tbd.fast.FastOptions`) switches to the fast inference path. With an enabled `dist` context each
    rank segments its share of the videos; rank 0 alone scores and zips (the others return fps/frames only).
    """
    from tbd.inference import segment_video

    ready = dict(models or {})

    def load(name_or_path: str) -> torch.nn.Module:
        if name_or_path in ready:
            model = ready[name_or_path]
        else:
            from common.hub.checkpoints import build_with_weights

            model = build_with_weights(TBD, name_or_path, device, paper="TBD")
        model = model.eval().to(device)
        if fast is None:
            return model
        from tbd.fast import FastTBD

        return FastTBD(model, fast)

    return benchmark_sets.run_sets(sets, roots, output, device, paper="TBD", weights=weights,
                               default_weights=DEFAULT_WEIGHTS, load_model=load,
                               segment=lambda model, video: segment_video(model, video, device, resize=resize),
                               fast=fast is not None, overwrite=overwrite, dist=dist)


def run_train(args, device: torch.device) -> List[Path]:
    from tbd.train import train

    stages = parse_stages(args.stages, TBD_SCHEDULE)
    seed_everything(args.seed)  # before the model is built, so the decoder's initialisation repeats
    model = build_training_model(TBD, args.init)
    roots = {"coco": args.coco, "davis": args.davis, "ytvos": args.ytvos}
    return train(model, stages, roots, args.output_dir, device, Overrides.from_args(args), num_workers=args.workers,
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

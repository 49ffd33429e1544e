"""EMVOS command line, mirroring the official `run.py --test` / `run.py --train`.

    python -m emvos.run --test --davis data/DAVIS [--ytvos data/YTVOS18] [--sets davis17-val ...]
                        [--weights emvos-coco_davis | PATH] [--output outputs/emvos] [--device cuda]
                        [--fast [--precision auto|fp32|bf16|fp16] [--compile]]
    torchrun --nproc_per_node=N -m emvos.run --test ...      (videos sharded over N processes; rank 0 scores)
    python -m emvos.run --train --coco data/COCO --davis data/DAVIS [--stages coco,davis] [--output-dir ...]
                        [--resume] [--epochs N --batch-size N --crop N ...]   (smaller sizes for smoke runs)

`--test` writes palette PNGs to `<output>/<SET>/<video>/<frame>.png` (finished videos are skipped on a rerun),
prints per-video and total fps, and for the val sets the J&F table (also saved as CSV in `<output>/<SET>/`).
test-dev and YouTube-VOS results are zipped for the challenge servers (`<output>/<SET>.zip`). `--fast` segments
all objects of a frame in one batched pass (encoder autocast on CUDA, channels_last; `--precision` and
`--compile` tune it, see `emvos.fast`); the default is the faithful, official order of operations.
Under torchrun every rank segments its share of the videos; rank 0 alone scores, zips and prints the tables.
`--train` runs the official two-stage recipe (see `emvos.train`).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

from common.data.output_folder import check_checkpoint_folder
from common.inference.benchmark_sets import add_test_arguments, default_sets, run_parser, run_sets
from common.inference.fast import fast_options_from_args
from common.runtime.device import pick_device, seed_everything
from common.runtime.errors import UserError, run_cli
from common.runtime.training_arguments import AUTHORS_SEED, add_schedule_arguments, add_training_arguments
from emvos import TITLE
from emvos.checkpoints import OFFICIAL_WEIGHTS

if TYPE_CHECKING:  # the model, torch and the trainer load after the arguments are parsed (`--help` answers at once)
    import torch

    from common.runtime.distributed import DistContext

SEED = AUTHORS_SEED  # EMVOS's official training seed (emvos.train.SEED, here without importing the trainer)

DEFAULT_WEIGHTS = {"davis": OFFICIAL_WEIGHTS, "ytvos": "emvos-coco_ytvos"}


def build_parser() -> argparse.ArgumentParser:
    p = run_parser("python -m emvos.run", __doc__)
    add_test_arguments(
        p, weights_help="registry name (emvos-coco_davis, emvos-coco_ytvos) or checkpoint path, or 'seeded' "
                        "(a seeded initialisation, no download; the numbers are not the paper's) "
                        "(default: emvos-coco_davis for DAVIS, emvos-coco_ytvos for YouTube-VOS)",
        output=Path("outputs/emvos"),
        fast_help="batched objects, shared matching, autocast on CUDA, channels_last (results agree with the "
                  "default faithful mode within noise; see emvos.fast)")
    r = p.add_argument_group("training")
    r.add_argument("--stages", default="coco,davis",
                   help="comma-separated stages in order: coco, davis, ytvos (default coco,davis as upstream)")
    add_training_arguments(r, output_dir=Path("trained_model/emvos"), seed=SEED,
                           seed_help="seed set before the model is built (official)")
    add_schedule_arguments(r, epochs="epochs per stage (official 8000 / 4000 / 8000)",
                           val_step="DAVIS 2017 val J&F every N epochs")
    return p


def run_test(args, device: torch.device, dist: Optional[DistContext] = None) -> Dict[str, dict]:
    """Segment, then score or zip each set; under torchrun (`dist` enabled) each rank segments its share of
    the videos and only rank 0 scores and zips (after run_videos' barrier)."""
    from emvos.inference import load_segmenter, segment_video

    fast = fast_options_from_args(args)
    roots = {"davis": args.davis, "ytvos": args.ytvos}
    return run_sets(args.sets or default_sets(roots), roots, args.output, device, title=TITLE,
                    weights=args.weights, default_weights=DEFAULT_WEIGHTS,
                    load_model=lambda name: load_segmenter(name, device, fast),
                    segment=lambda model, video: segment_video(model, video, resize=not args.no_resize),
                    fast=fast is not None, dist=dist)


def run_train(args, device: torch.device) -> List[Path]:
    from common.training.schedule import Overrides, build_training_model, check_resume, parse_stages, start_init
    from emvos.model import EMVOS
    from emvos.train import OFFICIAL, train

    stages = parse_stages(args.stages, OFFICIAL)
    check_resume(args.output_dir, stages, args.resume)  # before any ImageNet download
    seed_everything(args.seed)  # before the model is built, as upstream
    model = build_training_model(EMVOS, start_init(args.init, args.output_dir, stages, args.resume))
    roots = {"coco": args.coco, "davis": args.davis, "ytvos": args.ytvos, "davis_val": args.davis}
    return train(model, stages, roots, args.output_dir, device, Overrides.from_args(args), num_workers=args.workers,
                 resume=args.resume, bn_train=args.bn_train,
                 swap_attach_probability=0.0 if args.no_swap_attach else None)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.train:
        check_checkpoint_folder(args.output_dir)
    device = pick_device(args.device)
    if args.test:
        if args.davis is None and args.ytvos is None:
            raise UserError("--test needs --davis PATH and/or --ytvos PATH")
        import torch

        from common.runtime.distributed import init_distributed

        ctx = init_distributed(device)  # torchrun: this rank's device and share of the videos; else a no-op
        with torch.no_grad():
            run_test(args, ctx.device, dist=ctx)
    else:
        run_train(args, device)
    return 0


if __name__ == "__main__":
    run_cli(main)

"""TBD command line, mirroring the official `run.py --test` / `run.py --train`.

    python -m tbd.run --test --davis data/DAVIS [--ytvos data/YTVOS18] [--sets davis17-val ...]
                      [--weights tbd-davis | PATH] [--output outputs/tbd] [--device cuda]
                      [--fast [--precision auto|fp32|bf16|fp16] [--autocast-decoder] [--compile]]
    torchrun --nproc_per_node=N -m tbd.run --test ...     (videos sharded over N processes; rank 0 scores)
    python -m tbd.run --train --coco data/COCO --davis data/DAVIS [--stages coco,davis] [--output-dir ...]
                      [--ytvos data/YTVOS18 --ytvos-train-list cho_train.txt --ytvos-val-list cho_val.txt]
                      [--resume] [--epochs N --batch-size N --crop N ...]   (smaller sizes for smoke runs)

`--test` writes palette PNGs to `<output>/<SET>/<video>/<frame>.png` (finished videos are skipped on a
rerun), prints per-video and total fps, and for the val sets the J&F table (also saved as CSV beside the
masks, in `<output>/<SET>/`). test-dev and YouTube-VOS results are zipped for the challenge servers
(`<output>/<SET>.zip`). `--fast` runs the batched, mixed-precision inference of `tbd.fast` (same weights;
results agree up to float noise); `--autocast-decoder` puts its decoder under the `--precision` autocast too.
Under torchrun every rank segments its share of the videos and rank 0 alone scores and zips them. `--train`
runs the official recipe (`tbd.train`); under torchrun it trains with DistributedDataParallel (common.training).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Sequence

from common.data.output_folder import check_checkpoint_folder
from common.inference.benchmark_sets import add_test_arguments, default_sets, run_parser, run_sets
from common.inference.fast import FastOptions, fast_options_from_args
from common.runtime.device import pick_device, seed_everything
from common.runtime.errors import UserError, run_cli
from common.runtime.training_arguments import (TBD_SCHEDULE_HELP, add_custom_split_arguments, add_schedule_arguments,
                                               add_training_arguments)
from tbd import TITLE
from tbd.checkpoints import OFFICIAL_WEIGHTS

if TYPE_CHECKING:  # the model, torch and the trainer load after the arguments are parsed (`--help` answers at once)
    import torch

    from common.runtime.distributed import DistContext

DEFAULT_WEIGHTS = {"davis": OFFICIAL_WEIGHTS, "ytvos": "tbd-ytvos"}
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
    t.add_argument("--autocast-decoder", action="store_true",
                   help="with --fast: the decoder too under the --precision autocast (faster, but its logits "
                        "move by ~1e-3 relative; no effect without autocast, e.g. auto on the CPU)")
    r = p.add_argument_group("training")
    r.add_argument("--stages", default="coco,davis",
                   help="comma-separated stages in order: coco, davis, ytvos (default coco,davis as upstream)")
    add_custom_split_arguments(r)
    add_training_arguments(r, output_dir=Path("trained_model/tbd"), seed=SEED)
    add_schedule_arguments(r, **TBD_SCHEDULE_HELP)
    return p


def run_test(args, device: torch.device, dist: Optional[DistContext] = None) -> Dict[str, dict]:
    fast = fast_options_from_args(args)
    if args.autocast_decoder and fast is None:
        raise UserError("--autocast-decoder applies to fast mode only; add --fast")
    roots = {"davis": args.davis, "ytvos": args.ytvos}
    return run_test_sets(args.sets or default_sets(roots), roots, args.output, device, weights=args.weights,
                         fast=fast, autocast_decoder=args.autocast_decoder, resize=not args.no_resize, dist=dist)


def run_test_sets(sets: Sequence[str], roots: Mapping[str, Optional[Path]], output: Path, device: torch.device, *,
                  weights: Optional[str] = None, fast: Optional[FastOptions] = None, autocast_decoder: bool = False,
                  resize: bool = True, dist: Optional[DistContext] = None) -> Dict[str, dict]:
    """`common.inference.benchmark_sets.run_sets` with TBD: segment each set (resuming finished videos), score
    the val sets, zip the server sets. `weights` None: `DEFAULT_WEIGHTS` of each set's dataset; `fast`: the
    `FastTBD` options (None: the faithful model)."""
    from tbd.inference import load_segmenter, segment_video

    return run_sets(sets, roots, output, device, title=TITLE, weights=weights, default_weights=DEFAULT_WEIGHTS,
                    load_model=lambda name: load_segmenter(name, device, fast, autocast_decoder=autocast_decoder),
                    segment=lambda model, video: segment_video(model, video, resize=resize),
                    fast=fast is not None, dist=dist)


def run_train(args, device: torch.device) -> List[Path]:
    from common.training.schedule import Overrides, build_training_model, check_resume, parse_stages, start_init
    from common.training.tbd_recipe import TBD_SCHEDULE
    from tbd.model import TBD
    from tbd.train import train

    stages = parse_stages(args.stages, TBD_SCHEDULE)
    check_resume(args.output_dir, stages, args.resume)  # before any ImageNet download
    seed_everything(args.seed)  # before the model is built, so the decoder's initialisation repeats
    model = build_training_model(TBD, start_init(args.init, args.output_dir, stages, args.resume))
    roots = {"coco": args.coco, "davis": args.davis, "ytvos": args.ytvos}
    return train(model, stages, roots, args.output_dir, device, Overrides.from_args(args), num_workers=args.workers,
                 resume=args.resume, bn_train=args.bn_train,
                 swap_attach_probability=0.0 if args.no_swap_attach else None,
                 ytvos_train_list=args.ytvos_train_list, ytvos_val_list=args.ytvos_val_list)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.test and args.davis is None and args.ytvos is None:
        raise UserError("--test needs --davis PATH and/or --ytvos PATH")
    if args.train:
        check_checkpoint_folder(args.output_dir)
    import torch

    from common.runtime.distributed import init_distributed

    ctx = init_distributed(pick_device(args.device))  # torchrun: this rank's device and group; else a no-op
    if args.test:
        with torch.no_grad():
            run_test(args, ctx.device, ctx)
    else:
        run_train(args, ctx.device)
    return 0


if __name__ == "__main__":
    run_cli(main)

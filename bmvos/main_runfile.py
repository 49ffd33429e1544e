"""Run BMVOS on a benchmark: palette PNGs, fps, and J&F where the ground truth is public.

    python -m bmvos.main_runfile --model davis --dataset DAVIS17_val
    python -m bmvos.main_runfile --dataset DAVIS16_val,DAVIS17_val --davis data/DAVIS --device cuda
    python -m bmvos.main_runfile --model ytvos --dataset YTVOS18_val --ytvos data/YTVOS18
    python -m bmvos.main_runfile --dataset DAVIS17_val --device cuda --fast [--precision bf16] [--compile]
    torchrun --nproc_per_node=N -m bmvos.main_runfile --dataset YTVOS18_val ...   (videos sharded over N ranks)
    python -m bmvos.main_runfile --train ...          (training; see `python -m bmvos.train --help`)

Results go to OUTPUT/<set>/<video>/<frame>.png (<set>: davis16-val, davis17-val, davis17-test-dev,
ytvos18-valid) for exactly the frames the benchmark scores. DAVIS val sets are scored in-process (tables and
CSVs beside the masks, as davis2017-evaluation writes them); DAVIS 2017 test-dev and YouTube-VOS are scored
by their servers, so a submission zip OUTPUT/<set>.zip is written. `--fast` segments all objects of a frame
in one batched pass (autocast on CUDA, channels_last; see bmvos/fast.py); masks agree with the default,
faithful mode within noise. Finished videos are skipped when rerun (resume). Defaults come from
bmvos/local_config.py, overridden by environment variables (BMVOS_DAVIS_ROOT, BMVOS_YTVOS_ROOT, BMVOS_OUTPUT,
BMVOS_WEIGHTS) and then flags.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from bmvos import TITLE, local_config
from common.inference.benchmark_sets import run_sets
from common.inference.fast import add_fast_arguments, fast_options_from_args
from common.runtime.device import add_device_argument, pick_device
from common.runtime.errors import UserError, run_cli

# --dataset names (the official run.py's) -> `common.inference.benchmark_sets.BENCHMARK_SETS` names
DATASET_SETS: Dict[str, str] = {"DAVIS16_val": "davis16-val", "DAVIS17_val": "davis17-val",
                                "DAVIS17_test-dev": "davis17-test-dev", "YTVOS18_val": "ytvos18-valid"}
MODELS: Dict[str, str] = {"davis": "bmvos-davis", "ytvos": "bmvos-ytvos"}  # --model -> checkpoint registry name


def parse_datasets(text: str) -> List[str]:
    """`--dataset`'s comma-separated names -> their benchmark set names."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in DATASET_SETS]
    if unknown or not names:
        raise UserError(f"unknown dataset {unknown[0] if unknown else text!r}; choose from "
                        f"{', '.join(DATASET_SETS)} (comma-separate several)")
    return [DATASET_SETS[n] for n in names]


def default_weights(model: Optional[str]) -> Dict[str, str]:
    """The official checkpoint of each dataset family: `--model`'s for both, else each family's own."""
    if model is None:
        return dict(MODELS)
    if model not in MODELS:
        raise UserError(f"unknown model {model!r}; choose from {', '.join(MODELS)} "
                        f"(or pass a checkpoint file with --weights)")
    return {family: MODELS[model] for family in MODELS}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bmvos.main_runfile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None,
                        help=f"official weights: {' or '.join(MODELS)} (default: ytvos for YTVOS18_val, else davis)")
    parser.add_argument("--dataset", default="DAVIS17_val",
                        help=f"one or more (comma-separated) of {', '.join(DATASET_SETS)} (default: DAVIS17_val)")
    parser.add_argument("--davis", type=Path, default=None,
                        help=f"DAVIS 2017 root (default: $BMVOS_DAVIS_ROOT or {local_config.DAVIS_ROOT})")
    parser.add_argument("--ytvos", type=Path, default=None,
                        help=f"YouTube-VOS 2018 root (default: $BMVOS_YTVOS_ROOT or {local_config.YTVOS_ROOT})")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"results folder (default: $BMVOS_OUTPUT or {local_config.OUTPUT_DIR})")
    parser.add_argument("--weights", default=None,
                        help="checkpoint file instead of the official weights of --model, or 'seeded' for a seeded "
                             "initialisation that needs no download (the numbers are then not the paper's; "
                             "default: $BMVOS_WEIGHTS)")
    parser.add_argument("--native-size", action="store_true",
                        help="skip the official evaluator's resize to a 480-pixel short side")
    parser.add_argument("--overwrite", action="store_true", help="redo finished videos instead of skipping them")
    add_fast_arguments(parser, fast_help="fast mode: objects batched, autocast on CUDA, channels_last (agrees "
                                         "with the default faithful mode within noise)")
    parser.add_argument("--eval-workers", type=int, default=None,
                        help="processes scoring J&F (default: one per CPU core, at most 8; 1 = in-process)")
    add_device_argument(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--train" in argv:
        from bmvos import train
        argv.remove("--train")
        return train.main(argv)

    args = build_parser().parse_args(argv)
    sets = parse_datasets(args.dataset)
    fast = fast_options_from_args(args)
    weights_of = default_weights(args.model)
    roots = {"davis": args.davis or local_config.path_setting("DAVIS_ROOT"),
             "ytvos": args.ytvos or local_config.path_setting("YTVOS_ROOT")}
    output = args.output or local_config.path_setting("OUTPUT_DIR")
    env_weights = local_config.path_setting("WEIGHTS")
    weights = args.weights or (str(env_weights) if env_weights else None)

    # the model and torch load after the arguments are parsed, so that `--help` and a mistyped flag answer at once
    from bmvos.inference import load_segmenter, segment_video
    from common.runtime.distributed import init_distributed

    ctx = init_distributed(pick_device(args.device))  # torchrun: this rank's GPU and video share; else a no-op
    resize = not args.native_size
    # run_sets checks every set's layout and the output folder before any weights load
    run_sets(sets, roots, output, ctx.device, title=TITLE, weights=weights, default_weights=weights_of,
             load_model=lambda name: load_segmenter(name, ctx.device, fast),
             segment=lambda model, video: segment_video(model, video, resize=resize), fast=fast is not None,
             overwrite=args.overwrite, dist=ctx, eval_workers=args.eval_workers)
    return 0


if __name__ == "__main__":
    run_cli(main)

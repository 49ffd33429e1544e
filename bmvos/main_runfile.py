"""Run BMVOS on a benchmark: palette PNGs, fps, and J&F where the ground truth is public.

    python -m bmvos.main_runfile --model davis --dataset DAVIS17_val
    python -m bmvos.main_runfile --dataset DAVIS16_val,DAVIS17_val --davis data/DAVIS --device cuda
    python -m bmvos.main_runfile --model ytvos --dataset YTVOS18_val --ytvos data/YTVOS18
    python -m bmvos.main_runfile --dataset DAVIS17_val --device cuda --fast [--compile]
    torchrun --nproc_per_node=N -m bmvos.main_runfile --dataset YTVOS18_val ...   (videos sharded over N ranks)
    python -m bmvos.main_runfile --train ...          (training; see `python -m bmvos.train --help`)

Results go to OUTPUT/<dataset>/<video>/<frame>.png for exactly the frames the benchmark scores.
DAVIS val sets are scored in-process (tables and CSVs as davis2017-evaluation writes them);
DAVIS 2017 test-dev and YouTube-VOS are scored by their servers, so a submission zip is written.
`--fast` segments all objects of a frame in one batched pass (autocast on CUDA, channels_last; see
`FastBMVOS` in bmvos/model.py); masks agree with the default, faithful mode within noise.
Finished videos are skipped when rerun (resume). Defaults come from bmvos/local_config.py, overridden by
environment variables (BMVOS_DAVIS_ROOT, BMVOS_YTVOS_ROOT, BMVOS_OUTPUT, BMVOS_WEIGHTS) and then flags.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import torch

from bmvos import local_config
from bmvos.inference import SHORT_SIDE, make_segmenter
from bmvos.model import BMVOS, FastBMVOS
from common.data.datasets import DAVIS, Video, YouTubeVOS
from common.runtime.device import add_device_argument, pick_device
from common.runtime.distributed import DistContext, init_distributed
from common.runtime.errors import UserError, run_cli
from common.evaluation.evaluate import EvalResult, evaluate
from common.data.output_folder import check_output_folder
from common.inference.runner import run_videos, zip_submission
from common.hub.checkpoints import SEEDED, build_with_weights, is_seeded, load_into, load_state_dict


@dataclass(frozen=True)
class Benchmark:
    folder: str          # <output>/<folder>: the set's name, the result-folder scheme all five papers share
    family: str          # 'davis' or 'ytvos': which root it reads
    year: int
    split: str
    local_scoring: bool  # ground truth public -> J&F here; otherwise a submission zip for the server
    server: str = ""


DATASETS: Dict[str, Benchmark] = {
    "DAVIS16_val": Benchmark("davis16-val", "davis", 2016, "val", True),
    "DAVIS17_val": Benchmark("davis17-val", "davis", 2017, "val", True),
    "DAVIS17_test-dev": Benchmark("davis17-test-dev", "davis", 2017, "test-dev", False,
                                  "the DAVIS 2017 test-dev server (https://codalab.lisn.upsaclay.fr)"),
    "YTVOS18_val": Benchmark("ytvos18-valid", "ytvos", 2018, "valid", False,
                             "the YouTube-VOS 2018 server (https://codalab.lisn.upsaclay.fr)"),
}
MODELS: Dict[str, str] = {"davis": "bmvos-davis", "ytvos": "bmvos-ytvos"}  # --model -> common.hub.checkpoints name


def parse_datasets(text: str) -> List[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in DATASETS]
    if unknown or not names:
        raise UserError(f"unknown dataset {unknown[0] if unknown else text!r}; choose from "
                        f"{', '.join(DATASETS)} (comma-separate several)")
    return names


def check_model_name(name: str) -> str:
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; choose from {', '.join(MODELS)} "
                        f"(or pass a checkpoint file with --weights)")
    return name


def load_videos(bench: Benchmark, davis_root: Path, ytvos_root: Path) -> List[Video]:
    """The benchmark's videos; the loaders check the whole layout first and name what is missing."""
    if bench.family == "davis":
        return DAVIS(davis_root, bench.year, bench.split).videos()
    return YouTubeVOS(ytvos_root, bench.year, bench.split).videos()


def build_model(model_name: str, weights: Optional[Path], device: torch.device) -> BMVOS:
    """BMVOS with the official checkpoint of `model_name` (fetched if needed), the file `weights`, or the
    seeded initialisation (`weights` = `seeded`)."""
    if is_seeded(weights):
        return build_with_weights(BMVOS, SEEDED, device, paper="BMVOS")
    model = BMVOS()
    source = str(weights) if weights is not None else MODELS[model_name]
    state = load_state_dict(source)
    load_into(model, state)
    print(f"weights: {getattr(state, 'source', source)}")
    return model.to(device).eval()


def run_benchmark(model: Union[BMVOS, FastBMVOS], name: str, davis_root: Path, ytvos_root: Path, output: Path,
                  device: torch.device, short_side: Optional[int] = SHORT_SIDE,
                  eval_workers: Optional[int] = None, overwrite: bool = False,
                  dist: Optional[DistContext] = None) -> Optional[EvalResult]:
    """Segment every video of `name` into output/<set folder>/; score it or pack the submission zip.

    Under torchrun (`dist` enabled) each rank segments its share of the videos; rank 0 alone scores or zips
    the merged folder (after run_videos' barrier) and returns the result, the other ranks return None."""
    bench = DATASETS[name]
    videos = load_videos(bench, davis_root, ytvos_root)
    results = output / bench.folder
    stats = run_videos(videos, make_segmenter(model, short_side), results, device=device, desc=f"BMVOS {name}",
                       overwrite=overwrite, dist=dist)
    print(f"{name}: {stats.summary()}")
    if dist is not None and not dist.is_main:
        return None
    if bench.local_scoring:
        result = evaluate(davis_root, results, split=bench.split, year=bench.year, workers=eval_workers)
        print(result.format_table())
        csvs = result.write_csvs(results)
        print(f"{name}: J&F-Mean {result.global_row['J&F-Mean']:.4f}; tables in {csvs[0].parent}")
        return result
    layout = "youtube" if bench.family == "ytvos" else "davis"
    archive = zip_submission(results, output / f"{bench.folder}.zip", layout=layout)
    print(f"{name}: no public ground truth; upload the submission {archive} to {bench.server}")
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bmvos.main_runfile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None,
                        help=f"official weights: {' or '.join(MODELS)} (default: ytvos for YTVOS18_val, else davis)")
    parser.add_argument("--dataset", default="DAVIS17_val",
                        help=f"one or more (comma-separated) of {', '.join(DATASETS)} (default: DAVIS17_val)")
    parser.add_argument("--davis", type=Path, default=None,
                        help=f"DAVIS 2017 root (default: $BMVOS_DAVIS_ROOT or {local_config.DAVIS_ROOT})")
    parser.add_argument("--ytvos", type=Path, default=None,
                        help=f"YouTube-VOS 2018 root (default: $BMVOS_YTVOS_ROOT or {local_config.YTVOS_ROOT})")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"results folder (default: $BMVOS_OUTPUT or {local_config.OUTPUT_DIR})")
    parser.add_argument("--weights", type=Path, default=None,
                        help="checkpoint file instead of the official weights of --model, or 'seeded' for a seeded "
                             "initialisation that needs no download (the numbers are then not the paper's; "
                             "default: $BMVOS_WEIGHTS)")
    parser.add_argument("--native-size", action="store_true",
                        help="skip the official evaluator's resize to a 480-pixel short side")
    parser.add_argument("--overwrite", action="store_true", help="redo finished videos instead of skipping them")
    parser.add_argument("--fast", action="store_true",
                        help="fast mode: objects batched, autocast on CUDA, channels_last (agrees with the default "
                             "faithful mode within noise)")
    parser.add_argument("--compile", action="store_true", help="with --fast: torch.compile the network's stages")
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
    names = parse_datasets(args.dataset)
    if args.compile and not args.fast:
        raise UserError("--compile applies to fast mode; add --fast")
    model_name = check_model_name(args.model or ("ytvos" if names == ["YTVOS18_val"] else "davis"))
    davis_root = args.davis or local_config.path_setting("DAVIS_ROOT")
    ytvos_root = args.ytvos or local_config.path_setting("YTVOS_ROOT")
    output = args.output or local_config.path_setting("OUTPUT_DIR")
    weights = args.weights or local_config.path_setting("WEIGHTS")

    # check every dataset's layout and the output folder before loading weights or writing anything
    for name in names:
        load_videos(DATASETS[name], davis_root, ytvos_root)
    check_output_folder(output)
    device = pick_device(args.device)
    ctx = init_distributed(device)  # torchrun: this rank's GPU and its share of the videos; else a no-op
    device = ctx.device
    model = build_model(model_name, weights, device)
    if args.fast:
        model = FastBMVOS(model, compile=args.compile)
    for name in names:
        run_benchmark(model, name, davis_root, ytvos_root, output, device,
                      None if args.native_size else SHORT_SIDE, args.eval_workers, args.overwrite, dist=ctx)
    return 0


if __name__ == "__main__":
    run_cli(main)

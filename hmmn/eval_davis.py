"""Test HMMN on DAVIS 2016/2017 (and YouTube-VOS 2018/2019), as upstream's eval_DAVIS.py.

    python -m hmmn.eval_davis -g 0 -s val -y 17 -D path/to/DAVIS          # DAVIS 2017 val, multi-object
    python -m hmmn.eval_davis -g 0 -s val -y 16 -D path/to/DAVIS          # DAVIS 2016 val, single-object
    python -m hmmn.eval_davis -s test-dev -y 17 -D path/to/DAVIS          # PNGs + zip for the server
    python -m hmmn.eval_davis -s valid -y 18 -D path/to/YouTubeVOS2018    # YouTube-VOS submission

Writes palette PNGs to `--output/<sequence>/<frame>.png` (default `outputs/hmmn/<set>`, e.g.
`outputs/hmmn/davis17-val`, the result-folder scheme of all five papers), resuming after finished sequences, prints fps and peak memory per sequence, then scores J&F
in-process for train/val and prints the table (CSVs go next to the PNGs). `-viz` also writes overlay
frames and an mp4 per sequence under `viz/<run>/`. DAVIS 2016 runs on binarised masks with one
object; `-y 18|19` reads a YouTube-VOS root (valid/, valid_all_frames/) and writes
`<output>/Annotations/...` plus `<output>/submission.zip`.

`--fast` runs hmmn.fast (same results up to noise, J&F within 0.1; faster, see hmmn/README.md);
`--compile` adds torch.compile to it. Under `torchrun --nproc_per_node=N -m hmmn.eval_davis ...`
each rank segments its share of the sequences and rank 0 scores / zips the merged folder.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from common.data.datasets import DAVIS, Video, YouTubeVOS
from common.runtime.device import add_device_argument, peak_memory_mib, pick_device, reset_peak_memory
from common.runtime.distributed import DistContext, init_distributed
from common.runtime.errors import UserError, run_cli
from common.evaluation.evaluate import EvalResult, evaluate
from common.data.output_folder import check_output_folder
from common.data.palette import read_label_png
from common.inference.runner import RunStats, expected_files, run_videos, zip_submission
from hmmn.fast import PRECISIONS, FastHMMN
from hmmn.inference import LazyFrames, davis_segmenter, load_model, ytvos_segmenter
from hmmn.viz import save_visualization

MODEL = "HMMN"
OUTPUT_ROOT = Path("outputs/hmmn")
DAVIS_YEARS = (16, 17)
YTVOS_YEARS = (18, 19)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hmmn.eval_davis", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-g", type=str, default=None,
                        help="GPU ids as upstream (0; 0,1; ...): sets CUDA_VISIBLE_DEVICES; one GPU is used")
    parser.add_argument("-s", type=str, required=True, help="set: val, train or test-dev (YouTube-VOS: valid)")
    parser.add_argument("-y", type=int, required=True, help="year: 16 or 17 (DAVIS), 18 or 19 (YouTube-VOS)")
    parser.add_argument("-viz", action="store_true", help="also save overlay frames and an mp4 per sequence")
    parser.add_argument("-D", type=str, default="/local/DATA", help="dataset root (default: /local/DATA)")
    parser.add_argument("--weights", default="hmmn",
                        help="checkpoint file or registry name (default: hmmn, the official HMMN_weights.pth, "
                             "downloaded into the weights cache if missing), or 'seeded' for a seeded "
                             "initialisation (no download; the numbers are not the paper's)")
    parser.add_argument("--output", type=Path, default=None,
                        help="results folder (default: outputs/hmmn/<set>, e.g. outputs/hmmn/davis17-val)")
    parser.add_argument("--viz-dir", type=Path, default=None, help="-viz folder (default: viz/<run name>)")
    parser.add_argument("--mem-every", type=int, default=5,
                        help="keep every N-th frame in the /16 memory (default: 5, as upstream)")
    parser.add_argument("--overwrite", action="store_true", help="redo sequences that are already finished")
    parser.add_argument("--fast", action="store_true",
                        help="fast inference (hmmn.fast): shared per-frame work, channels_last, chunked "
                             "matching; results equal up to noise (J&F within 0.1)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="--fast convolution precision (default fp32; bf16/fp16 autocast is faster on "
                             "GPUs but not verified to keep J&F within 0.1)")
    parser.add_argument("--compile", action="store_true", help="--fast: torch.compile encoders and decoder")
    add_device_argument(parser)
    return parser


def run_name(year: int, split: str) -> str:
    dataset = "DAVIS" if year in DAVIS_YEARS else "YTVOS"
    return f"{MODEL}_{dataset}_{year}{split}"


def set_name(year: int, split: str) -> str:
    """The result folder's name in the scheme all five papers share (davis17-val, davis17-test-dev, ytvos18-valid)."""
    return f"ytvos{year}-valid" if year in YTVOS_YEARS else f"davis{year}-{split}"


def load_dataset(year: int, split: str, root: str):
    if year in YTVOS_YEARS and split not in ("valid", "val"):
        raise UserError(f"YouTube-VOS has only the 'valid' set for testing, got -s {split}")
    if year in DAVIS_YEARS:
        return DAVIS(root, year=2000 + year, split=split)
    if year in YTVOS_YEARS:
        return YouTubeVOS(root, year=2000 + year, split=split)
    raise UserError(f"-y must be 16 or 17 (DAVIS) or 18 or 19 (YouTube-VOS), got {year}")


def with_memory_report(segment, device: torch.device):
    """Print upstream's per-sequence line and the peak memory of each sequence."""

    def wrapped(video: Video) -> Dict[int, np.ndarray]:
        reset_peak_memory(device)
        labels = segment(video)
        objects = len({int(i) for m in video.load_given_masks().values() for i in np.unique(m)} - {0})
        tqdm.write(f"[{video.name}]: num_frames: {len(video)}, num_objects: {objects}, "
                   f"peak memory: {peak_memory_mib(device):.0f} MiB ({'GPU' if device.type == 'cuda' else 'RSS'})")
        return labels

    return wrapped


def visualize(videos: Sequence[Video], results: Path, viz_dir: Path) -> None:
    for video in tqdm(videos, desc="viz", unit="video"):
        frames = LazyFrames(video)
        labels = {i: read_label_png(results / video.name / name) for i, name in
                  zip(video.scored_frames, expected_files(video))}
        path = save_visualization(frames, labels, viz_dir / video.name, viz_dir / f"{video.name}.mp4")
        tqdm.write(f"viz: {path}")


def run_split(model: torch.nn.Module, device: torch.device, year: int, split: str, root: str, output: Path, *,
               mem_every: int = 5, viz_dir: Optional[Path] = None, overwrite: bool = False,
               dataset=None, dist: Optional[DistContext] = None) -> Optional[EvalResult]:
    """Segment one benchmark split into `output`; J&F for train/val (None where a server scores it).

    With an enabled `dist` context each rank segments its shard; rank 0 alone visualises, scores or
    zips the merged folder (after run_videos' barrier) and the other ranks return None.
    """
    dataset = load_dataset(year, split, root) if dataset is None else dataset
    name = run_name(year, split)
    results = output / "Annotations" if year in YTVOS_YEARS else output
    print(f"{MODEL}: testing on {'DAVIS' if year in DAVIS_YEARS else 'YouTube-VOS'} 20{year} {split} "
          f"({len(dataset)} sequences), device {device}")
    make = davis_segmenter if year in DAVIS_YEARS else ytvos_segmenter
    segment = with_memory_report(make(model, device, mem_every), device)
    stats: RunStats = run_videos(dataset.videos(), segment, results, device=device, desc=name, overwrite=overwrite,
                                 dist=dist)
    if dist is not None and not dist.is_main:
        if stats.videos:
            print(f"speed [rank {dist.rank}]: {stats.summary()}")
        return None
    print(f"results: {results}")
    if viz_dir is not None:
        visualize(dataset.videos(), results, viz_dir)

    result = None
    if year in YTVOS_YEARS:
        print(f"submission: {zip_submission(results, output / 'submission.zip', layout='youtube')}")
    elif split == "test-dev":
        print(f"submission: {zip_submission(results, output / 'submission.zip', layout='davis')}")
    else:
        result = evaluate(root, results, split=split, year=2000 + year)
        result.write_csvs(results)
        print(result.format_table())
    if stats.videos:
        print(f"speed: {stats.summary()}")
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.g is not None and args.device is None:
        os.environ["CUDA_VISIBLE_DEVICES"] = args.g  # before CUDA is initialised, as upstream
    if args.mem_every < 1:
        raise UserError(f"--mem-every must be at least 1, got {args.mem_every}")
    dataset = load_dataset(args.y, args.s, args.D)  # check the data and the output folders before loading weights
    name = run_name(args.y, args.s)
    if (args.compile or args.precision != "fp32") and not args.fast:
        raise UserError("--compile and --precision apply to fast mode only; add --fast")
    output = args.output or OUTPUT_ROOT / set_name(args.y, args.s)
    viz_dir = (args.viz_dir or Path("viz") / name) if args.viz else None
    check_output_folder(output)
    if viz_dir is not None:
        check_output_folder(viz_dir, "--viz-dir")
    ctx = init_distributed(pick_device(args.device))  # torchrun: this rank's device and shard; else a no-op
    device = ctx.device
    print(f"loading weights: {args.weights}")
    model = load_model(args.weights, device)
    if args.fast:
        model = FastHMMN(model, args.precision, compile=args.compile)
        print(model.describe())
    if args.viz:
        print("--- producing mask-overlaid video outputs")
    run_split(model, device, args.y, args.s, args.D, output, mem_every=args.mem_every, viz_dir=viz_dir,
               overwrite=args.overwrite, dataset=dataset, dist=ctx)
    return 0


if __name__ == "__main__":
    run_cli(main)

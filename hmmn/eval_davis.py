"""Test HMMN on DAVIS 2016/2017 (and YouTube-VOS 2018/2019), as upstream's eval_DAVIS.py.

    python -m hmmn.eval_davis -g 0 -s val -y 17 -D path/to/DAVIS          # DAVIS 2017 val, multi-object
    python -m hmmn.eval_davis -g 0 -s val -y 16 -D path/to/DAVIS          # DAVIS 2016 val, single-object
    python -m hmmn.eval_davis -s test-dev -y 17 -D path/to/DAVIS          # PNGs + zip for the server
    python -m hmmn.eval_davis -s valid -y 18 -D path/to/YouTubeVOS2018    # YouTube-VOS submission

Writes palette PNGs to `--output/<sequence>/<frame>.png` (default `outputs/hmmn/<set>`, e.g.
`outputs/hmmn/davis17-val`, the result-folder scheme of all five papers), resuming after finished sequences,
prints fps and peak memory per sequence, then scores J&F in-process for train/val and prints the table (CSVs
go next to the PNGs). `-viz` also writes overlay frames and an mp4 per sequence under `viz/<run>/`. DAVIS
2016 runs on binarised masks with one object; `-y 18|19` reads a YouTube-VOS root (valid/,
valid_all_frames/) and writes `<output>/Annotations/...` plus `<output>/submission.zip`.

`--fast` runs hmmn.fast (same results up to noise, J&F within 0.1; faster, see hmmn/README.md); `--precision`
chooses its convolutions' autocast (auto = float32, the verified setting) and `--compile` adds torch.compile.
Under `torchrun --nproc_per_node=N -m hmmn.eval_davis ...` each rank segments its share of the sequences and
rank 0 scores / zips / visualises the merged folder. Segmenting, scoring and zipping are
`common.inference.benchmark_sets.run_sets`, as for the other papers.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Mapping, Optional, Sequence

import numpy as np
from tqdm import tqdm

from common.data.datasets import Video
from common.data.output_folder import check_output_folder
from common.data.palette import read_label_png
from common.inference.benchmark_sets import BENCHMARK_SETS, BenchmarkSet, SetLayout, load_dataset, run_sets
from common.inference.fast import FastOptions, add_fast_arguments, fast_options_from_args
from common.runtime.device import add_device_argument, device_of, peak_memory_mib, pick_device, reset_peak_memory
from common.runtime.errors import UserError, run_cli
from hmmn import TITLE
from hmmn.checkpoints import OFFICIAL_WEIGHTS

if TYPE_CHECKING:  # the model, torch and the runner load where they run: `--help` answers without them
    import torch

OUTPUT_ROOT = Path("outputs/hmmn")
DAVIS_YEARS = (16, 17)
YTVOS_YEARS = (18, 19)
OFFICIAL = {"davis": OFFICIAL_WEIGHTS, "ytvos": OFFICIAL_WEIGHTS}  # upstream tests both with HMMN_weights.pth


def hmmn_layout(set_folder: Callable[[Path, BenchmarkSet], Path]) -> SetLayout:
    """HMMN's files of a set inside its folder `set_folder(output, set)`: the masks (YouTube-VOS: under
    Annotations/, the layout of the server's archive), the J&F CSVs beside them and `submission.zip`.

    It differs from the shared layout because upstream's eval_DAVIS.py tests one set per run, so HMMN's
    `--output` names the set folder itself and everything of that run goes inside it."""

    def masks(output: Path, s: BenchmarkSet) -> Path:
        folder = set_folder(output, s)
        return folder / "Annotations" if s.family == "ytvos" else folder

    return SetLayout(results=masks, scores=masks, archive=lambda output, s: set_folder(output, s) / "submission.zip")


SET_FOLDER = hmmn_layout(lambda output, s: output)            # eval_davis: --output is the set folder
UNDER_ROOT = hmmn_layout(lambda output, s: output / s.folder)  # reproduce, demo: <output>/<set>/


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hmmn.eval_davis", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-g", type=str, default=None,
                        help="GPU ids as upstream (0; 0,1; ...): sets CUDA_VISIBLE_DEVICES; one GPU is used")
    parser.add_argument("-s", type=str, required=True, help="set: val, train or test-dev (YouTube-VOS: valid)")
    parser.add_argument("-y", type=int, required=True, help="year: 16 or 17 (DAVIS), 18 or 19 (YouTube-VOS)")
    parser.add_argument("-viz", action="store_true", help="also save overlay frames and an mp4 per sequence")
    parser.add_argument("-D", type=str, default="/local/DATA", help="dataset root (default: /local/DATA)")
    parser.add_argument("--weights", default=OFFICIAL_WEIGHTS,
                        help=f"checkpoint file or registry name (default: {OFFICIAL_WEIGHTS}, the official "
                             f"HMMN_weights.pth, downloaded into the weights cache if missing), or 'seeded' for a "
                             f"seeded initialisation (no download; the numbers are not the paper's)")
    parser.add_argument("--output", type=Path, default=None,
                        help="results folder (default: outputs/hmmn/<set>, e.g. outputs/hmmn/davis17-val)")
    parser.add_argument("--viz-dir", type=Path, default=None, help="-viz folder (default: viz/<run name>)")
    parser.add_argument("--mem-every", type=int, default=5,
                        help="keep every N-th frame in the /16 memory (default: 5, as upstream)")
    parser.add_argument("--overwrite", action="store_true", help="redo sequences that are already finished")
    add_fast_arguments(parser, fast_help="fast inference (hmmn.fast): shared per-frame work, channels_last, "
                                         "chunked matching; results equal up to noise (J&F within 0.1)")
    add_device_argument(parser)
    return parser


def run_name(year: int, split: str) -> str:
    """Upstream's name of a run (its -viz folder): HMMN_DAVIS_17val."""
    dataset = "DAVIS" if year in DAVIS_YEARS else "YTVOS"
    return f"{TITLE}_{dataset}_{year}{split}"


def set_name(year: int, split: str) -> str:
    """The benchmark set of `-y year -s split`: its result-folder name (davis17-val, ytvos18-valid, ...)."""
    if year in YTVOS_YEARS:
        if split not in ("valid", "val"):
            raise UserError(f"YouTube-VOS has only the 'valid' set for testing, got -s {split}")
        return f"ytvos{year}-valid"
    if year not in DAVIS_YEARS:
        raise UserError(f"-y must be 16 or 17 (DAVIS) or 18 or 19 (YouTube-VOS), got {year}")
    name = f"davis{year}-{split}"
    if name not in BENCHMARK_SETS:
        splits = [s.split for s in BENCHMARK_SETS.values() if s.family == "davis" and s.year == 2000 + year]
        raise UserError(f"DAVIS 20{year} has no set -s {split}; choose from {', '.join(splits)}")
    return name


def reporting(segment: Callable[[torch.nn.Module, Video], Dict[int, np.ndarray]]):
    """`segment` that also prints upstream's per-sequence line with the peak memory of each sequence."""

    def wrapped(model: torch.nn.Module, video: Video) -> Dict[int, np.ndarray]:
        device = device_of(model)
        reset_peak_memory(device)
        from hmmn.inference import object_ids

        labels = segment(model, video)
        objects = len(object_ids(video.load_given_masks()))
        tqdm.write(f"[{video.name}]: num_frames: {len(video)}, num_objects: {objects}, "
                   f"peak memory: {peak_memory_mib(device):.0f} MiB ({'GPU' if device.type == 'cuda' else 'RSS'})")
        return labels

    return wrapped


def hmmn_segment(mem_every: int):
    """run_sets' `segment(model, video)`: `segment_video` with `mem_every`, printing the per-sequence line."""
    from hmmn.inference import segment_video

    return reporting(lambda model, video: segment_video(model, video, mem_every=mem_every))


def model_loader(device: torch.device, fast: Optional[FastOptions]) -> Callable[[str], torch.nn.Module]:
    """run_sets' `load_model(name)`: the network on `device`, in fast mode when `fast` is given."""

    def load(name: str) -> torch.nn.Module:
        from hmmn.inference import load_segmenter

        print(f"loading weights: {name}")
        model = load_segmenter(name, device, fast)
        if fast is not None:
            print(model.describe())
        return model

    return load


def visualize(videos: Sequence[Video], results: Path, viz_dir: Path) -> None:
    from common.inference.runner import expected_files
    from hmmn.inference import LazyFrames
    from hmmn.viz import save_visualization

    for video in tqdm(videos, desc="viz", unit="video"):
        frames = LazyFrames(video)
        labels = {i: read_label_png(results / video.name / name) for i, name in
                  zip(video.scored_frames, expected_files(video))}
        path = save_visualization(frames, labels, viz_dir / video.name, viz_dir / f"{video.name}.mp4")
        tqdm.write(f"viz: {path}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.g is not None and args.device is None:
        os.environ["CUDA_VISIBLE_DEVICES"] = args.g  # before CUDA is initialised, as upstream
    if args.mem_every < 1:
        raise UserError(f"--mem-every must be at least 1, got {args.mem_every}")
    name = set_name(args.y, args.s)
    fast = fast_options_from_args(args)
    output = args.output or OUTPUT_ROOT / name
    viz_dir = (args.viz_dir or Path("viz") / run_name(args.y, args.s)) if args.viz else None
    if viz_dir is not None:
        check_output_folder(viz_dir, "--viz-dir")
    from common.runtime.distributed import init_distributed

    ctx = init_distributed(pick_device(args.device))  # torchrun: this rank's device and shard; else a no-op
    s = BENCHMARK_SETS[name]
    roots: Mapping[str, Optional[Path]] = {s.family: Path(args.D)}
    if args.viz:
        print("--- producing mask-overlaid video outputs")
    # run_sets checks the dataset and the output folder before the weights load
    summary = run_sets([name], roots, output, ctx.device, title=TITLE, weights=args.weights, default_weights=OFFICIAL,
                       load_model=model_loader(ctx.device, fast), segment=hmmn_segment(args.mem_every),
                       fast=fast is not None, overwrite=args.overwrite, dist=ctx, layout=SET_FOLDER)
    if viz_dir is not None and ctx.is_main:
        visualize(load_dataset(s, Path(args.D)).videos(), summary[name]["results"], viz_dir)
    return 0


if __name__ == "__main__":
    run_cli(main)

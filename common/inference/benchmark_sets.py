"""The `--test` half of the EMVOS and TBD command lines (both mirror the authors' `run.py --test`).

    parser = run_parser("python -m emvos.run", __doc__)          # --test | --train, --davis/--ytvos/--coco, --device
    add_test_arguments(parser, weights_help=..., output=Path("outputs/emvos"), fast_help=...)
    roots = {"davis": args.davis, "ytvos": args.ytvos}
    summary = run_sets(args.sets or default_sets(roots), roots, args.output, device, paper="EMVOS",
                       weights=args.weights, default_weights=..., load_model=load, segment=segment)

`BENCHMARK_SETS` names the sets and the folders upstream writes them to. `run_sets` segments each set
(finished videos are skipped on a rerun), scores the val sets in-process (J&F table printed, CSVs in
`<output>/<folder>_scores`) and zips the sets with hidden ground truth for their challenge servers.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence

import numpy as np
import torch

from common.data.datasets import Video
from common.runtime.device import add_device_argument
from common.runtime.distributed import DistContext
from common.runtime.errors import UserError
from common.data.output_folder import check_output_folder


class BenchmarkSet(NamedTuple):
    folder: str    # <output root>/<folder>: the set's name, the result-folder scheme all five papers share
    family: str    # 'davis' | 'ytvos': which dataset root it reads
    year: int
    split: str
    scored: bool   # public ground truth: J&F in-process; else a submission zip for the server


BENCHMARK_SETS: Dict[str, BenchmarkSet] = {
    "davis16-val": BenchmarkSet("davis16-val", "davis", 2016, "val", True),
    "davis17-val": BenchmarkSet("davis17-val", "davis", 2017, "val", True),
    "davis17-test-dev": BenchmarkSet("davis17-test-dev", "davis", 2017, "test-dev", False),
    "ytvos18-valid": BenchmarkSet("ytvos18-valid", "ytvos", 2018, "valid", False),
}

# segment(model, video) -> {frame index: uint8 [H, W] labels}
Segment = Callable[[torch.nn.Module, Video], Mapping[int, np.ndarray]]


def default_sets(roots: Mapping[str, Optional[Path]]) -> List[str]:
    """The sets to run when --sets is not given: those of the given roots whose sequence list is there.

    DAVIS 2017 test-dev is a separate download from trainval, so a DAVIS root without
    ImageSets/2017/test-dev.txt runs the val sets only (with a notice) instead of failing after them.
    A DAVIS root with none of the lists keeps davis17-val, whose loader then says what is missing.
    """
    sets, missing = [], []
    for name, s in BENCHMARK_SETS.items():
        root = roots.get(s.family)
        if root is None:
            continue
        if s.family == "davis" and not _davis_list(root, s).is_file():
            missing.append(name)
        else:
            sets.append(name)
    if roots.get("davis") is not None and not any(BENCHMARK_SETS[n].family == "davis" for n in sets):
        return ["davis17-val"] + sets
    for name in missing:
        print(f"notice: {name} skipped, {_davis_list(roots['davis'], BENCHMARK_SETS[name])} not found (request it "
              f"with --sets once it is there)", file=sys.stderr)
    return sets


def _davis_list(root: Path, s: BenchmarkSet) -> Path:
    return Path(root) / "ImageSets" / str(s.year) / f"{s.split}.txt"


def run_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """The head of a `--test | --train` command line: the mode, the dataset roots and --device."""
    p = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--test", action="store_true", help="segment the test sets with trained weights")
    mode.add_argument("--train", action="store_true", help="train with the official recipe")
    p.add_argument("--davis", type=Path, help="DAVIS 2017 root (JPEGImages/, Annotations/, ImageSets/)")
    p.add_argument("--ytvos", type=Path, help="YouTube-VOS 2018 root (valid/, valid_all_frames/ for --test; "
                                              "train/ for --train)")
    p.add_argument("--coco", type=Path, help="COCO root for pre-training (JPEGImages/*.jpg, Annotations/*.png)")
    add_device_argument(p)
    return p


def add_test_arguments(parser: argparse.ArgumentParser, *, weights_help: str, output: Path,
                       fast_help: str) -> argparse._ArgumentGroup:
    """The 'testing' group: --sets, --weights, --output, --no-resize, --fast, --compile. Returns the group
    so a paper can add its own fast-mode options."""
    t = parser.add_argument_group("testing")
    t.add_argument("--sets", nargs="+", choices=sorted(BENCHMARK_SETS),
                   help="test sets (default: the DAVIS sets whose ImageSets list is there, e.g. no test-dev in "
                        "a trainval download, plus ytvos18-valid when --ytvos is given)")
    t.add_argument("--weights", help=weights_help)
    t.add_argument("--output", type=Path, default=output, help="results folder")
    t.add_argument("--no-resize", action="store_true", help="run at the native size (skip the official 480p rule)")
    t.add_argument("--fast", action="store_true", help=fast_help)
    t.add_argument("--compile", action="store_true", help="with --fast: torch.compile the encoder and decoder")
    return t


def run_sets(sets: Sequence[str], roots: Mapping[str, Optional[Path]], output: Path, device: torch.device, *,
             paper: str, weights: Optional[str], default_weights: Mapping[str, str],
             load_model: Callable[[str], torch.nn.Module], segment: Segment, fast: bool = False,
             overwrite: bool = False, dist: Optional[DistContext] = None) -> Dict[str, dict]:
    """Segment each set (resuming finished videos), score the val sets, zip the server sets.

    `weights` (else `default_weights[family]`) is handed to `load_model` once per distinct name; the dataset
    layout is checked before that, so a wrong root fails before any download. `fast` only labels the
    progress line. With an enabled `dist` context each rank segments its share of the videos; rank 0 alone
    scores and zips (after run_videos' barrier), the others return fps/frames only.
    Returns {set: {'fps', 'frames', J&F global row for scored sets, 'zip' for server sets}}.
    """
    from common.data.datasets import DAVIS, YouTubeVOS
    from common.evaluation.evaluate import evaluate
    from common.inference.runner import run_videos, zip_submission

    is_main = dist is None or dist.is_main
    datasets = {}
    for name in sets:  # every set's layout, then the output folder, before any weights load or video runs
        _, family, year, split, _ = BENCHMARK_SETS[name]
        root = roots.get(family)
        if root is None:
            raise UserError(f"test set {name} needs --{family} PATH")
        datasets[name] = (DAVIS(root, year=year, split=split) if family == "davis"
                          else YouTubeVOS(root, year=year, split=split))
    check_output_folder(output)
    summary: Dict[str, dict] = {}
    models: Dict[str, torch.nn.Module] = {}
    for name in sets:
        folder, family, year, split, scored = BENCHMARK_SETS[name]
        root, dataset = roots[family], datasets[name]
        name_or_path = weights or default_weights[family]
        if name_or_path not in models:
            models[name_or_path] = load_model(name_or_path)
        model = models[name_or_path]
        out = Path(output) / folder
        videos = dataset.videos()
        if is_main:
            print(f"== {name}: {len(videos)} videos, weights {name_or_path}"
                  f"{' (fast mode)' if fast else ''} -> {out}"
                  f"{f' on {dist.world_size} processes' if dist is not None and dist.enabled else ''}")
        stats = run_videos(videos, lambda video: segment(model, video), out, device=device,
                           desc=f"{paper} {name}", overwrite=overwrite, dist=dist)
        summary[name] = {"fps": stats.fps, "frames": stats.total_frames}
        if not is_main:  # every rank's videos are written (run_videos' barrier)
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

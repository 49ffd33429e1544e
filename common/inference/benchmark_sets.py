"""Benchmark sets run end to end, once for all four semi-supervised papers: segment, then score or zip.

`run_sets` is what `bmvos.main_runfile`, `emvos.run --test`, `tbd.run --test` and `hmmn.eval_davis` all call,
each keeping its upstream-style flags; `run_parser` / `add_test_arguments` are the shared `--test` flags of the
two `run.py`-style command lines (EMVOS, TBD).

    parser = run_parser("python -m emvos.run", __doc__)          # --test | --train, --davis/--ytvos/--coco, --device
    add_test_arguments(parser, weights_help=..., output=Path("outputs/emvos"), fast_help=...)
    roots = {"davis": args.davis, "ytvos": args.ytvos}
    summary = run_sets(args.sets or default_sets(roots), roots, args.output, device, title="EMVOS",
                       weights=args.weights, default_weights=..., load_model=load, segment=segment)

`BENCHMARK_SETS` names the sets and their result folders. `run_sets` segments each set (finished videos are
skipped on a rerun), scores the val sets in-process (J&F table printed, CSVs written where `SetLayout` says:
beside the masks by default) and zips the sets with hidden ground truth for their challenge servers.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Union

import numpy as np

from common.data.datasets import DAVIS, Video, YouTubeVOS, check_video_files
from common.data.output_folder import check_output_folder
from common.inference.fast import add_fast_arguments
from common.runtime.device import add_device_argument
from common.runtime.errors import RESUMES_AFTER_VIDEOS, UserError, on_interrupt

if TYPE_CHECKING:  # the command lines build their parsers from here before torch is loaded (`--help`)
    import torch

    from common.runtime.distributed import DistContext


class BenchmarkSet(NamedTuple):
    folder: str    # <output root>/<folder>: the set's name, the result-folder scheme all five papers share
    family: str    # 'davis' | 'ytvos': which dataset root it reads
    year: int
    split: str
    scored: bool   # public ground truth: J&F in-process; else a submission zip for the server
    server: str = ""  # where the submission zip is uploaded


_CODALAB = "https://codalab.lisn.upsaclay.fr"
BENCHMARK_SETS: Dict[str, BenchmarkSet] = {
    "davis16-val": BenchmarkSet("davis16-val", "davis", 2016, "val", True),
    "davis17-val": BenchmarkSet("davis17-val", "davis", 2017, "val", True),
    "davis16-train": BenchmarkSet("davis16-train", "davis", 2016, "train", True),  # HMMN's upstream `-s train`
    "davis17-train": BenchmarkSet("davis17-train", "davis", 2017, "train", True),
    "davis17-test-dev": BenchmarkSet("davis17-test-dev", "davis", 2017, "test-dev", False,
                                     f"the DAVIS 2017 test-dev server ({_CODALAB})"),
    "ytvos18-valid": BenchmarkSet("ytvos18-valid", "ytvos", 2018, "valid", False,
                                  f"the YouTube-VOS 2018 server ({_CODALAB})"),
    "ytvos19-valid": BenchmarkSet("ytvos19-valid", "ytvos", 2019, "valid", False,
                                  f"the YouTube-VOS 2019 server ({_CODALAB})"),
}
DEFAULT_SETS = ("davis16-val", "davis17-val", "davis17-test-dev", "ytvos18-valid")  # what --sets runs when omitted

# segment(model, video) -> {frame index: uint8 [H, W] labels}
Segment = Callable[["torch.nn.Module", Video], Mapping[int, np.ndarray]]


def default_sets(roots: Mapping[str, Optional[Path]]) -> List[str]:
    """The sets to run when --sets is not given: those of the given roots whose sequence list is there.

    DAVIS 2017 test-dev is a separate download from trainval, so a DAVIS root without
    ImageSets/2017/test-dev.txt runs the val sets only (with a notice) instead of failing after them.
    A DAVIS root with none of the lists keeps davis17-val, whose loader then says what is missing.
    """
    sets, missing = [], []
    for name in DEFAULT_SETS:
        s = BENCHMARK_SETS[name]
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
    """The 'testing' group: --sets, --weights, --output, --no-resize, --fast, --precision, --compile. Returns the
    group so a paper can add its own options."""
    t = parser.add_argument_group("testing")
    t.add_argument("--sets", nargs="+", choices=sorted(DEFAULT_SETS),
                   help="test sets (default: the DAVIS sets whose ImageSets list is there, e.g. no test-dev in "
                        "a trainval download, plus ytvos18-valid when --ytvos is given)")
    t.add_argument("--weights", help=weights_help)
    t.add_argument("--output", type=Path, default=output, help="results folder")
    t.add_argument("--no-resize", action="store_true", help="run at the native size (skip the official 480p rule)")
    add_fast_arguments(t, fast_help=fast_help)
    return t


def load_dataset(s: BenchmarkSet, root: Path) -> Union[DAVIS, YouTubeVOS]:
    """The set's dataset; the loader checks the whole layout now and names what is missing."""
    return DAVIS(root, year=s.year, split=s.split) if s.family == "davis" else YouTubeVOS(root, year=s.year, split=s.split)


@dataclass(frozen=True)
class SetLayout:
    """Where a set's files go under the output folder, as functions of (output, set). The defaults are the scheme
    all five papers share: masks in `<output>/<set>/`, the J&F CSVs beside them (where davis2017-evaluation
    writes them), the server archive at `<output>/<set>.zip`. HMMN's upstream-style `--output` names the set
    folder itself, so its layout differs (see `hmmn.eval_davis`)."""

    results: Callable[[Path, BenchmarkSet], Path] = lambda output, s: output / s.folder
    scores: Callable[[Path, BenchmarkSet], Path] = lambda output, s: output / s.folder
    archive: Callable[[Path, BenchmarkSet], Path] = lambda output, s: output / f"{s.folder}.zip"


def run_sets(sets: Sequence[str], roots: Mapping[str, Optional[Path]], output: Path, device: torch.device, *,
             title: str, weights: Optional[str], default_weights: Mapping[str, str],
             load_model: Callable[[str], torch.nn.Module], segment: Segment, fast: bool = False,
             overwrite: bool = False, dist: Optional[DistContext] = None, layout: SetLayout = SetLayout(),
             eval_workers: Optional[int] = None) -> Dict[str, dict]:
    """Segment each set (resuming finished videos), score the val sets, zip the server sets.

    `weights` (else `default_weights[family]`) is handed to `load_model` once per distinct name; the dataset
    layout is checked before that, so a wrong root fails before any download. `fast` only labels the
    progress line. With an enabled `dist` context each rank segments its share of the videos; rank 0 alone
    scores and zips (after run_videos' barrier), the others return fps/frames only.
    Returns {set: {'fps', 'frames', 'results', J&F global row for scored sets, 'zip' for server sets}}.
    """
    from common.evaluation.evaluate import evaluate
    from common.inference.runner import run_videos, zip_submission

    is_main = dist is None or dist.is_main
    datasets = {}
    for name in sets:  # every set's layout, then the output folder, before any weights load or video runs
        s = BENCHMARK_SETS[name]
        root = roots.get(s.family)
        if root is None:
            raise UserError(f"test set {name} needs --{s.family} PATH")
        datasets[name] = load_dataset(s, root)
    for dataset in datasets.values():  # frames and given masks readable (cheaply), so no set stops halfway
        for video in dataset.videos():
            check_video_files(video)
    check_output_folder(output)
    on_interrupt(RESUMES_AFTER_VIDEOS)
    summary: Dict[str, dict] = {}
    models: Dict[str, torch.nn.Module] = {}
    for name in sets:
        s = BENCHMARK_SETS[name]
        root, dataset = roots[s.family], datasets[name]
        name_or_path = weights or default_weights[s.family]
        if name_or_path not in models:
            models[name_or_path] = load_model(name_or_path)
        model = models[name_or_path]
        out = layout.results(Path(output), s)
        videos = dataset.videos()
        if is_main:
            print(f"== {name}: {len(videos)} videos, weights {name_or_path}"
                  f"{' (fast mode)' if fast else ''} -> {out}"
                  f"{f' on {dist.world_size} processes' if dist is not None and dist.enabled else ''}")
        stats = run_videos(videos, lambda video: segment(model, video), out, device=device,
                           desc=f"{title} {name}", overwrite=overwrite, dist=dist)
        summary[name] = {"fps": stats.fps, "frames": stats.total_frames, "results": out}
        if not is_main:  # every rank's videos are written (run_videos' barrier)
            continue
        if stats.videos:
            print(f"{name}: {stats.summary()}")
        if s.scored:
            on_interrupt(f"the masks in {out} are kept; a rerun skips them and scores the set again")
            result = evaluate(root, out, split=s.split, year=s.year, workers=eval_workers)
            print(result.format_table())
            csvs = result.write_csvs(layout.scores(Path(output), s))
            print(f"{name}: J&F-Mean {result.global_row['J&F-Mean']:.4f}; tables in {csvs[0].parent}")
            summary[name].update(result.global_row)
            on_interrupt(RESUMES_AFTER_VIDEOS)
        else:
            zip_path = zip_submission(out, layout.archive(Path(output), s),
                                      layout="davis" if s.family == "davis" else "youtube")
            print(f"{name}: no public ground truth; upload the submission {zip_path} to {s.server}")
            summary[name]["zip"] = zip_path
    return summary


def run_sample(davis_root: Path, ytvos_root: Optional[Path], out_dir: Path, device: torch.device, *, title: str,
               build: Callable[[], torch.nn.Module], default_weights: Mapping[str, str], segment: Segment,
               layout: SetLayout = SetLayout(), trained: Optional[Path] = None) -> Dict[str, Any]:
    """`make demo`'s run of one paper on a generated sample: its DAVIS 2017 val (scored) and, when given, its
    YouTube-VOS 2018 valid (zipped), redone from scratch. `trained` (weights trained here, `make train-sample`)
    when given, else the official weights when they are already cached, else `build()`'s seeded
    initialisation: a demo never downloads. Returns the DAVIS J&F row and, under "weights", which were used."""
    from common.evaluation.evaluate import GLOBAL_COLUMNS
    from common.hub.checkpoints import demo_model

    used = []

    def load_model(name: str) -> torch.nn.Module:
        model, which = demo_model(name, build, device, trained=trained)
        used.append(which)
        return model

    sets = ["davis17-val"] + (["ytvos18-valid"] if ytvos_root is not None else [])
    summary = run_sets(sets, {"davis": davis_root, "ytvos": ytvos_root}, Path(out_dir), device, title=title,
                       weights=None, default_weights=default_weights, load_model=load_model, segment=segment,
                       overwrite=True, layout=layout)
    return {**{column: summary["davis17-val"][column] for column in GLOBAL_COLUMNS}, "weights": used[0]}

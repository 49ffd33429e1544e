"""BMVOS, EMVOS, TBD and HMMN on one footing: the same clip, one grid video, one table, one scatter plot.

    python -m vos.compare (--video clip.mp4 | --frames DIR) --mask first.png [--gt DIR]
        [--methods bmvos,emvos,tbd,hmmn] [--weights seeded|trained] [--fast [--precision P]] [--out DIR] [--device cuda]
    python -m vos.compare --davis data/DAVIS [--results outputs] [--methods ...] [--fast]   (make compare)

Clip mode runs `vos.segment` once per method, each in its own process (so the CPU peak memory is that
method's own), into `<out>/<method>/`; finished method folders are reused. It writes `grid.mp4` (one
labelled overlay panel per method), `table.md` and `table.csv` (method, frames/s, ms/frame, peak memory and,
with `--gt`, J, F and J&F in %), and with `--gt` the scatter plot `jf_vs_fps.png`. Ground truth is one
PNG per frame (palette or 0/255 binary, sorted by name); as in the DAVIS protocol the annotated frame and
the last frame are not scored, nor are frames before --mask-frame.

DAVIS mode runs the official weights over DAVIS 2017 val with the evaluator's settings into
`<results>/<paper>/davis17-val`, reusing finished videos (the folders `make reproduce-<paper>` writes),
scores J&F and draws the table and plot against the published numbers (`--weights seeded`, a pipeline
check, keeps its results in `<out>/seeded-results` instead; `--weights trained`, the models `make
train-sample` trained here, in `<out>/trained-results`). Videos of a checkpoint file are reused only while the
file's content is the same (`<results>/<method>/made_with.json`; a retrained model asks for `--overwrite`).
Frames/s is this run's; when every video was reused, the first video is segmented once more to time it.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from common.data.clip import Clip, list_frames, load_clip, object_ids_of
from common.data.datasets import DAVIS, Video
from common.data.output_folder import check_output_folder, write_text_atomic
from common.data.overlay import overlay
from common.data.palette import image_size, read_label_png
from common.evaluation import metrics
from common.hub.checkpoints import SEEDED
from common.inference.fast import FastOptions, fast_arguments, fast_options_from_args
from common.runtime.device import Stopwatch, peak_memory_mib, pick_device, reset_peak_memory
from common.runtime.errors import PARENT_REPORTS_INTERRUPT, UserError, on_interrupt, run_cli
from vos.compare_outputs import Row, csv_table, markdown_table, scatter_plot, scores_percent, write_grid_video
from vos.papers import SEMI_SUPERVISED
from vos.segment import (add_input_arguments, check_out, frame_progress, official_weights, read_result, read_stats,
                         result_settings, weights_sha256)
from vos.train_sample import DEFAULT_OUT, trained_checkpoint

DAVIS_SET = "davis17-val"  # the result-folder name of DAVIS 2017 val, `<root>/<paper>/davis17-val`


def parse_methods(text: str) -> List[str]:
    methods = [m for m in text.split(",") if m]
    unknown = [m for m in methods if m not in SEMI_SUPERVISED]
    if unknown or not methods:
        raise UserError(f"--methods takes a comma-separated subset of {','.join(SEMI_SUPERVISED)}; got {text!r}")
    return list(dict.fromkeys(methods))


# ------------------------------------------------------------------------------------------- clip mode

def load_ground_truth(folder: Path, clip: Clip) -> np.ndarray:
    """uint8 `[T, H, W]` ids of every frame (void -> background; a 0/255 binary set -> object 1)."""
    paths = list_frames(folder, "--gt", (".png",))
    if len(paths) != len(clip):
        raise UserError(f"--gt {folder} holds {len(paths)} PNGs but the clip has {len(clip)} frames; give one "
                        f"ground-truth PNG per frame")
    height, width = clip.size
    for path in paths:  # headers first: one mask of another size is named, not a stacking error
        w, h = image_size(path, "--gt mask")
        if (h, w) != (height, width):
            raise UserError(f"--gt mask {path} is {w}x{h} but the frames are {width}x{height}; give ground truth "
                            f"at the frames' size")
    gt = np.stack([read_label_png(p) for p in paths])
    return object_ids_of(gt)  # decided over the whole set: one frame may hold only background


def scored_frames(clip: Clip) -> List[int]:
    frames = list(range(clip.mask_frame + 1, len(clip) - 1))
    if not frames:
        raise UserError(f"--gt needs at least 3 frames from --mask-frame on (the annotated and the last frame are "
                        f"not scored); the clip has {len(clip) - clip.mask_frame}")
    return frames


def clip_scores(gt: np.ndarray, pred: np.ndarray, object_ids: Sequence[int]) -> Dict[str, Optional[float]]:
    """J, F, J&F in %: per object the mean over the scored frames, then the mean over objects."""
    j, f = metrics.object_scores(gt, pred, object_ids)
    j_mean = float(np.mean([metrics.mean_recall_decay(j[:, k])[0] for k in range(j.shape[1])]))
    f_mean = float(np.mean([metrics.mean_recall_decay(f[:, k])[0] for k in range(f.shape[1])]))
    return scores_percent(j_mean, f_mean)


def segment_args(args: argparse.Namespace, method: str, out: Path) -> List[str]:
    """The `vos.segment` command line for one method on the clip."""
    source = ["--video", str(args.video)] if args.video is not None else ["--frames", str(args.frames)]
    flags = fast_arguments(args.fast_options) + [f for f, on in (("--native-size", args.native_size),
                                                                  ("--overwrite", args.overwrite)) if on]
    command = [sys.executable, "-m", "vos.segment", "--method", method, *source, "--mask", str(args.mask),
               "--mask-frame", str(args.mask_frame), "--out", str(out), *flags]
    weights = method_weights(args, method)
    if weights:
        command += ["--weights", weights]
    if args.device:
        command += ["--device", args.device]
    return command


TRAINED = "trained"  # --weights trained: each paper's `make train-sample` model, <trained>/<paper>/best.pth
WEIGHTS_TITLE = {None: "official weights", SEEDED: "seeded weights, not the papers'",
                 TRAINED: "weights trained here on generated data"}


def method_weights(args: argparse.Namespace, method: str) -> Optional[str]:
    """One method's `--weights`: None (its official weights), `seeded`, or the checkpoint trained here."""
    if args.weights == TRAINED:
        return str(trained_checkpoint(args.trained, method))
    return args.weights


def check_trained_weights(args: argparse.Namespace, methods: Sequence[str]) -> None:
    """--weights trained: every method's checkpoint exists, before any method runs."""
    for method in methods:
        path = trained_checkpoint(args.trained, method)
        if not path.is_file():
            raise UserError(f"--weights trained: {path} not found; train it with `make train-sample PAPER={method}` "
                            f"(or point --trained at its folder, or leave {method} out of --methods)")


def child_env() -> Dict[str, str]:
    """The environment of a method's process: on Ctrl-C it ends quietly, as this command says what is kept."""
    return dict(os.environ, **{PARENT_REPORTS_INTERRUPT: "1"})


def check_child(code: int, what: str, rerun: str) -> None:
    """Pass on how a method's process ended: Ctrl-C and a closed output pipe end this command the same way (one
    line, or none), any other failure is one error line."""
    if code in (130, -signal.SIGINT):
        raise KeyboardInterrupt
    if code in (128 + signal.SIGPIPE, -signal.SIGPIPE):  # our stdout, shared with it, is a pipe nobody reads
        raise BrokenPipeError
    if code != 0:
        raise UserError(f"{what} failed with exit status {code} (its message is above); fix that and rerun: {rerun}")


def run_clip(args: argparse.Namespace, methods: List[str]) -> int:
    clip = load_clip(args.video, args.frames, args.mask, args.mask_frame)
    gt = load_ground_truth(args.gt, clip) if args.gt is not None else None
    frames = scored_frames(clip) if gt is not None else []
    out = args.out or Path("outputs") / "compare" / clip.name
    check_output_folder(out, "--out")  # created by the first method's vos.segment, or below
    on_interrupt(f"finished methods are kept in {out} and a rerun reuses them")

    # up front, before any method runs: a folder made with other settings (other weights too) is refused
    reuse = {method: check_out(out / method, result_settings(method, method_weights(args, method), args.fast_options,
                                                             args.native_size, clip), args.overwrite)
             for method in methods}
    rows: List[Row] = []
    for method in methods:
        print(f"== {method} ==", flush=True)
        folder = out / method
        if reuse[method]:
            print(f"reusing the finished {folder}")
        else:  # its own process, so that the CPU peak memory is this method's alone
            check_child(subprocess.run(segment_args(args, method, folder), env=child_env()).returncode,
                        f"vos.segment --method {method}", "finished methods are reused")
        stats = read_stats(out / method)
        row: Row = {"method": method, **{k: stats[k] for k in ("fps", "ms_per_frame", "peak_memory_mib")}}
        if gt is not None:
            pred = np.stack(list(read_result(out / method, len(clip))))
            row.update(clip_scores(gt[frames], pred[frames], clip.object_ids))
        rows.append(row)

    def panels() -> Iterator[List[np.ndarray]]:
        results = [read_result(out / m, len(clip)) for m in methods]
        for index in range(len(clip)):
            frame = clip.frame(index)
            yield [overlay(frame, next(labels)) for labels in results]

    out.mkdir(parents=True, exist_ok=True)
    grid = write_grid_video(panels(), methods, out / "grid.mp4", clip.fps)
    write_text_atomic(out / "table.md", markdown_table(rows))
    write_text_atomic(out / "table.csv", csv_table(rows))
    written = [grid, out / "table.md", out / "table.csv"]
    if gt is not None:
        scatter_plot(rows, out / "jf_vs_fps.png", f"{clip.name}: J&F vs frames/s ({WEIGHTS_TITLE[args.weights]})")
        written.append(out / "jf_vs_fps.png")
    print("\n" + markdown_table(rows) + "\nwritten: " + ", ".join(str(p) for p in written))
    return 0


# ------------------------------------------------------------------------------------------- DAVIS mode

def davis_row(method: str, davis_root: Path, results_root: Path, device_name: Optional[str],
              fast: Optional[FastOptions], weights: Optional[str] = None, resize: bool = True,
              overwrite: bool = False) -> Row:
    """One method on DAVIS 2017 val (in this process; default: its official weights): timing, memory, J&F."""
    from common.evaluation.evaluate import evaluate
    from common.inference.runner import run_videos
    from vos.papers import PAPERS

    device = pick_device(device_name)
    paper = PAPERS[method]
    videos = DAVIS(davis_root, 2017, "val").videos()
    model = paper.inference.make_segmenter(weights or official_weights(method), device, fast=fast, resize=resize)

    def segment(video: Video) -> Dict[int, np.ndarray]:
        with frame_progress(paper.inference.FRAME_ENCODER, len(video), f"{method} {video.name}"):
            return model(video)

    results = results_root / method / DAVIS_SET
    reset_peak_memory(device)
    stats = run_videos(videos, segment, results, device=device, desc=f"{method} DAVIS17 val",
                       overwrite=overwrite)
    if stats.videos:
        frames, seconds = stats.total_frames, stats.total_seconds
    else:  # every video reused: time the first one again
        with Stopwatch(device) as watch:
            segment(videos[0])
        frames, seconds = len(videos[0]), watch.elapsed
    peak = peak_memory_mib(device)  # before scoring, which is not the method's
    scores = evaluate(davis_root, results, split="val", year=2017, progress=False).global_row
    return {"method": method, "fps": frames / seconds, "ms_per_frame": 1000 * seconds / frames,
            "peak_memory_mib": peak, **scores_percent(scores["J-Mean"], scores["F-Mean"]),
            "published_JF": paper.reproduce.PUBLISHED.get(DAVIS_SET)}


MADE_WITH = "made_with.json"  # in <results>/<method>/: the checkpoint file (and its hash) its videos came from


def check_made_with(args: argparse.Namespace, results: Path, methods: Sequence[str]) -> Dict[str, dict]:
    """Each method's checkpoint identity; finished videos of another checkpoint file (a model retrained into the
    same path) are refused up front rather than reused as its results."""
    identities = {}
    for method in methods:
        weights = method_weights(args, method)
        identity = {"weights": weights, "weights_sha256": weights_sha256(weights)}
        identities[method] = identity
        videos = results / method / DAVIS_SET
        if identity["weights_sha256"] is None or args.overwrite or not (videos.is_dir() and any(videos.iterdir())):
            continue  # names (official, seeded) are fixed weights; nothing to reuse; or redone anyway
        try:
            made_with = json.loads((results / method / MADE_WITH).read_text())
        except (OSError, ValueError):  # none (videos of a run before this record existed) or unreadable
            made_with = None
        if made_with != identity:
            raise UserError(f"{videos} holds videos segmented with other weights than {weights} as it is now "
                            f"(retrained?); pass --overwrite to segment them again, or choose another --out")
    return identities


def run_davis(args: argparse.Namespace, methods: List[str]) -> int:
    DAVIS(args.davis, 2017, "val")  # checks the layout before anything runs
    out = args.out or Path("outputs") / "compare" / DAVIS_SET
    # seeded or trained-here results must never be mistaken for the official ones in outputs/<paper>/davis17-val
    results = out / f"{args.weights}-results" if args.weights else args.results
    check_output_folder(out, "--out")
    check_output_folder(results, "--results")
    identities = check_made_with(args, results, methods)
    on_interrupt(f"finished videos are kept in {results}/<method>/{DAVIS_SET} and a rerun resumes after them")
    rows: List[Row] = []
    for method in methods:  # each in its own process, so that the CPU peak memory is its own
        command = [sys.executable, "-m", "vos.compare", "--worker", method, "--davis", str(args.davis),
                   "--results", str(results)] + fast_arguments(args.fast_options) + \
                  [f for f, on in (("--native-size", args.native_size), ("--overwrite", args.overwrite)) if on] + \
                  (["--device", args.device] if args.device else []) + \
                  (["--weights", args.weights, "--trained", str(args.trained)] if args.weights else [])
        if identities[method]["weights_sha256"] is not None:
            (results / method).mkdir(parents=True, exist_ok=True)
            write_text_atomic(results / method / MADE_WITH, json.dumps(identities[method]) + "\n")
        proc = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=child_env())
        found = [line[len("COMPARE-ROW "):] for line in proc.stdout.splitlines() if line.startswith("COMPARE-ROW ")]
        check_child(proc.returncode if proc.returncode != 0 or found else 1, f"{method} on DAVIS 2017 val",
                    "finished videos are reused")
        rows.append(json.loads(found[-1]))
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "table.md", markdown_table(rows))
    write_text_atomic(out / "table.csv", csv_table(rows))
    scatter_plot(rows, out / "jf_vs_fps.png", f"DAVIS 2017 val: J&F vs frames/s ({WEIGHTS_TITLE[args.weights]})")
    print("\n" + markdown_table(rows) + f"\nwritten: {out / 'table.md'}, {out / 'table.csv'}, {out / 'jf_vs_fps.png'}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vos.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_input_arguments(parser, required=False)
    parser.add_argument("--gt", type=Path, default=None, help="ground truth of the clip: one PNG per frame")
    parser.add_argument("--methods", default=",".join(SEMI_SUPERVISED), help="comma-separated subset (default: all four)")
    parser.add_argument("--weights", default=None, choices=[SEEDED, TRAINED],
                        help=f"'{SEEDED}': seeded initialisation for every method; '{TRAINED}': each method's model "
                             f"trained here by `make train-sample`, <trained>/<method>/best.pth (default: each "
                             f"paper's official DAVIS weights)")
    parser.add_argument("--trained", type=Path, default=DEFAULT_OUT,
                        help="with --weights trained: the folder `make train-sample` wrote")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: outputs/compare/<clip name>, or outputs/compare/davis17-val)")
    parser.add_argument("--davis", type=Path, default=None, help="DAVIS mode: the DAVIS 2017 root")
    parser.add_argument("--results", type=Path, default=Path("outputs"),
                        help="DAVIS mode: results root, <results>/<paper>/davis17-val (default: outputs)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.fast_options = fast_options_from_args(args)
    methods = parse_methods(args.methods)
    if args.weights == TRAINED:
        check_trained_weights(args, [args.worker] if args.worker else methods)

    if args.worker:
        row = davis_row(args.worker, args.davis, args.results, args.device, args.fast_options,
                        method_weights(args, args.worker),
                        not args.native_size, args.overwrite)
        print("COMPARE-ROW " + json.dumps(row), flush=True)
        return 0
    if args.davis is not None:
        if args.video or args.frames or args.mask or args.gt:
            raise UserError("--davis runs DAVIS 2017 val; leave out --video/--frames/--mask/--gt (or drop --davis)")
        return run_davis(args, methods)
    if (args.video is None and args.frames is None) or args.mask is None:
        raise UserError("give a clip (--video FILE or --frames DIR, and --mask PNG), or --davis ROOT")
    return run_clip(args, methods)


if __name__ == "__main__":
    run_cli(main)

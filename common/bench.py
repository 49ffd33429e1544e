"""`make bench`: one speed table for every method on a generated 480p multi-object video.

For each paper package, `make_segmenter(device)` gives a seeded model wrapped as
`segment(video) -> {frame: labels}`. One warm-up run is discarded, then the median of `--runs`
CUDA-synchronised runs is reported as frames/s and ms/frame, with peak memory (CUDA max allocated
on a GPU, process peak RSS on CPU — the latter only ever grows, so read it per process). GIS is
interactive and reports seconds per interaction round instead. The J&F evaluator is timed too.
Results are printed and written as JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from common import synthetic
from common.datasets import DAVIS
from common.device import (Stopwatch, add_device_argument, peak_memory_mib, pick_device,
                           reset_peak_memory)
from common.errors import UserError, run_cli
from common.evaluate import evaluate
from common.papers import PAPERS, demo_hooks


def _median_seconds(fn: Callable[[], Any], device: torch.device, runs: int) -> float:
    fn()  # warm-up: allocator, cuDNN autotuning, lazy initialisation
    times = []
    for _ in range(runs):
        with Stopwatch(device) as watch:
            fn()
        times.append(watch.elapsed)
    return statistics.median(times)


def bench_video_method(paper: str, video, device: torch.device, runs: int) -> Dict[str, Any]:
    segment = demo_hooks(paper).make_segmenter(device)
    reset_peak_memory(device)
    seconds = _median_seconds(lambda: segment(video), device, runs)
    frames = len(video.frame_paths)
    return {"method": paper, "frames": frames, "fps": frames / seconds, "ms_per_frame": 1000 * seconds / frames,
            "peak_memory_mib": peak_memory_mib(device)}


def bench_interactive(paper: str, davis_root: Path, device: torch.device) -> Dict[str, Any]:
    reset_peak_memory(device)
    seconds = demo_hooks(paper).bench_round(davis_root, device)
    return {"method": paper, "seconds_per_round": seconds, "peak_memory_mib": peak_memory_mib(device)}


def bench_evaluator(davis_root: Path, results: Path) -> Dict[str, Any]:
    frames = sum(len(v.frame_paths) for v in DAVIS(davis_root, 2017, "val").videos())
    start = time.perf_counter()
    evaluate(davis_root, results, split="val", year=2017)
    return {"method": "J&F evaluator", "frames": frames, "fps": frames / (time.perf_counter() - start)}


def header(device: torch.device) -> Dict[str, str]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {"device": f"{device} ({name})", "machine": f"{platform.node()} {platform.machine()}",
            "python": platform.python_version(), "torch": torch.__version__,
            "threads": str(torch.get_num_threads())}


def format_rows(rows: List[Dict[str, Any]]) -> str:
    lines = [f"{'method':<16}{'frames/s':>10}{'ms/frame':>10}{'s/round':>10}{'peak MiB':>10}"]
    for r in rows:
        cell = lambda k, f: f"{r[k]:>10{f}}" if k in r else f"{'-':>10}"  # noqa: E731
        lines.append(f"{r['method']:<16}{cell('fps', '.2f')}{cell('ms_per_frame', '.1f')}"
                     f"{cell('seconds_per_round', '.2f')}{cell('peak_memory_mib', '.0f')}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--papers", default=",".join(PAPERS), help="comma-separated subset (default: all)")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--frames", type=int, default=10, help="frames of the benchmark video")
    parser.add_argument("--objects", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per method (median reported)")
    parser.add_argument("--json", type=Path, default=Path("bench.json"), help="where to write the results")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    papers = [p for p in args.papers.split(",") if p]
    if set(papers) - set(PAPERS):
        raise UserError(f"unknown paper(s) in --papers; choose from {', '.join(PAPERS)}")
    device = pick_device(args.device)

    info = header(device)
    print("  ".join(f"{k}: {v}" for k, v in info.items()))
    rows: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        davis_root = synthetic.make_davis_sample(Path(tmp) / "DAVIS", seed=0, n_videos=1, n_frames=args.frames,
                                                 height=args.height, width=args.width, n_objects=args.objects)
        video = DAVIS(davis_root, 2017, "val").videos()[0]
        print(f"video: {args.frames} frames of {args.height}x{args.width}, {args.objects} objects; "
              f"median of {args.runs} runs after one warm-up")
        for paper in papers:
            hooks = demo_hooks(paper)
            if hooks is None:
                print(f"{paper}: not implemented yet, skipped")
                continue
            if hasattr(hooks, "bench_round"):
                rows.append(bench_interactive(paper, davis_root, device))
            else:
                rows.append(bench_video_method(paper, video, device, args.runs))
            print(format_rows(rows[-1:]).splitlines()[-1], flush=True)
        rows.append(bench_evaluator(davis_root, davis_root / "Annotations" / "480p"))

    print()
    print(format_rows(rows))
    args.json.write_text(json.dumps({"header": info, "rows": rows}, indent=2))
    print(f"\nwritten: {args.json}")
    return 0


if __name__ == "__main__":
    run_cli(main)

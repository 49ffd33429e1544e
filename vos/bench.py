"""`make bench`: one speed table for every method on a generated 480p multi-object video.

For each paper package and mode (faithful, fast, compiled), the package's
`inference.make_segmenter("seeded", device, fast=...)` gives a seeded model as `segment(video) -> {frame: labels}`.
One warm-up run is discarded, then the median of `--runs` CUDA-synchronised runs is reported as
frames/s and ms/frame. One further run with timing hooks on every `*Encoder*` module splits
ms/frame into encoder and the rest (hooks synchronise CUDA, so that run is not the timed one).
Peak memory is CUDA's max allocated on a GPU, and the process's peak RSS on CPU; each
(method, mode) runs in its own process so that the CPU figure belongs to that method alone.
GIS is interactive and reports seconds per interaction round instead. The J&F evaluator is timed
too. Results are printed and written as JSON.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence

from common.data import synthetic
from common.data.datasets import DAVIS
from common.evaluation.evaluate import evaluate
from common.hub.checkpoints import SEEDED
from common.inference.fast import FastOptions
from common.runtime.device import (Stopwatch, add_device_argument, peak_memory_mib, pick_device, reset_peak_memory,
                                   synchronize)
from common.runtime.errors import UserError, run_cli
from vos.papers import INTERACTIVE, PAPER_NAMES

if TYPE_CHECKING:  # torch and the models load where they run: `--help` answers without them
    import torch

MODES = ("faithful", "fast", "compiled")  # compiled = fast + torch.compile (opt-in: compiling takes minutes)
DEFAULT_MODES = ("faithful", "fast")


def _median_seconds(fn: Callable[[], Any], device: torch.device, runs: int) -> float:
    fn()  # warm-up: allocator, cuDNN autotuning, lazy initialisation
    times = []
    for _ in range(runs):
        with Stopwatch(device) as watch:
            fn()
        times.append(watch.elapsed)
    return statistics.median(times)


@contextlib.contextmanager
def encoder_time(device: torch.device) -> Iterator[Dict[str, float]]:
    """Seconds spent inside modules whose class name contains "Encoder" (outermost ones only)."""
    state = {"depth": 0, "start": 0.0, "seconds": 0.0}

    def is_encoder(module: torch.nn.Module) -> bool:
        return "encoder" in type(module).__name__.lower()

    def before(module, _inputs):
        if is_encoder(module):
            if state["depth"] == 0:
                synchronize(device)
                state["start"] = time.perf_counter()
            state["depth"] += 1

    def after(module, _inputs, _output):
        if is_encoder(module):
            state["depth"] -= 1
            if state["depth"] == 0:
                synchronize(device)
                state["seconds"] += time.perf_counter() - state["start"]

    import torch

    hooks = [torch.nn.modules.module.register_module_forward_pre_hook(before),
             torch.nn.modules.module.register_module_forward_hook(after)]
    try:
        yield state
    finally:
        for hook in hooks:
            hook.remove()


def fast_options(mode: str) -> Optional[FastOptions]:
    """What `mode` asks of the paper (None: the faithful model)."""
    return {"faithful": None, "fast": FastOptions(), "compiled": FastOptions(compile=True)}[mode]


def bench_video_method(paper: str, mode: str, davis_root: Path, device: torch.device, runs: int) -> Dict[str, Any]:
    video = DAVIS(davis_root, 2017, "val").videos()[0]
    from vos.papers import PAPERS

    segment = PAPERS[paper].inference.make_segmenter(SEEDED, device, fast=fast_options(mode))
    reset_peak_memory(device)
    seconds = _median_seconds(lambda: segment(video), device, runs)
    with encoder_time(device) as enc:
        segment(video)
    frames = len(video.frame_paths)
    return {"method": paper, "mode": mode, "frames": frames, "fps": frames / seconds,
            "ms_per_frame": 1000 * seconds / frames, "encoder_ms_per_frame": 1000 * enc["seconds"] / frames,
            "peak_memory_mib": peak_memory_mib(device)}


def bench_interactive(paper: str, mode: str, davis_root: Path, device: torch.device) -> Dict[str, Any]:
    reset_peak_memory(device)
    from vos.papers import PAPERS

    seconds = PAPERS[paper].demo.bench_round(davis_root, device, fast=fast_options(mode))
    return {"method": paper, "mode": mode, "seconds_per_round": seconds, "peak_memory_mib": peak_memory_mib(device)}


def bench_evaluator(davis_root: Path) -> Dict[str, Any]:
    frames = sum(len(v.frame_paths) for v in DAVIS(davis_root, 2017, "val").videos())
    start = time.perf_counter()
    evaluate(davis_root, davis_root / "Annotations" / "480p", split="val", year=2017, progress=False)
    return {"method": "J&F evaluator", "mode": "-", "frames": frames, "fps": frames / (time.perf_counter() - start)}


def _cpu_name() -> str:
    """The CPU model (Linux's /proc/cpuinfo; `platform.processor()` is often empty there)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def header(device: torch.device) -> Dict[str, str]:
    import torch

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return {"device": f"{device} ({name})", "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
            "python": platform.python_version(), "torch": torch.__version__}


def add_speedups(rows: List[Dict[str, Any]]) -> None:
    """`speedup`: each row's time against its method's faithful row (when both were measured)."""
    for key in ("ms_per_frame", "seconds_per_round"):
        faithful = {r["method"]: r[key] for r in rows if r["mode"] == "faithful" and key in r}
        for r in rows:
            if key in r and r["method"] in faithful:
                r["speedup"] = faithful[r["method"]] / r[key]


def format_rows(rows: List[Dict[str, Any]]) -> str:
    columns = [("fps", "frames/s", ".2f"), ("ms_per_frame", "ms/frame", ".1f"),
               ("encoder_ms_per_frame", "encoder", ".1f"), ("seconds_per_round", "s/round", ".2f"),
               ("speedup", "speed-up", ".2f"), ("peak_memory_mib", "peak MiB", ".0f")]
    lines = [f"{'method':<16}{'mode':<10}" + "".join(f"{title:>10}" for _, title, _ in columns)]
    for r in rows:
        cells = "".join(f"{r[k]:>10{f}}" if k in r else f"{'-':>10}" for k, _, f in columns)
        lines.append(f"{r['method']:<16}{r['mode']:<10}{cells}")
    return "\n".join(lines)


def _run_worker(args: argparse.Namespace) -> int:
    """Child process: benchmark one (paper, mode) and print its row as JSON."""
    paper, mode = args.worker.split(":")
    device = pick_device(args.device)
    if paper in INTERACTIVE:
        row = bench_interactive(paper, mode, args.davis_root, device)
    else:
        row = bench_video_method(paper, mode, args.davis_root, device, args.runs)
    print("BENCH-ROW " + json.dumps(row), flush=True)
    return 0


def _run_in_child(paper: str, mode: str, davis_root: Path, args: argparse.Namespace) -> Dict[str, Any]:
    cmd = [sys.executable, "-m", "vos.bench", "--worker", f"{paper}:{mode}", "--davis-root", str(davis_root),
           "--runs", str(args.runs)] + (["--device", args.device] if args.device else [])
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rows = [line[len("BENCH-ROW "):] for line in proc.stdout.splitlines() if line.startswith("BENCH-ROW ")]
    if proc.returncode != 0 or not rows:
        raise UserError(f"benchmark of {paper} ({mode}) failed:\n{proc.stderr.strip()[-2000:]}")
    return json.loads(rows[-1])


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--papers", default=",".join(PAPER_NAMES), help="comma-separated subset (default: all)")
    parser.add_argument("--modes", default=",".join(DEFAULT_MODES),
                        help=f"comma-separated subset of {', '.join(MODES)} (default: {','.join(DEFAULT_MODES)}; "
                             "compiled = fast mode with torch.compile, whose compilation the warm-up run absorbs)")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--frames", type=int, default=10, help="frames of the benchmark video")
    parser.add_argument("--objects", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per method (median reported)")
    parser.add_argument("--json", type=Path, default=Path("bench.json"), help="where to write the results")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--davis-root", type=Path, help=argparse.SUPPRESS)
    add_device_argument(parser)
    args = parser.parse_args(argv)
    if args.worker:
        return _run_worker(args)

    papers = [p for p in args.papers.split(",") if p]
    modes = [m for m in args.modes.split(",") if m]
    if set(papers) - set(PAPER_NAMES) or set(modes) - set(MODES):
        raise UserError(f"--papers takes {', '.join(PAPER_NAMES)}; --modes takes {', '.join(MODES)}")
    device = pick_device(args.device)
    info = header(device)
    print("  ".join(f"{k}: {v}" for k, v in info.items()))
    rows: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        davis_root = synthetic.make_davis_sample(Path(tmp) / "DAVIS", seed=0, n_videos=1, n_frames=args.frames,
                                                 height=args.height, width=args.width, n_objects=args.objects)
        print(f"video: {args.frames} frames of {args.height}x{args.width}, {args.objects} objects; "
              f"median of {args.runs} runs after one warm-up; each method in its own process\n")
        print(format_rows([]))
        for paper in papers:
            for mode in modes:
                rows.append(_run_in_child(paper, mode, davis_root, args))
                add_speedups(rows)
                print(format_rows(rows[-1:]).splitlines()[-1], flush=True)
        rows.append(bench_evaluator(davis_root))
        print(format_rows(rows[-1:]).splitlines()[-1])
    args.json.write_text(json.dumps({"header": info, "rows": rows}, indent=2))
    print(f"\nwritten: {args.json}")
    return 0


if __name__ == "__main__":
    run_cli(main)

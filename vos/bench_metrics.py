"""Time `common.evaluation.evaluate` on a generated DAVIS set, and the official toolkit on the same data.

    python -m vos.bench_metrics                                   # ours only (make bench-metrics)
    python -m vos.bench_metrics --official ~/src/davis2017-evaluation   # + the official code, speed ratio

``--official`` points at your own clone of davisvideochallenge/davis2017-evaluation; it is imported
from there in-process (nothing of it is shipped with this project). Both evaluations read the same
ground truth and the same results, and their global numbers are compared before the times are shown.
The default set is DAVIS-sized frames (480 x 854): 6 sequences x 40 frames x 3 objects.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

from common.data.palette import read_label_png, write_label_png
from common.evaluation import metrics
from common.evaluation.evaluate import GLOBAL_COLUMNS, evaluate
from common.evaluation.workers import default_workers
from common.runtime.errors import UserError, run_cli


def write_perturbed_results(davis_root: Path, results_dir: Path, split: str = "val", year: int = 2017,
                            seed: int = 0) -> Path:
    """A plausible "method output" for every frame: each GT object shifted by up to 3 px and
    randomly dilated or eroded, painted back in increasing id order (void becomes background)."""
    from common.data.datasets import DAVIS

    rng = np.random.default_rng(seed)
    kernel = np.ones((3, 3), np.uint8)
    for video in DAVIS(davis_root, year=year, split=split).videos():
        for name, path in zip(video.frame_names, video.gt_paths or []):
            gt = read_label_png(path)
            out = np.zeros_like(gt)
            for obj in np.unique(gt[(gt > 0) & (gt < 255)]):
                mask = (gt == obj).astype(np.uint8)
                dy, dx = rng.integers(-3, 4, size=2)
                mask = np.roll(mask, (int(dy), int(dx)), axis=(0, 1))
                op = rng.integers(3)
                if op == 1:
                    mask = cv2.dilate(mask, kernel)
                elif op == 2:
                    mask = cv2.erode(mask, kernel)
                out[mask > 0] = obj
            write_label_png(results_dir / video.name / f"{name}.png", out)
    return results_dir


def _official_evaluate(official: Path) -> Callable[[Path, Path], Dict[str, float]]:
    """The official evaluation, imported from the user's clone, returning the global row."""
    if not (official / "davis2017" / "evaluation.py").is_file():
        raise UserError(f"{official} is not a davis2017-evaluation clone (no davis2017/evaluation.py); clone "
                        f"https://github.com/davisvideochallenge/davis2017-evaluation and pass its folder")
    sys.path.insert(0, str(official))
    try:
        module = importlib.import_module("davis2017.evaluation")
    finally:
        sys.path.pop(0)

    def run(davis_root: Path, results_dir: Path) -> Dict[str, float]:
        res = module.DAVISEvaluation(davis_root=str(davis_root), task="semi-supervised",
                                     gt_set="val").evaluate(str(results_dir))
        j, f = res["J"], res["F"]
        row = {"J-Mean": np.mean(j["M"]), "J-Recall": np.mean(j["R"]), "J-Decay": np.mean(j["D"]),
               "F-Mean": np.mean(f["M"]), "F-Recall": np.mean(f["R"]), "F-Decay": np.mean(f["D"])}
        return {"J&F-Mean": float((row["J-Mean"] + row["F-Mean"]) / 2.0), **{k: float(v) for k, v in row.items()}}

    return run


def _timed(fn: Callable[[], Dict[str, float]], repeat: int) -> Tuple[float, Dict[str, float]]:
    best, out = float("inf"), {}
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vos.bench_metrics", description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", type=Path, default=None,
                        help="your local clone of davis2017-evaluation, to time it on the same data")
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="worker processes for the parallel run (default min(cpu_count, 8))")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; the best is reported")
    parser.add_argument("--data", type=Path, default=None, help="keep the generated set here (default: temporary)")
    args = parser.parse_args(argv)

    from common.data.synthetic import make_davis_sample

    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as scratch:
        base = args.data if args.data is not None else Path(scratch)
        davis_root, results_dir = base / "DAVIS", base / "results"
        print(f"generating {args.videos} sequences x {args.frames} frames x {args.objects} objects at "
              f"{args.height}x{args.width} in {base} ...", flush=True)
        make_davis_sample(davis_root, seed=0, n_videos=args.videos, n_frames=args.frames, height=args.height,
                          width=args.width, n_objects=args.objects, n_train=0, n_test_dev=0)
        write_perturbed_results(davis_root, results_dir)

        metrics.disk_kernel(1.0)  # import scikit-image now: neither side should pay for it in its time
        timings = {}
        for workers in sorted({1, max(1, args.workers)}):
            timings[f"common.evaluation.evaluate, {workers} worker(s)"] = _timed(
                lambda: evaluate(davis_root, results_dir, workers=workers, progress=False).global_row, args.repeat)
        if args.official is not None:
            official = _official_evaluate(args.official.expanduser())
            timings["official davis2017-evaluation"] = _timed(lambda: official(davis_root, results_dir), args.repeat)

    reference = next(iter(timings.values()))[1]
    for label, (_, row) in timings.items():
        worst = max(abs(row[k] - reference[k]) for k in GLOBAL_COLUMNS)
        if not worst <= 1e-9:
            raise UserError(f"{label} disagrees with common.evaluation.evaluate by {worst:.3g} on the benchmark set")
    scored = args.videos * (args.frames - 2) * args.objects
    print(f"J&F-Mean {reference['J&F-Mean']:.6f} (all evaluations agree); {scored} object-frames scored")
    official_time = timings.get("official davis2017-evaluation", (None,))[0]
    for label, (seconds, _) in timings.items():
        ratio = f"   {official_time / seconds:5.1f}x faster than official" if official_time and \
            not label.startswith("official") else ""
        print(f"{label:<36} {seconds:8.2f} s{ratio}")
    return 0


if __name__ == "__main__":
    from vos.bench_metrics import main as _main

    run_cli(_main)

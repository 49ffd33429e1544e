"""Seconds per round of the app at working sizes, faithful and fast path, and the robot benchmark's J&F there
(the README's table).

    python -m gis.app.bench --height 480 --width 854 --frames 10 --sizes full 360 240 --weights seeded

Each configuration runs what the app runs for a person (`TabSession`): one stroke on the middle frame of
a generated video (its preview), then one round over the whole video; it prints a Markdown table of
seconds per preview, per round and per frame, the 70-frame round extrapolated from them, and the J&F
after the last of `--robot-rounds` interactions of the robot benchmark (`gis.ivos_main_davis`'s session:
davisinteractive's robot, RS4, J&F) on the same video with the same path and `--size`.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from common.inference.fast import PRECISIONS
from common.runtime.device import add_device_argument, pick_device, sleeping_cpu_threads
from common.runtime.errors import UserError, run_cli
from common.runtime.training_arguments import at_least

if TYPE_CHECKING:  # torch and the model load after the arguments are parsed: --help answers at once
    from gis.app.session import Model, Video


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gis.app.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--height", type=at_least(16), default=480)
    p.add_argument("--width", type=at_least(16), default=854)
    p.add_argument("--frames", type=at_least(2), default=10)
    p.add_argument("--sizes", nargs="+", default=["full", "360", "240"], help="working sizes: 'full' or a shorter side")
    p.add_argument("--paths", nargs="+", default=["faithful", "fast"], choices=["faithful", "fast"])
    p.add_argument("--weights", default="seeded")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="the fast path's head precision, as gis.app's --precision (auto: the device's default)")
    p.add_argument("--robot-rounds", type=at_least(0), default=3,
                   help="interactions of the robot benchmark per configuration (0: no J&F column)")
    add_device_argument(p)
    return p


def _size(text: str) -> Optional[int]:
    if text == "full":
        return None
    if not text.isdigit() or not 16 <= int(text) <= 4096:
        raise UserError(f"--sizes takes 'full' or a shorter side of 16..4096 px, got {text!r}")
    return int(text)


def time_round(model: Model, video: Video, size: Optional[int]) -> tuple:
    from gis.app.session import TabSession
    session = TabSession("benchmark", video, model, "RS1", size=size)
    mid = video.frames.shape[0] // 2
    mask = video.gt[mid] == 1
    ys, xs = np.nonzero(mask)
    y, x = ys.mean() / mask.shape[0], xs.mean() / mask.shape[1]
    stroke = {"frame": mid, "object_id": 1, "duration": 1.0,
              "path": [[max(0.0, x - 0.05), y], [x, y], [min(1.0, x + 0.05), y]]}
    start = time.perf_counter()
    session.preview_blocking(session.add_stroke(stroke))
    preview = time.perf_counter() - start
    session.start_round()
    start = time.perf_counter()
    session.run_round_blocking()
    return preview, time.perf_counter() - start, session.work.shape[1:3]


def robot_jf(model: Model, davis_root: Path, size: Optional[int], rounds: int, out: Path) -> float:
    """J&F after `rounds` interactions of the robot benchmark (RS4, optimising J&F) on `davis_root`'s val video."""
    import torch

    from gis.framework import registered_sequences
    from gis.ivos_main_davis import run_ivos

    with torch.no_grad(), registered_sequences(davis_root, "val") as names:
        summary = run_ivos(model.net, davis_root, out, metric="J_AND_F", guide="RS4", samples=[(names[0], 1)],
                           max_interactions=rounds, max_time=3600 * rounds, echo=False, fast=model.fast, size=size)
    return summary["metric_per_interaction"]["J_AND_F"][-1]


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    sizes = [_size(s) for s in args.sizes]
    sleeping_cpu_threads()  # as the app
    import torch

    from common.data.datasets import DAVIS
    from common.data.synthetic import make_davis_sample
    from common.inference.fast import FastOptions
    from gis.app.session import Model, Video
    from gis.fast import FastGIS
    from gis.model import load_model

    device = pick_device(args.device)
    net = load_model(args.weights, device)
    with tempfile.TemporaryDirectory() as tmp:
        root = make_davis_sample(f"{tmp}/DAVIS", seed=0, n_videos=1, n_frames=args.frames, height=args.height,
                                 width=args.width, n_objects=2, n_train=0, n_test_dev=0, scribbles=True)
        clip = DAVIS(root).video("synth-val-00")
        frames = np.stack([np.asarray(clip.load_frame(i)) for i in range(args.frames)])
        video = Video("synth-val-00", frames, 2, DAVIS(root).gt_masks("synth-val-00"))
        print(f"{args.frames} frames of {args.width}x{args.height}, 2 objects, {device}, {torch.get_num_threads()} "
              f"threads (OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}), weights {args.weights}, "
              f"fast path's head precision {args.precision}")
        jf = f" robot J&F ({args.robot_rounds} rounds) |" if args.robot_rounds else ""
        print(f"| path | working size | s/preview | s/round | s/frame | 70-frame round (s, extrapolated) |{jf}")
        print("| --- | --- | ---: | ---: | ---: | ---: |" + " ---: |" * bool(args.robot_rounds))
        for path in args.paths:
            model = Model(net, FastGIS(net, FastOptions(precision=args.precision)) if path == "fast" else None)
            time_round(model, Video(video.name, video.frames[:2], 2, video.gt[:2]), 16)  # warm-up: one-time costs
            for size in sizes:
                preview, seconds, (h, w) = time_round(model, video, size)
                per_frame = seconds / args.frames
                label = f"{w}×{h}" + (" (full)" if size is None else f" (`--size {size}`)")
                row = f"| {path} | {label} | {preview:.2f} | {seconds:.1f} | {per_frame:.2f} | {70 * per_frame:.0f} |"
                if args.robot_rounds:
                    row += f" {robot_jf(model, root, size, args.robot_rounds, Path(tmp) / f'{path}-{size}'):.3f} |"
                print(row, flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main)

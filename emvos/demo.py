"""Hooks for `make demo` / `make bench` (see vos/demo.py, vos/bench.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
import torch

from common.data.datasets import DAVIS, Video
from common.evaluation.evaluate import evaluate
from common.modeling.densenet import DenseNetEncoder
from common.inference.runner import run_videos
from common.hub.checkpoints import build_with_weights, official_or_seeded
from emvos.fast import FastEMVOS
from emvos.inference import segment_video
from emvos.model import EMVOS

FRAME_ENCODER = DenseNetEncoder  # called once per frame (batch = frames): drives progress bars
OFFICIAL_WEIGHTS = "emvos-coco_davis"  # what `vos.segment` / `vos.compare` load by default
PUBLISHED_DAVIS17_VAL = None  # no J&F table published with the official code


def run_demo(davis_root: Path, ytvos_root: Optional[Path], out_dir: Path, device: torch.device) -> Dict[str, float]:
    """DAVIS 2017 val of the sample -> PNGs + J&F (and the YouTube-VOS sample's PNGs when given).

    The small synthetic frames are segmented at their stored size; the official 480p rule would only upscale them.
    """
    from common.data.datasets import YouTubeVOS

    out_dir = Path(out_dir)
    model = official_or_seeded("emvos-coco_davis", EMVOS, device)
    segment = lambda v: segment_video(model, v, device, resize=False)  # noqa: E731
    run_videos(DAVIS(davis_root, 2017, "val").videos(), segment, out_dir / "davis17-val", device=device,
               desc="EMVOS DAVIS17 val", overwrite=True)
    if ytvos_root is not None:
        ytvos_model = official_or_seeded("emvos-coco_ytvos", EMVOS, device)
        run_videos(YouTubeVOS(ytvos_root, 2018, "valid").videos(),
                   lambda v: segment_video(ytvos_model, v, device, resize=False), out_dir / "ytvos18-valid",
                   device=device, desc="EMVOS YTVOS18 valid", overwrite=True)
    return evaluate(davis_root, out_dir / "davis17-val", split="val", year=2017, progress=False).global_row


def make_segmenter(device: torch.device, fast: bool = False, compile: bool = False,
                   weights: Optional[str] = None, resize: bool = True) -> Callable[[Video], Dict[int, np.ndarray]]:
    """Video -> label maps with the official evaluator's settings (for benchmarks and `vos.segment`);
    `weights`: registry name or checkpoint path (None or "seeded": seeded initialisation);
    `fast=True`: the batched fast mode (`emvos.fast`) instead of the faithful per-object loop, `compile=True`
    with its encoder and decoder compiled; `resize=False` skips the 480p rule."""
    model = build_with_weights(EMVOS, weights, device, paper="EMVOS")
    runner = FastEMVOS(model, compile=compile) if fast else model
    return lambda video: segment_video(runner, video, device, resize)

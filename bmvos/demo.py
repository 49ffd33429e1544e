"""Hooks for `make demo` / `make bench` (see vos/demo.py, vos/bench.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
import torch

from bmvos.inference import SHORT_SIDE, make_segmenter as segmenter_for
from bmvos.main_runfile import run_benchmark
from bmvos.model import BMVOS, FastBMVOS
from bmvos.reproduce import PUBLISHED
from common.data.datasets import Video
from common.modeling.densenet import DenseNetEncoder
from common.hub.checkpoints import build_with_weights, official_or_seeded

FRAME_ENCODER = DenseNetEncoder  # called once per frame (batch = frames): drives progress bars
OFFICIAL_WEIGHTS = "bmvos-davis"  # what `vos.segment` / `vos.compare` load by default
PUBLISHED_DAVIS17_VAL = PUBLISHED["DAVIS17_val"][0]  # J&F-Mean in %, the paper's table


def run_demo(davis_root: Path, ytvos_root: Optional[Path], out_dir: Path, device: torch.device) -> Dict[str, float]:
    """DAVIS 2017 val of the sample (PNGs + J&F), and the YouTube-VOS sample's submission if given.

    The small synthetic frames are segmented at their stored size; the official 480p resize would only
    upscale them.
    """
    out_dir = Path(out_dir)
    model = official_or_seeded("bmvos-davis", BMVOS, device)
    result = run_benchmark(model, "DAVIS17_val", davis_root, ytvos_root, out_dir, device, short_side=None,
                           overwrite=True)
    if ytvos_root is not None:
        ytvos_model = official_or_seeded("bmvos-ytvos", BMVOS, device)
        run_benchmark(ytvos_model, "YTVOS18_val", davis_root, ytvos_root, out_dir, device, short_side=None,
                      overwrite=True)
    assert result is not None
    return result.global_row


def make_segmenter(device: torch.device, fast: bool = False, compile: bool = False,
                   weights: Optional[str] = None, resize: bool = True) -> Callable[[Video], Dict[int, np.ndarray]]:
    """Video -> label maps with the official evaluator's settings (for benchmarks and `vos.segment`);
    `weights`: registry name or checkpoint path (None or "seeded": seeded initialisation);
    `fast=True`: fast mode (`FastBMVOS`: objects batched, autocast on CUDA, channels_last), `compile=True`
    with its stages compiled; `resize=False` skips the 480p rule."""
    model = build_with_weights(BMVOS, weights, device, paper="BMVOS")
    return segmenter_for(FastBMVOS(model, compile=compile) if fast else model, SHORT_SIDE if resize else None)

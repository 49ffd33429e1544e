"""Hooks for `make demo` / `make bench` (see vos/demo.py, vos/bench.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
import torch

from common.data.datasets import Video
from common.hub.checkpoints import build_with_weights, official_or_seeded
from hmmn.eval_davis import run_split
from hmmn.fast import FastHMMN
from hmmn.inference import davis_segmenter
from hmmn.model import HMMN, QueryEncoder
from hmmn.reproduce import PUBLISHED

FRAME_ENCODER = QueryEncoder  # called once per frame after the first: drives progress bars
OFFICIAL_WEIGHTS = "hmmn"  # what `vos.segment` / `vos.compare` load by default
PUBLISHED_DAVIS17_VAL = PUBLISHED["DAVIS 2017 val"]  # J&F-Mean in %


def run_demo(davis_root: Path, ytvos_root: Optional[Path], out_dir: Path, device: torch.device) -> Dict[str, float]:
    """DAVIS 2017 val of the sample (PNGs + J&F), and the YouTube-VOS sample's submission if given."""
    model = official_or_seeded("hmmn", HMMN, device)
    result = run_split(model, device, 17, "val", str(davis_root), Path(out_dir) / "davis17-val", overwrite=True)
    if ytvos_root is not None:
        run_split(model, device, 18, "valid", str(ytvos_root), Path(out_dir) / "ytvos18-valid", overwrite=True)
    assert result is not None
    return result.global_row


def make_segmenter(device: torch.device, fast: bool = False, compile: bool = False,
                   weights: Optional[str] = None) -> Callable[[Video], Dict[int, np.ndarray]]:
    """DAVIS video -> label maps with upstream's memory schedule, at the stored size as upstream's tester
    runs (for benchmarks and `vos.segment`); `weights`: registry name or checkpoint path (None or
    "seeded": seeded initialisation); `fast=True`: hmmn.fast (float32, the verified setting); `compile=True`
    also compiles its encoders and decoder."""
    model = build_with_weights(HMMN, weights, device, paper="HMMN")
    return davis_segmenter(FastHMMN(model, compile=compile) if fast else model, device)

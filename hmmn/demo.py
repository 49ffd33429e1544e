"""Hooks for `make demo` / `make bench` (see common/demo.py, common/bench.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
import torch

from common.datasets import Video
from common.weights import official_or_seeded, seeded_init
from hmmn.eval_davis import run_split
from hmmn.fast import FastHMMN
from hmmn.inference import davis_segmenter
from hmmn.model import HMMN


def run_demo(davis_root: Path, ytvos_root: Optional[Path], out_dir: Path, device: torch.device) -> Dict[str, float]:
    """DAVIS 2017 val of the sample (PNGs + J&F), and the YouTube-VOS sample's submission if given."""
    model = official_or_seeded("hmmn", HMMN, device)
    result = run_split(model, device, 17, "val", str(davis_root), Path(out_dir) / "davis17-val", overwrite=True)
    if ytvos_root is not None:
        run_split(model, device, 18, "valid", str(ytvos_root), Path(out_dir) / "ytvos18-valid", overwrite=True)
    assert result is not None
    return result.global_row


def make_segmenter(device: torch.device, fast: bool = False,
                   compile: bool = False) -> Callable[[Video], Dict[int, np.ndarray]]:
    """DAVIS video -> label maps, seeded weights, upstream's memory schedule (for benchmarks);
    `fast=True`: hmmn.fast (float32, the verified setting); `compile=True` also compiles its encoders and
    decoder."""
    model = seeded_init(HMMN, device)
    return davis_segmenter(FastHMMN(model, compile=compile) if fast else model, device)

"""Hooks for `make demo` / `make bench` (see vos/demo.py, vos/bench.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
import torch

from common.data.datasets import Video
from common.modeling.densenet import DenseNetEncoder
from common.hub.checkpoints import SEEDED, build_with_weights, cached_path, official_or_seeded
from tbd.inference import make_segment
from tbd.model import TBD
from tbd.reproduce import PUBLISHED
from tbd.run import run_sets

FRAME_ENCODER = DenseNetEncoder  # called once per frame (batch = frames): drives progress bars
OFFICIAL_WEIGHTS = "tbd-davis"  # what `vos.segment` / `vos.compare` load by default
PUBLISHED_DAVIS17_VAL = PUBLISHED["davis17-val"][0]  # J&F-Mean in %, the COCO-pretrained model

def run_demo(davis_root: Path, ytvos_root: Optional[Path], out_dir: Path, device: torch.device) -> Dict[str, float]:
    """DAVIS 2017 val of the sample (PNGs + J&F), and the YouTube-VOS sample's submission if given.

    The small synthetic frames are segmented at their stored size; the official 480p rule would only
    upscale them.
    """
    sets, roots = ["davis17-val"], {"davis": Path(davis_root), "ytvos": None}
    if ytvos_root is not None:
        sets.append("ytvos18-valid")
        roots["ytvos"] = Path(ytvos_root)
    names = ["tbd-davis", "tbd-ytvos"][:len(sets)]
    missing = [name for name in names if cached_path(name) is None]
    if missing:  # one seeded model for every set, so the progress lines name the weights really used
        models, weights = {SEEDED: official_or_seeded(missing[0], TBD, device)}, SEEDED
    else:
        models, weights = {name: official_or_seeded(name, TBD, device) for name in names}, None
    summary = run_sets(sets, roots, weights, Path(out_dir), device, resize=False, overwrite=True, models=models)
    row = summary["davis17-val"]
    return {k: v for k, v in row.items() if k not in ("fps", "frames")}


def make_segmenter(device: torch.device, fast: bool = False, compile: bool = False,
                   weights: Optional[str] = None, resize: bool = True) -> Callable[[Video], Dict[int, np.ndarray]]:
    """Video -> label maps with the official evaluator's settings (for benchmarks and `vos.segment`).

    `weights`: registry name or checkpoint path (None or "seeded": seeded initialisation). `fast=True`: the
    batched inference of `tbd.fast` with its defaults for `device`; `compile=True` compiles its encoder and
    decoder head. `resize=False` skips the 480p rule."""
    model = build_with_weights(TBD, weights, device, paper="TBD")
    if fast:
        from tbd.fast import FastOptions, FastTBD

        model = FastTBD(model, FastOptions.for_device(device, compile=compile))
    return make_segment(model, device, resize=resize)

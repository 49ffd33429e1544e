"""Hooks for `make demo` / `make bench` (see common/demo.py, common/bench.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
import torch

from bmvos.inference import SHORT_SIDE, make_segmenter as segmenter_for
from bmvos.main_runfile import build_model, run_benchmark
from bmvos.model import BMVOS, FastBMVOS
from common.datasets import Video
from common.weights import cached_path

SEED = 0


def seeded_model(device: torch.device) -> BMVOS:
    """The official initialisation (Kaiming convs, torchvision DenseNet init) under a fixed seed."""
    torch.manual_seed(SEED)
    return BMVOS().to(device).eval()


def demo_model(name: str, device: torch.device) -> BMVOS:
    """Official weights `name` when already in the weights cache, else a seeded initialisation (says which)."""
    path = cached_path(name)
    if path is not None:
        print(f"bmvos: official weights {path}")
        return build_model(name.split("-")[1], path, device)
    print(f"bmvos: official weights not in the cache (python -m common.weights fetch {name}); "
          f"using a seeded random initialisation, so the scores mean nothing")
    return seeded_model(device)


def run_demo(davis_root: Path, ytvos_root: Optional[Path], out_dir: Path, device: torch.device) -> Dict[str, float]:
    """DAVIS 2017 val of the sample (PNGs + J&F), and the YouTube-VOS sample's submission if given.

    The small synthetic frames are segmented at their stored size; the official 480p resize would only
    upscale them.
    """
    out_dir = Path(out_dir)
    result = run_benchmark(demo_model("bmvos-davis", device), "DAVIS17_val", davis_root, ytvos_root, out_dir,
                           device, short_side=None, overwrite=True)
    if ytvos_root is not None:
        run_benchmark(demo_model("bmvos-ytvos", device), "YTVOS18_val", davis_root, ytvos_root, out_dir, device,
                      short_side=None, overwrite=True)
    assert result is not None
    return result.global_row


def make_segmenter(device: torch.device, fast: bool = False) -> Callable[[Video], Dict[int, np.ndarray]]:
    """Video -> label maps with seeded weights and the official evaluator's settings (for benchmarks);
    `fast=True`: fast mode (`FastBMVOS`: objects batched, autocast on CUDA, channels_last)."""
    model = seeded_model(device)
    return segmenter_for(FastBMVOS(model) if fast else model, SHORT_SIDE)

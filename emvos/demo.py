"""Hooks for `make demo` / `make bench` (see common/demo.py, common/bench.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
import torch

from common.datasets import DAVIS, Video
from common.evaluate import evaluate
from common.runner import run_videos
from common.weights import cached_path, load_into
from emvos.fast import FastEMVOS
from emvos.inference import segment_video
from emvos.model import EMVOS

SEED = 0


def seeded_model(device: torch.device) -> EMVOS:
    """The official initialisation (Kaiming convs, torchvision DenseNet init) under a fixed seed."""
    torch.manual_seed(SEED)
    return EMVOS().to(device).eval()


def demo_model(name: str, device: torch.device) -> EMVOS:
    """Official weights `name` when already in the weights cache, else a seeded initialisation (says which)."""
    path = cached_path(name)
    if path is None:
        print(f"emvos: official weights not in the cache (python -m common.weights fetch {name}); "
              f"using a seeded random initialisation, so the scores mean nothing")
        return seeded_model(device)
    print(f"emvos: official weights {path}")
    model = EMVOS()
    load_into(model, str(path))
    return model.to(device).eval()


def run_demo(davis_root: Path, ytvos_root: Optional[Path], out_dir: Path, device: torch.device) -> Dict[str, float]:
    """DAVIS 2017 val of the sample -> PNGs + J&F (and the YouTube-VOS sample's PNGs when given).

    The small synthetic frames are segmented at their stored size; the official 480p rule would only upscale them.
    """
    from common.datasets import YouTubeVOS

    out_dir = Path(out_dir)
    model = demo_model("emvos-coco_davis", device)
    segment = lambda v: segment_video(model, v, device, resize=False)  # noqa: E731
    run_videos(DAVIS(davis_root, 2017, "val").videos(), segment, out_dir / "DAVIS17_val", device=device,
               desc="EMVOS DAVIS17 val", overwrite=True)
    if ytvos_root is not None:
        ytvos_model = demo_model("emvos-coco_ytvos", device)
        run_videos(YouTubeVOS(ytvos_root, 2018, "valid").videos(),
                   lambda v: segment_video(ytvos_model, v, device, resize=False), out_dir / "YTVOS18_val",
                   device=device, desc="EMVOS YTVOS18 valid", overwrite=True)
    return evaluate(davis_root, out_dir / "DAVIS17_val", split="val", year=2017, progress=False).global_row


def make_segmenter(device: torch.device, fast: bool = False) -> Callable[[Video], Dict[int, np.ndarray]]:
    """Video -> label maps with seeded weights and the official evaluator's settings (for benchmarks);
    `fast=True`: the batched fast mode (`emvos.fast`) instead of the faithful per-object loop."""
    model = seeded_model(device)
    runner = FastEMVOS(model) if fast else model
    return lambda video: segment_video(runner, video, device)

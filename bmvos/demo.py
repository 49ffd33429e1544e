"""`make demo`'s BMVOS part (see vos/demo.py): the generated sample segmented at its stored size (the official
480p rule would only upscale it) and scored."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import torch

from bmvos import TITLE
from bmvos.inference import segment_video
from bmvos.main_runfile import MODELS
from bmvos.model import BMVOS
from common.inference.benchmark_sets import run_sample


def run_demo(davis_root: Path, ytvos_root: Optional[Path], out_dir: Path, device: torch.device,
             trained: Optional[Path] = None) -> Dict[str, Any]:
    """DAVIS 2017 val of the sample (PNGs + J&F) and, when given, its YouTube-VOS submission; see `run_sample`."""
    return run_sample(davis_root, ytvos_root, out_dir, device, title=TITLE, build=BMVOS,
                      default_weights=MODELS, segment=lambda model, video: segment_video(model, video, resize=False),
                      trained=trained)

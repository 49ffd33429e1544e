"""`make demo`'s EMVOS part (see vos/demo.py): the generated sample segmented at its stored size (the official
480p rule would only upscale it) and scored."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import torch

from common.inference.benchmark_sets import run_sample
from emvos import TITLE
from emvos.inference import segment_video
from emvos.model import EMVOS
from emvos.run import DEFAULT_WEIGHTS


def run_demo(davis_root: Path, ytvos_root: Optional[Path], out_dir: Path, device: torch.device,
             trained: Optional[Path] = None) -> Dict[str, Any]:
    """DAVIS 2017 val of the sample (PNGs + J&F) and, when given, its YouTube-VOS submission; see `run_sample`."""
    return run_sample(davis_root, ytvos_root, out_dir, device, title=TITLE, build=EMVOS,
                      default_weights=DEFAULT_WEIGHTS, segment=lambda model, video: segment_video(model, video, resize=False),
                      trained=trained)

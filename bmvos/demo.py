"""`make demo` (see vos/demo.py): BMVOS on the synthetic samples."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import torch

from bmvos import TITLE
from bmvos.inference import segment_video
from bmvos.main_runfile import MODELS
from bmvos.model import BMVOS
from common.evaluation.evaluate import GLOBAL_COLUMNS
from common.hub.checkpoints import official_or_seeded
from common.inference.benchmark_sets import run_sets


def run_demo(davis_root: Path, ytvos_root: Optional[Path], out_dir: Path, device: torch.device) -> Dict[str, float]:
    """DAVIS 2017 val of the sample (PNGs + J&F), and the YouTube-VOS sample's submission if given.

    The official weights when they are in the cache, else the seeded initialisation (never a download).
    The small synthetic frames are segmented at their stored size; the official 480p resize would only
    upscale them.
    """
    sets = ["davis17-val", *(["ytvos18-valid"] if ytvos_root is not None else [])]
    summary = run_sets(sets, {"davis": davis_root, "ytvos": ytvos_root}, Path(out_dir), device, title=TITLE,
                       weights=None, default_weights=MODELS,
                       load_model=lambda name: official_or_seeded(name, BMVOS, device),
                       segment=lambda model, video: segment_video(model, video, resize=False), overwrite=True)
    return {column: summary["davis17-val"][column] for column in GLOBAL_COLUMNS}

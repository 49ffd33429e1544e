"""`make demo` for TBD (`vos.demo`): the synthetic DAVIS sample end to end, official weights when cached."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import torch

from common.hub.checkpoints import SEEDED, cached_path, official_or_seeded
from common.inference.benchmark_sets import run_sets
from tbd import TITLE
from tbd.inference import segment_video
from tbd.model import TBD
from tbd.run import DEFAULT_WEIGHTS


def run_demo(davis_root: Path, ytvos_root: Optional[Path], out_dir: Path, device: torch.device) -> Dict[str, float]:
    """DAVIS 2017 val of the sample (PNGs + J&F), and the YouTube-VOS sample's submission if given.

    The small synthetic frames are segmented at their stored size; the official 480p rule would only
    upscale them.
    """
    sets, roots = ["davis17-val"], {"davis": Path(davis_root), "ytvos": None}
    if ytvos_root is not None:
        sets.append("ytvos18-valid")
        roots["ytvos"] = Path(ytvos_root)
    names = [DEFAULT_WEIGHTS["davis"], DEFAULT_WEIGHTS["ytvos"]][:len(sets)]
    missing = [name for name in names if cached_path(name) is None]
    if missing:  # one seeded model for every set, so the progress lines name the weights really used
        models, weights = {SEEDED: official_or_seeded(missing[0], TBD, device)}, SEEDED
    else:
        models, weights = {name: official_or_seeded(name, TBD, device) for name in names}, None
    summary = run_sets(sets, roots, Path(out_dir), device, title=TITLE, weights=weights,
                       default_weights=DEFAULT_WEIGHTS, load_model=models.__getitem__,
                       segment=lambda model, video: segment_video(model, video, resize=False), overwrite=True)
    row = summary["davis17-val"]
    return {k: v for k, v in row.items() if k not in ("fps", "frames", "results")}  # the J&F row

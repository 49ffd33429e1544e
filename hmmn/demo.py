"""`make demo`'s HMMN part (see vos/demo.py): the sample's DAVIS 2017 val, and its YouTube-VOS submission."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import torch

from common.evaluation.evaluate import GLOBAL_COLUMNS
from common.hub.checkpoints import official_or_seeded
from common.inference.benchmark_sets import run_sets
from hmmn import TITLE
from hmmn.eval_davis import OFFICIAL, UNDER_ROOT, hmmn_segment
from hmmn.model import HMMN


def run_demo(davis_root: Path, ytvos_root: Optional[Path], out_dir: Path, device: torch.device) -> Dict[str, float]:
    """DAVIS 2017 val of the sample (PNGs + J&F in `out_dir/davis17-val`), and the YouTube-VOS sample's submission
    (`out_dir/ytvos18-valid`) if given; official weights when they are in the cache, else a seeded initialisation.
    Returns the DAVIS 2017 val J&F row."""
    sets = ["davis17-val"] + (["ytvos18-valid"] if ytvos_root is not None else [])
    summary = run_sets(sets, {"davis": davis_root, "ytvos": ytvos_root}, Path(out_dir), device, title=TITLE,
                       weights=None, default_weights=OFFICIAL,
                       load_model=lambda name: official_or_seeded(name, HMMN, device),  # never downloads: offline
                       segment=hmmn_segment(mem_every=5), overwrite=True, layout=UNDER_ROOT)
    return {column: summary["davis17-val"][column] for column in GLOBAL_COLUMNS}

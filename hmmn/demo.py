"""`make demo`'s HMMN part (see vos/demo.py): the generated sample segmented (at its stored size, as HMMN's
tester always runs) and scored."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import torch

from common.inference.benchmark_sets import run_sample
from hmmn import TITLE
from hmmn.eval_davis import OFFICIAL, UNDER_ROOT, hmmn_segment
from hmmn.model import HMMN


def run_demo(davis_root: Path, ytvos_root: Optional[Path], out_dir: Path, device: torch.device,
             trained: Optional[Path] = None) -> Dict[str, Any]:
    """DAVIS 2017 val of the sample (PNGs + J&F) and, when given, its YouTube-VOS submission; see `run_sample`."""
    return run_sample(davis_root, ytvos_root, out_dir, device, title=TITLE, build=HMMN,
                      default_weights=OFFICIAL, segment=hmmn_segment(mem_every=5), layout=UNDER_ROOT,
                      trained=trained)

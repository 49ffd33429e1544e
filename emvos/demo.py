"""`make demo`'s EMVOS part (see vos/demo.py): the synthetic sample segmented and scored."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import torch

from common.data.datasets import DAVIS, YouTubeVOS
from common.evaluation.evaluate import evaluate
from common.hub.checkpoints import official_or_seeded
from common.inference.runner import run_videos
from emvos.checkpoints import OFFICIAL_WEIGHTS
from emvos.inference import segment_video
from emvos.model import EMVOS


def run_demo(davis_root: Path, ytvos_root: Optional[Path], out_dir: Path, device: torch.device) -> Dict[str, float]:
    """DAVIS 2017 val of the sample -> PNGs + J&F (and the YouTube-VOS sample's PNGs when given).

    The small synthetic frames are segmented at their stored size; the official 480p rule would only upscale them.
    """
    out_dir = Path(out_dir)
    model = official_or_seeded(OFFICIAL_WEIGHTS, EMVOS, device)
    run_videos(DAVIS(davis_root, 2017, "val").videos(), lambda v: segment_video(model, v, resize=False),
               out_dir / "davis17-val", device=device, desc="EMVOS DAVIS17 val", overwrite=True)
    if ytvos_root is not None:
        ytvos_model = official_or_seeded("emvos-coco_ytvos", EMVOS, device)
        run_videos(YouTubeVOS(ytvos_root, 2018, "valid").videos(),
                   lambda v: segment_video(ytvos_model, v, resize=False), out_dir / "ytvos18-valid",
                   device=device, desc="EMVOS YTVOS18 valid", overwrite=True)
    return evaluate(davis_root, out_dir / "davis17-val", split="val", year=2017, progress=False).global_row

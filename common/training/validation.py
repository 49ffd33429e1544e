"""Validation during training: J&F on DAVIS 2017 val, as the official trainers compute it.

`davis_validator(davis_root, segment)` returns a `validate(model) -> float` for `Trainer`. `segment(model,
video)` is the paper's inference on one `common.data.datasets.Video` and returns `{frame index: uint8 label map}`
for every frame. The score is J&F-Mean from `common.evaluation.evaluate` (davis2017-evaluation rules: frames
1..T-2, per-object means), in [0, 1] like upstream.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import torch.nn as nn

from common.data.datasets import DAVIS
from common.data.palette import write_label_png
from common.evaluation.evaluate import evaluate
from common.training.trainer import Validate

Segment = Callable[[nn.Module, "object"], Dict[int, np.ndarray]]


def davis_validator(davis_root: Path, segment: Segment, year: int = 2017, split: str = "val",
                    workers: int = 1) -> Validate:
    videos = DAVIS(davis_root, year=year, split=split).videos()  # checks the layout now, not mid-training

    def validate(model: nn.Module) -> float:
        with tempfile.TemporaryDirectory(prefix="val_") as tmp:
            for video in videos:
                for i, label in segment(model, video).items():
                    write_label_png(Path(tmp) / video.name / f"{video.frame_names[i]}.png", label)
            result = evaluate(davis_root, tmp, split=split, year=year, workers=workers, progress=False)
            return float(result.global_row["J&F-Mean"])

    return validate

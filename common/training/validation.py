"""Validation during training: J&F on DAVIS 2017 val, as the official trainers compute it.

`davis_validator(davis_root, segment)` returns a `validate(model) -> float` for `Trainer`. `segment(model,
video)` is the paper's inference on one `common.data.datasets.Video` and returns `{frame index: uint8 label map}`
for every frame. The score is J&F-Mean from `common.evaluation.evaluate` (davis2017-evaluation rules: frames 1..T-2,
per-object means) when that module is available; otherwise the per-object mean IoU (J only) over the same
frames, with a notice, so a missing evaluator never stops a training run.
"""
from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import torch.nn as nn

from common.training.trainer import Validate

Segment = Callable[[nn.Module, "object"], Dict[int, np.ndarray]]


def _mean_iou_j(pred: np.ndarray, gt: np.ndarray) -> list:
    """Per-object mean J over frames 1..T-2 (void pixels 255 in `gt` ignored), like db_eval_iou."""
    pred, gt = pred[1:-1], gt[1:-1]
    void = gt == 255
    scores = []
    for k in sorted(set(np.unique(gt).tolist()) - {0, 255}):
        p, g = (pred == k) & ~void, (gt == k) & ~void
        inter = (p & g).sum(axis=(1, 2)).astype(np.float64)
        union = (p | g).sum(axis=(1, 2)).astype(np.float64)
        j = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
        scores.append(float(j.mean()))
    return scores


def davis_validator(davis_root: Path, segment: Segment, year: int = 2017, split: str = "val",
                    workers: int = 1) -> Validate:
    from common.data.datasets import DAVIS  # checks the layout when the validator is built, not mid-training

    dataset = DAVIS(davis_root, year=year, split=split)
    videos = dataset.videos()
    try:
        evaluate = importlib.import_module("common.evaluation.evaluate").evaluate
        from common.data.palette import write_label_png
    except (ImportError, AttributeError):
        evaluate = None
        print("notice: common.evaluation.evaluate is not available; validation reports per-frame mean IoU (J) instead of J&F")

    def validate(model: nn.Module) -> float:
        if evaluate is None:
            scores = []
            for video in videos:
                labels = segment(model, video)
                pred = np.stack([labels[i] for i in range(len(video.frame_paths))])
                scores += _mean_iou_j(pred, dataset.gt_masks(video.name))
            return float(np.mean(scores))
        with tempfile.TemporaryDirectory(prefix="val_") as tmp:
            for video in videos:
                for i, label in segment(model, video).items():
                    write_label_png(Path(tmp) / video.name / f"{video.frame_names[i]}.png", label)
            result = evaluate(davis_root, tmp, split=split, year=year, workers=workers, progress=False)
            return float(result.global_row["J&F-Mean"])

    return validate

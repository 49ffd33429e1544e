"""`-viz` output: mask overlays per frame and one mp4 per sequence (upstream: ./viz/<run>/<seq>.mp4).

Overlays follow upstream's `overlay_davis` and videos are encoded by ffmpeg (libx264, as upstream) when it
is on PATH, otherwise by OpenCV's mp4v writer; both live in `common.data.overlay`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np

from common.data.overlay import overlay, write_mp4


def save_visualization(frames: Sequence[np.ndarray], labels: Mapping[int, np.ndarray], folder: Path,
                       video_path: Path) -> Path:
    """Overlay JPEGs `folder/f<i>.jpg` for every labelled frame and the mp4 `video_path`."""
    folder.mkdir(parents=True, exist_ok=True)
    overlays = []
    for index in sorted(labels):
        canvas = overlay(frames[index], labels[index])
        cv2.imwrite(str(folder / f"f{index}.jpg"), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
        overlays.append(canvas)
    return write_mp4(overlays, video_path)

"""Mask overlays and mp4 encoding, shared by HMMN's `-viz` output and `vos.segment` / `vos.compare`.

Overlays follow HMMN's upstream `overlay_davis` (40 % frame, 60 % doubled palette colour, black contours),
with colours clipped instead of wrapping around uint8. Videos are encoded by ffmpeg (libx264, as HMMN's
upstream) when asked for and on PATH, otherwise by OpenCV's mp4v writer; either way the file is checked
and renamed into place only when written.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from common.data.palette import DAVIS_PALETTE
from common.runtime.errors import UserError


def _dilated(mask: np.ndarray) -> np.ndarray:
    from scipy.ndimage import binary_dilation  # here: scipy.ndimage takes half a second to import

    return binary_dilation(mask)


FPS = 10
ALPHA = 0.4


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """uint8 RGB `[H, W, 3]` with each object tinted by its palette colour and outlined in black."""
    colors = np.minimum(DAVIS_PALETTE.astype(np.float64) * 2, 255)
    out = image.copy()
    for object_id in np.unique(labels):
        if object_id == 0:
            continue
        mask = labels == object_id
        tinted = image * alpha + (1 - alpha) * colors[object_id]
        out[mask] = np.clip(tinted[mask], 0, 255).astype(np.uint8)
        out[_dilated(mask) ^ mask] = 0
    return out


def write_mp4(frames: Iterable[np.ndarray], path: Path, fps: float = FPS, prefer_ffmpeg: bool = True) -> Path:
    """Encode RGB frames (all of one size) into `path`; raises UserError if no encoder produced a non-empty file.

    `prefer_ffmpeg=False` always uses OpenCV's mp4v writer, which keeps the frame size exactly (ffmpeg's
    yuv420p output is padded to even sizes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    if tmp.exists():
        tmp.unlink()
    ffmpeg = shutil.which("ffmpeg") if prefer_ffmpeg else None
    if ffmpeg:
        _encode_ffmpeg(ffmpeg, list(frames), tmp, fps)
    else:
        _encode_opencv(frames, tmp, fps)
    if not tmp.is_file() or tmp.stat().st_size == 0:
        encoder = "ffmpeg" if ffmpeg else "OpenCV VideoWriter (mp4v)"
        raise UserError(f"{encoder} did not write {path}; install ffmpeg (e.g. apt-get install ffmpeg) and rerun")
    tmp.replace(path)
    return path


def _encode_ffmpeg(ffmpeg: str, frames: Sequence[np.ndarray], path: Path, fps: float) -> None:
    h, w = frames[0].shape[:2]
    # yuv420p needs even sizes; pad by one pixel if needed instead of failing.
    command = [ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
               "-framerate", str(fps), "-i", "-", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",
               "-vcodec", "libx264", "-crf", "10", "-pix_fmt", "yuv420p", str(path)]
    data = b"".join(np.ascontiguousarray(f).tobytes() for f in frames)
    result = subprocess.run(command, input=data, capture_output=True)
    if result.returncode != 0:
        raise UserError(f"ffmpeg failed to write {path}: {result.stderr.decode(errors='replace').strip()[:300]}")


def _encode_opencv(frames: Iterable[np.ndarray], path: Path, fps: float) -> None:
    writer = None
    try:
        for frame in frames:
            if writer is None:
                h, w = frame.shape[:2]
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                if not writer.isOpened():
                    raise UserError(f"OpenCV cannot open a video writer for {path}; install ffmpeg and rerun")
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        if writer is not None:
            writer.release()

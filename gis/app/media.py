"""Frames in and out: custom videos, the images the page shows, and the custom-video export (palette PNGs and\nthe overlay mp4 that `vos.segment` writes too)."""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path
from typing import List, Tuple

import cv2
import numpy as np

from common.data.clip import list_frames
from common.data.overlay import overlay, write_mp4
from common.data.palette import DAVIS_PALETTE, read_rgb, write_label_png
from common.inference.video_input import SHORT_SIDE  # larger custom videos are shrunk to it: GIS runs on DAVIS 480p
from common.runtime.errors import UserError

MAX_FRAMES = 2000  # the per-frame probability maps live in memory


def _shrink(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    scale = SHORT_SIDE / min(h, w)
    if scale >= 1:
        return frame
    return cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


def _read_mp4(path: Path) -> List[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        while len(frames) <= MAX_FRAMES:
            ok, bgr = capture.read()
            if not ok:
                break
            frames.append(_shrink(bgr[:, :, ::-1]))
    finally:
        capture.release()
    if not frames:
        raise UserError(f"cannot read any frame from {path}; pass a video OpenCV can decode (e.g. H.264 .mp4) "
                        f"or a folder of frames")
    return frames


def _read_folder(path: Path) -> List[np.ndarray]:
    return [_shrink(read_rgb(p)) for p in list_frames(path, "--video")[:MAX_FRAMES + 1]]


def load_video(path: Path) -> Tuple[str, np.ndarray]:
    """(name, uint8 RGB [T,H,W,3]) of a video file or a folder of frames, shrunk to 480p if larger."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"--video {path} not found; pass a video file or a folder of frames")
    frames = _read_folder(path) if path.is_dir() else _read_mp4(path)
    if len(frames) > MAX_FRAMES:
        raise UserError(f"{path} has more than {MAX_FRAMES} frames; cut the video into shorter clips")
    if any(f.shape != frames[0].shape for f in frames):
        raise UserError(f"the frames of {path} do not all have one size; resize them to a common size")
    return path.stem if path.is_file() else path.name, np.ascontiguousarray(np.stack(frames))


def jpeg_bytes(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return data.tobytes()


def mask_png_bytes(labels: np.ndarray) -> bytes:
    """Labels as an RGBA PNG: objects in the DAVIS colours, background transparent (the page sets the opacity)."""
    rgba = np.zeros(labels.shape + (4,), dtype=np.uint8)
    rgba[..., :3] = DAVIS_PALETTE[labels][..., ::-1]  # OpenCV writes BGRA
    rgba[..., 3] = np.where(labels > 0, 255, 0)
    ok, data = cv2.imencode(".png", rgba)
    assert ok
    return data.tobytes()


def export_video_results(out_dir: Path, frames: np.ndarray, labels: np.ndarray, fps: float = 24.0) -> Path:
    """Write `masks/NNNNN.png` (palette), `overlay.mp4` and `<folder name>.zip` of both; returns the zip.

    Written into `<out_dir>.partial` and renamed, so a failed export leaves no half-written folder."""
    out_dir = Path(out_dir)
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    for index, frame_labels in enumerate(labels):
        write_label_png(partial / "masks" / f"{index:05d}.png", frame_labels)
    write_mp4((overlay(frame, frame_labels) for frame, frame_labels in zip(frames, labels)), partial / "overlay.mp4",
              fps=fps, prefer_ffmpeg=False)  # the overlays of vos.segment, at the frames' exact size
    zip_path = partial / f"{out_dir.name}.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted((partial / "masks").iterdir()):
            archive.write(path, f"masks/{path.name}")
        archive.write(partial / "overlay.mp4", "overlay.mp4")
    shutil.rmtree(out_dir, ignore_errors=True)
    partial.rename(out_dir)
    return out_dir / zip_path.name

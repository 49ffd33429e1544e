"""Frames in and out: custom videos, the images the page shows, and the custom-video export (palette PNGs and
an H.264 overlay mp4 at the clip's frame rate, encoded by the ffmpeg that the imageio-ffmpeg wheel ships)."""
from __future__ import annotations

import logging
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

import cv2
import numpy as np

from common.data.clip import list_frames
from common.data.overlay import overlay, write_mp4
from common.data.palette import DAVIS_PALETTE, read_rgb, write_label_png
from common.inference.video_input import SHORT_SIDE  # larger custom videos are shrunk to it: GIS runs on DAVIS 480p
from common.runtime.errors import UserError

MAX_FRAMES = 2000  # the per-frame probability maps live in memory
DAVIS_FPS = 24.0  # DAVIS's frame rate: frames from a folder play at it
CONTOUR_PX = 2  # the reference GUI's overlay_mask(contour_thickness=2)

log = logging.getLogger("gis.app")


def _shrink(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    scale = SHORT_SIDE / min(h, w)
    if scale >= 1:
        return frame
    return cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


def _read_mp4(path: Path) -> Tuple[List[np.ndarray], float]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    fps = capture.get(cv2.CAP_PROP_FPS)
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
    return frames, (float(fps) if np.isfinite(fps) and 0 < fps <= 1000 else DAVIS_FPS)


def _read_folder(path: Path) -> List[np.ndarray]:
    return [_shrink(read_rgb(p)) for p in list_frames(path, "--video")[:MAX_FRAMES + 1]]


def load_video(path: Path) -> Tuple[str, np.ndarray, float]:
    """(name, uint8 RGB [T,H,W,3], fps) of a video file or a folder of frames, shrunk to 480p if larger.
    The rate is the file's own; a folder of frames plays at DAVIS's 24 fps."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"--video {path} not found; pass a video file or a folder of frames")
    frames, fps = (_read_folder(path), DAVIS_FPS) if path.is_dir() else _read_mp4(path)
    if len(frames) > MAX_FRAMES:
        raise UserError(f"{path} has more than {MAX_FRAMES} frames; cut the video into shorter clips")
    if any(f.shape != frames[0].shape for f in frames):
        raise UserError(f"the frames of {path} do not all have one size; resize them to a common size")
    return path.stem if path.is_file() else path.name, np.ascontiguousarray(np.stack(frames)), fps


def jpeg_bytes(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return data.tobytes()


def contours(labels: np.ndarray, thickness: int = CONTOUR_PX) -> np.ndarray:
    """Ids on each object's inner border (`thickness` px), 0 elsewhere."""
    kernel = np.ones((2 * thickness + 1, 2 * thickness + 1), np.uint8)
    out = np.zeros_like(labels)
    for object_id in np.unique(labels):
        if object_id == 0:
            continue
        mask = (labels == object_id).astype(np.uint8)
        inner = cv2.erode(mask, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=1)
        out[(mask > 0) & (inner == 0)] = object_id
    return out


def mask_png_bytes(labels: np.ndarray, outline: bool = False) -> bytes:
    """Labels as an RGBA PNG: objects in the DAVIS colours, background transparent (the page sets the opacity);
    `outline` draws only each object's contour."""
    if outline:
        labels = contours(labels)
    rgba = np.zeros(labels.shape + (4,), dtype=np.uint8)
    rgba[..., :3] = DAVIS_PALETTE[labels][..., ::-1]  # OpenCV writes BGRA
    rgba[..., 3] = np.where(labels > 0, 255, 0)
    ok, data = cv2.imencode(".png", rgba)
    assert ok
    return data.tobytes()


def _ffmpeg() -> Optional[str]:
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:  # a platform without a bundled binary
        return None


def write_h264(frames: Iterable[np.ndarray], path: Path, fps: float) -> str:
    """Encode RGB frames as H.264 (yuv420p, +faststart: what browsers play) into `path`; returns the codec used.

    Without imageio-ffmpeg it falls back to OpenCV's MPEG-4 Part 2, which browsers cannot play, and says so."""
    ffmpeg = _ffmpeg()
    if ffmpeg is None:
        log.warning("imageio-ffmpeg is not installed: overlay.mp4 is MPEG-4 Part 2, which browsers do not play")
        write_mp4(frames, path, fps=fps, prefer_ffmpeg=False)
        return "mpeg4"
    frames = list(frames)
    h, w = frames[0].shape[:2]
    command = [ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
               "-framerate", f"{fps:.6g}", "-i", "-", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",  # yuv420p: even sizes
               "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
               "-movflags", "+faststart", "-f", "mp4", str(path)]
    data = b"".join(np.ascontiguousarray(f).tobytes() for f in frames)
    result = subprocess.run(command, input=data, capture_output=True)
    if result.returncode != 0 or not path.is_file() or path.stat().st_size == 0:
        raise UserError(f"ffmpeg (imageio-ffmpeg) could not write {path}: "
                        f"{result.stderr.decode(errors='replace').strip()[:300]}")
    return "h264"


def export_video_results(out_dir: Path, frames: np.ndarray, labels: np.ndarray, fps: float = DAVIS_FPS
                         ) -> Tuple[Path, str]:
    """Write `masks/NNNNN.png` (palette), `overlay.mp4` (H.264 at `fps`) and `<folder name>.zip` of both;
    returns the zip and the video codec.

    Written into `<out_dir>.partial` and renamed, so a failed export leaves no half-written folder."""
    out_dir = Path(out_dir)
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    for index, frame_labels in enumerate(labels):
        write_label_png(partial / "masks" / f"{index:05d}.png", frame_labels)
    codec = write_h264((overlay(frame, frame_labels) for frame, frame_labels in zip(frames, labels)),
                       partial / "overlay.mp4", fps)  # the overlays of vos.segment
    zip_path = partial / f"{out_dir.name}.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted((partial / "masks").iterdir()):
            archive.write(path, f"masks/{path.name}")
        archive.write(partial / "overlay.mp4", "overlay.mp4")
    shutil.rmtree(out_dir, ignore_errors=True)
    partial.rename(out_dir)
    return out_dir / zip_path.name, codec

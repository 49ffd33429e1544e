"""A user's own clip as a `common.data.datasets.Video`: a frame folder or a video file, and one first-frame mask.

Everything is checked before any model runs: the input exists and decodes, the folder holds frames, the
mask is a single-channel PNG of the frames' size with at least one object. The mask may be a DAVIS
palette PNG (object ids 1..N, 255 = void, read as background as the official loaders do) or a 0/255
binary PNG (one object). Object ids are renumbered 1..K for the models (HMMN tracks every id up to the
largest) and mapped back when results are written.

With `mask_frame=N` the mask belongs to frame N: the models see frames N.. as their video (they all
start from a mask on their first frame) and frames before N are written as background.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from common.data.datasets import Video
from common.data.palette import VOID_LABEL, image_size, read_label_png, read_rgb
from common.runtime.errors import UserError

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
DEFAULT_FPS = 10.0  # overlay frame rate for a frame folder (a video file keeps its own)


@dataclass
class ClipVideo(Video):
    """A `Video` whose frames may be decoded already (`decoded`) and whose given mask is held in memory."""

    decoded: Optional[np.ndarray] = None             # uint8 [T, H, W, 3] when read from a video file
    given: Dict[int, np.ndarray] = field(default_factory=dict)
    frame_size: Tuple[int, int] = (0, 0)

    @property
    def size(self) -> Tuple[int, int]:
        return self.frame_size

    def load_frames(self) -> np.ndarray:
        return self.decoded if self.decoded is not None else super().load_frames()

    def load_frame(self, index: int) -> np.ndarray:
        return self.decoded[index] if self.decoded is not None else super().load_frame(index)

    def load_given_masks(self, binarize: bool = False) -> Dict[int, np.ndarray]:
        return {t: (m != 0).astype(np.uint8) if binarize else m for t, m in self.given.items()}


@dataclass
class Clip:
    """The whole input: every frame, the mask and where it belongs, and the id mapping."""

    name: str
    frame_paths: List[Path]                  # one per frame (a video file: the file itself, repeated)
    decoded: Optional[np.ndarray]            # the frames of a video file
    labels: np.ndarray                       # uint8 [H, W] mask, renumbered 1..K
    object_ids: List[int]                    # original id of renumbered object k at position k - 1
    mask_frame: int
    fps: float

    def __len__(self) -> int:
        return len(self.frame_paths)

    @property
    def size(self) -> Tuple[int, int]:
        return int(self.labels.shape[0]), int(self.labels.shape[1])

    def frame(self, index: int) -> np.ndarray:
        return self.decoded[index] if self.decoded is not None else read_rgb(self.frame_paths[index])

    def video(self) -> ClipVideo:
        """The frames from `mask_frame` on, as the models see them (their frame 0 holds the mask)."""
        n = self.mask_frame
        return ClipVideo(name=self.name, frame_paths=self.frame_paths[n:],
                         frame_names=[f"{i:05d}" for i in range(n, len(self))], mask_paths={0: self.frame_paths[n]},
                         decoded=None if self.decoded is None else self.decoded[n:], given={0: self.labels},
                         frame_size=self.size)

    def to_original_ids(self, labels: np.ndarray) -> np.ndarray:
        lookup = np.zeros(256, dtype=np.uint8)
        lookup[1:len(self.object_ids) + 1] = self.object_ids
        return lookup[labels]


def list_frames(folder: Path, flag: str = "--frames", suffixes: Tuple[str, ...] = FRAME_SUFFIXES) -> List[Path]:
    """The images of `folder` in frame order (names compared shortest first, so frame2 comes before frame10)."""
    if not folder.is_dir():
        raise UserError(f"{flag} folder not found: {folder}; pass {flag} DIR holding one image per frame")
    frames = sorted((p for p in folder.iterdir() if p.suffix.lower() in suffixes and p.is_file()),
                    key=lambda p: (len(p.stem), p.stem))
    if not frames:
        raise UserError(f"{flag} folder {folder} holds no images ({', '.join(suffixes)}); "
                        f"point {flag} at a folder with one image per frame")
    return frames


def decode_video(path: Path) -> Tuple[np.ndarray, float]:
    """Every frame of a video file as uint8 RGB `[T, H, W, 3]`, and its frame rate."""
    if not path.is_file():
        raise UserError(f"video file not found: {path}")
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        fps = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0.0
        while capture.isOpened():
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    if not frames:
        raise UserError(f"cannot decode any frame of {path}: not a video OpenCV can read (try an mp4, or "
                        f"extract the frames and pass --frames DIR)")
    if any(f.shape != frames[0].shape for f in frames):
        raise UserError(f"the frames of {path} change size; re-encode it at one resolution")
    return np.stack(frames), fps if fps and fps > 0 else DEFAULT_FPS


def object_ids_of(labels: np.ndarray) -> np.ndarray:
    """Label maps (a mask or a stack of them) as object ids: a 0/255 binary set -> object 1, otherwise the
    palette ids with 255 (void) read as background."""
    if set(np.unique(labels).tolist()) <= {0, VOID_LABEL}:
        return (labels == VOID_LABEL).astype(np.uint8)  # binary mask: 255 is the object
    return np.where(labels == VOID_LABEL, 0, labels).astype(np.uint8)


def read_mask(path: Path) -> np.ndarray:
    """A palette PNG (ids, 255 = void -> background) or a 0/255 binary PNG (-> one object) as uint8 ids."""
    return object_ids_of(read_label_png(path))


def load_clip(video: Optional[Path], frames: Optional[Path], mask: Path, mask_frame: int = 0) -> Clip:
    """Check and open the input; the frames of a video file are decoded here, a folder's are read lazily."""
    if (video is None) == (frames is None):
        raise UserError("give exactly one input: --video FILE or --frames DIR")
    decoded: Optional[np.ndarray] = None
    if video is not None:
        decoded, fps = decode_video(video)
        frame_paths = [video] * len(decoded)
        size = (int(decoded.shape[1]), int(decoded.shape[2]))
        name = video.stem
    else:
        assert frames is not None
        frame_paths = list_frames(frames)
        width, height = image_size(frame_paths[0], "frame")
        size = (height, width)
        fps = DEFAULT_FPS
        name = frames.name
    if not 0 <= mask_frame < len(frame_paths):
        raise UserError(f"--mask-frame {mask_frame} is outside the clip's {len(frame_paths)} frames (0.."
                        f"{len(frame_paths) - 1})")
    labels = read_mask(mask)
    if labels.shape != size:
        raise UserError(f"mask {mask} is {labels.shape[1]}x{labels.shape[0]} but the frames are {size[1]}x{size[0]}; "
                        f"give the mask at the frames' resolution")
    object_ids = [int(i) for i in np.unique(labels) if i != 0]
    if not object_ids:
        raise UserError(f"mask {mask} holds no object (every pixel is background); mark the objects with ids 1..N "
                        f"(palette PNG) or 255 (binary PNG)")
    renumber = np.zeros(256, dtype=np.uint8)
    renumber[object_ids] = np.arange(1, len(object_ids) + 1)
    return Clip(name=name, frame_paths=frame_paths, decoded=decoded, labels=renumber[labels],
                object_ids=object_ids, mask_frame=mask_frame, fps=fps)

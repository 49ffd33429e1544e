"""DAVIS frames for the interactive benchmark: checked before a session starts, decoded where the
reference decodes them.

davisinteractive times each interaction from `get_scribbles` to `submit_masks`, and AUC and J&F@60 s
come from those times. The reference builds a DataLoader every round that decodes (OpenCV) only the
frames the round propagates to, inside that window; `DavisFrames` does the same by decoding a frame
each time the loop reads it. `load_all_frames` is the fast mode's single decode per sample.

libjpeg reports a damaged file on the process's stderr and OpenCV still returns an image, so every
decode here captures that output and turns it into one `UserError` naming the file.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator, List, Mapping, Tuple

import cv2
import numpy as np

from common.runtime.errors import UserError

FIX = "re-extract the sequence from the DAVIS 2017 trainval 480p archive"


def frame_path(davis_root: Path, sequence: str, frame: int) -> Path:
    return Path(davis_root) / "JPEGImages" / "480p" / sequence / f"{frame:05d}.jpg"


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[List[str]]:
    """Collect what native code (libjpeg, OpenCV) writes to file descriptor 2 inside the block;
    the list holds the text once the block has ended."""
    captured: List[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", "replace"))


def decode_frame(path: Path, reduced: bool = False) -> np.ndarray:
    """RGB uint8 `[H, W, 3]` of a DAVIS frame (`reduced`: 1/8 size, a cheap full read of the file)."""
    if not path.is_file():
        raise UserError(f"frame {path} not found; {FIX}")
    with native_stderr_captured() as messages:
        bgr = cv2.imread(str(path), cv2.IMREAD_REDUCED_COLOR_8 if reduced else cv2.IMREAD_COLOR)
    warning = " ".join(line.strip() for line in messages[0].splitlines() if line.strip())
    if bgr is None or warning:
        raise UserError(f"frame {path} is corrupt ({warning or 'not a decodable image'}); {FIX}")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def check_frames(davis_root: Path, num_frames: Mapping[str, int]) -> None:
    """Every frame of every sequence exists and decodes without a warning (before any work starts)."""
    for sequence, count in num_frames.items():
        paths = [frame_path(davis_root, sequence, f) for f in range(count)]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise UserError(f"frame {missing[0]} not found ({len(missing)} of the {count} frames of sequence "
                            f"{sequence!r} missing); {FIX}")
        for path in paths:
            decode_frame(path, reduced=True)


class DavisFrames:
    """A sequence's frames as `GISSession` reads them (`shape`, `frames[t]`), decoded on every read."""

    def __init__(self, davis_root: Path, sequence: str, num_frames: int, size_hw: Tuple[int, int]):
        self.paths = [frame_path(davis_root, sequence, f) for f in range(num_frames)]
        self.shape = (num_frames, size_hw[0], size_hw[1], 3)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, frame: int) -> np.ndarray:
        rgb = decode_frame(self.paths[frame])
        if rgb.shape != self.shape[1:]:
            raise UserError(f"frame {self.paths[frame]} is {rgb.shape[1]}x{rgb.shape[0]}, the sequence is "
                            f"{self.shape[2]}x{self.shape[1]}; {FIX}")
        return rgb


def load_all_frames(davis_root: Path, sequence: str, num_frames: int) -> np.ndarray:
    """RGB uint8 `[T, H, W, 3]`: the whole sequence, decoded once."""
    return np.stack([decode_frame(frame_path(davis_root, sequence, f)) for f in range(num_frames)])

"""Reading and writing DAVIS-style palette PNGs and RGB frames.

Label convention (the same as the official loaders, which open masks with ``Image.open(p).convert('P')``):
a label PNG holds one object id per pixel, 0 = background, 1..N = objects and 255 = *void*
(unlabelled border pixels). `read_label_png` returns these raw indices unchanged, 255 included;
what to do with void is the caller's choice (see `common.data.datasets`, which turns it into background
for given masks as the official ``LabelToLongTensor`` does, and keeps it for ground truth as
davis2017-evaluation does).
"""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np
from PIL import Image

from common.data.paths import PathLike
from common.runtime.errors import UserError

VOID_LABEL = 255


def _pascal_color_map(n: int = 256) -> np.ndarray:
    """The PASCAL VOC / DAVIS colour map: label bits spread over the high bits of R, G and B."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for label in range(n):
        r = g = b = 0
        c = label
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        cmap[label] = (r, g, b)
    return cmap


DAVIS_PALETTE: np.ndarray = _pascal_color_map()
"""[256, 3] uint8: 0 black, 1 (128, 0, 0), 2 (0, 128, 0), ..., 255 (224, 224, 192)."""

# Image modes whose pixels are one label each; `convert('P')` keeps their values (mode '1' becomes 0/255).
_SINGLE_CHANNEL_MODES = ("P", "L", "1")


_READ_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def _open(path: PathLike, what: str) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        image = Image.open(path)
        image.load()  # decode now, so a truncated file fails here and not deep inside a model
    except _READ_ERRORS as err:
        raise _unreadable(path, what, err) from None
    return image


def image_size(path: PathLike, what: str = "image") -> Tuple[int, int]:
    """(width, height) of an image from its header alone (no decoding), for cheap layout checks."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        with Image.open(path) as image:
            return image.size
    except _READ_ERRORS as err:
        raise _unreadable(path, what, err) from None


def _unreadable(path: Path, what: str, err: Exception) -> UserError:
    return UserError(f"cannot read {what} {path}: {err}; the file is corrupt or not an image, "
                     f"replace it with an intact copy")


def read_rgb(path: PathLike) -> np.ndarray:
    """A frame as uint8 [H, W, 3] RGB (grayscale/palette/RGBA images are converted like ``convert('RGB')``)."""
    image = _open(path, "image")
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def read_label_png(path: PathLike) -> np.ndarray:
    """A label map as uint8 [H, W] of raw palette indices (255 = void is kept).

    Raises `UserError` for a mask that is not single-channel (e.g. an RGB rendering of a mask), since
    converting colours back to ids would silently produce wrong labels.
    """
    image = _open(path, "mask")
    if image.mode not in _SINGLE_CHANNEL_MODES:
        raise UserError(f"mask {path} has mode {image.mode!r}, not a single-channel label image; "
                        f"save masks as palette ('P') or grayscale ('L') PNGs holding object ids")
    return np.asarray(image.convert("P"), dtype=np.uint8).copy()


def write_label_png(path: PathLike, labels: np.ndarray) -> None:
    """Write uint8 [H, W] object ids as a palette PNG with the DAVIS colour map (parents are created)."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"label map for {path} must be [H, W], got shape {labels.shape}")
    if labels.dtype != np.uint8:
        if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != np.bool_:
            raise ValueError(f"label map for {path} must hold integer ids, got dtype {labels.dtype}")
        if labels.size and (labels.min() < 0 or labels.max() > 255):
            raise ValueError(f"label map for {path} has ids outside 0..255")
        labels = labels.astype(np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.frombytes("P", (labels.shape[1], labels.shape[0]), np.ascontiguousarray(labels).tobytes())
    image.putpalette(DAVIS_PALETTE.tobytes())
    image.save(path, format="PNG")


def colorize(labels: np.ndarray) -> np.ndarray:
    """uint8 [H, W] ids -> uint8 [H, W, 3] colours, for overlays and quick looks."""
    return DAVIS_PALETTE[np.asarray(labels, dtype=np.uint8)]

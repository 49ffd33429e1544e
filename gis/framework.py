"""Helpers around the davisinteractive framework: sequences it does not know, initial scribbles.

davisinteractive describes DAVIS 2017 with a bundled table (`Davis.dataset`, `Davis.sets`). To run a
real local session on other DAVIS-format data (the synthetic sample of the tests and `make demo`),
`registered_sequences` adds the folder's sequences to that table for the duration of a `with` block,
and `common.data.scribbles.write_robot_scribbles` (used by the synthetic sample too) creates the
initial scribble files DAVIS ships (`Scribbles/<seq>/001.json`) with the framework's own robot on an
empty prediction.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

from common.data.davisinteractive_compat import import_davisinteractive
from common.data.palette import read_label_png
from common.runtime.errors import UserError


def _sequence_info(davis_root: Path, name: str, subset: str) -> dict:
    ann_dir = davis_root / "Annotations" / "480p" / name
    ann_paths = sorted(ann_dir.glob("*.png"))
    n_frames = len(sorted((davis_root / "JPEGImages" / "480p" / name).glob("*.jpg")))
    if not ann_paths or n_frames == 0:
        raise UserError(f"sequence {name!r} has no frames or annotations under {davis_root} "
                        f"(expected JPEGImages/480p/{name}/*.jpg and Annotations/480p/{name}/*.png)")
    labels = [read_label_png(p) for p in ann_paths]
    n_objects = int(max(int(l[l != 255].max(initial=0)) for l in labels))
    h, w = labels[0].shape
    n_scribbles = len(sorted((davis_root / "Scribbles" / name).glob("*.json")))
    # The ground truth defines the frames (the framework loads one annotation per frame); a missing
    # JPEG is then reported by the frame check instead of silently shortening the sequence.
    return {"attributes": [], "eval_t": True, "name": name, "num_frames": len(ann_paths), "num_objects": n_objects,
            "set": subset, "year": 2017, "image_size": [w, h], "num_scribbles": n_scribbles}


@contextlib.contextmanager
def registered_sequences(davis_root: Path, subset: str, names: Optional[Sequence[str]] = None) -> Iterator[List[str]]:
    """Within the block, the framework's `subset` is exactly `names` (default: the folder's
    `ImageSets/2017/<subset>.txt`); sequences the framework does not know are described from the files."""
    import_davisinteractive()
    from davisinteractive.dataset import Davis

    davis_root = Path(davis_root)
    if names is None:
        listing = davis_root / "ImageSets" / "2017" / f"{subset}.txt"
        if not listing.is_file():
            raise UserError(f"no sequence list at {listing}; pass the sequences explicitly")
        names = [n.strip() for n in listing.read_text().splitlines() if n.strip()]
    saved_sets = {k: list(v) for k, v in Davis.sets.items()}
    added = []
    try:
        for name in names:
            if name not in Davis.dataset:
                Davis.dataset[name] = _sequence_info(davis_root, name, subset)
                added.append(name)
        Davis.sets[subset] = list(names)
        yield list(names)
    finally:
        Davis.sets.clear()
        Davis.sets.update(saved_sets)
        for name in added:
            Davis.dataset.pop(name, None)

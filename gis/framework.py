"""Helpers around the davisinteractive framework: sequences it does not know, initial scribbles.

davisinteractive describes DAVIS 2017 with a bundled table (`Davis.dataset`, `Davis.sets`). To run a
real local session on other DAVIS-format data (the synthetic sample of the tests and `make demo`),
`registered_sequences` adds the folder's sequences to that table for the duration of a `with` block,
and `write_robot_scribbles` creates the initial scribble files DAVIS ships (`Scribbles/<seq>/001.json`)
with the framework's own robot on an empty prediction.
"""
from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

import numpy as np

from common.davisinteractive_compat import import_davisinteractive
from common.errors import UserError
from common.palette import read_label_png

ROBOT_PARAMETERS = {"kernel_size": 0.2, "max_kernel_radius": 16, "min_nb_nodes": 4, "nb_points": 1000}


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


def write_robot_scribbles(davis_root: Path, name: str, frame: Optional[int] = None,
                          min_nb_nodes: int = 2) -> dict:
    """Write `Scribbles/<name>/001.json`: the robot's scribble on an empty prediction at `frame`
    (default: the middle frame), as the initial interaction of a synthetic sequence."""
    import_davisinteractive()
    from davisinteractive.robot import InteractiveScribblesRobot

    ann_paths = sorted((Path(davis_root) / "Annotations" / "480p" / name).glob("*.png"))
    gt = np.stack([read_label_png(p) for p in ann_paths]).astype(np.int64)
    gt[gt == 255] = 0
    frame = (len(gt) - 1) // 2 if frame is None else frame
    params = dict(ROBOT_PARAMETERS, min_nb_nodes=min_nb_nodes)
    scribble = InteractiveScribblesRobot(**params).interact(name, np.zeros_like(gt), gt,
                                                             nb_objects=int(gt.max()), frame=frame)
    path = Path(davis_root) / "Scribbles" / name / "001.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(scribble))
    return copy.deepcopy(scribble)

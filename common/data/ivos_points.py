"""YouTube-IVOS click files: which videos the interactive benchmark runs, and the first round's clicks.

The GIS-RAmap reference ships them for 200 YouTube-VOS 2019 train videos (`gis/data/`):
`youtube_ivos_validation_list.json` ({video: {"fr": annotated frame file}}) and `point_info_NN.json`
({video: {"fr": ..., "points": [[[y...], [x...]] per object]}}, NN clicks per object, original-resolution pixels).
`write_ivos_points` makes files of the same format for any YouTube-VOS-layout train tree (the generated sample,
tests), so `python -m gis.ivos_main_youtube --points-dir` runs on it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Sequence

import numpy as np

from common.data.palette import VOID_LABEL, read_label_png
from common.data.paths import PathLike
from common.runtime.errors import UserError

VALIDATION_LIST = "youtube_ivos_validation_list.json"
POINT_COUNTS = (5, 10, 20, 50)  # the reference's click budgets


def points_file(points_dir: PathLike, n_points: int) -> Path:
    return Path(points_dir) / f"point_info_{n_points:02d}.json"


def write_ivos_points(youtube_root: PathLike, out_dir: PathLike, videos: Sequence[str],
                      n_points: Sequence[int] = POINT_COUNTS, seed: int = 0) -> Path:
    """Click files for `videos` of `<youtube_root>/train/Annotations`: for each video the last frame where every
    object is visible, and `n` random pixels inside each object (seeded: the same files on every run)."""
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    listing: Dict[str, dict] = {}
    tables: Dict[int, dict] = {n: {} for n in n_points}
    for video in videos:
        ann_dir = Path(youtube_root) / "train" / "Annotations" / video
        labels = [(p.name, read_label_png(p)) for p in sorted(ann_dir.glob("*.png"))]
        n_obj = max(int(lab[lab != VOID_LABEL].max(initial=0)) for _, lab in labels)
        full = [(name, lab) for name, lab in labels if all(np.any(lab == k) for k in range(1, n_obj + 1))]
        if not full:
            raise UserError(f"video {video} has no frame in {ann_dir} showing all its objects; the first round's "
                            f"clicks need one")
        name, frame_labels = full[-1]
        listing[video] = {"fr": name}
        for n in n_points:
            per_object = []
            for k in range(1, n_obj + 1):
                ys, xs = np.nonzero(frame_labels == k)
                pick = rng.choice(len(ys), size=n, replace=len(ys) < n)
                per_object.append([ys[pick].tolist(), xs[pick].tolist()])
            tables[n][video] = {"fr": name, "points": per_object}
    (out_dir / VALIDATION_LIST).write_text(json.dumps(listing, indent=0))
    for n, table in tables.items():
        points_file(out_dir, n).write_text(json.dumps(table))
    return out_dir

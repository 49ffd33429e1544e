"""Initial scribbles for DAVIS-format data that ships without them (the synthetic sample).

DAVIS 2017's interactive benchmark starts every sequence from human scribbles in `Scribbles/<seq>/NNN.json`.
For other data, `write_robot_scribbles` creates `001.json` with davisinteractive's own scribble robot,
run on the ground truth against an empty prediction: the scribble it would give as a first correction.
The robot is deterministic and its time stamps are zeroed, so the same ground truth gives the same file.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Optional

import numpy as np

from common.data.davisinteractive_compat import import_davisinteractive
from common.data.palette import read_label_png

ROBOT_PARAMETERS = {"kernel_size": 0.2, "max_kernel_radius": 16, "min_nb_nodes": 4, "nb_points": 1000}


def write_robot_scribbles(davis_root: Path, name: str, frame: Optional[int] = None,
                          min_nb_nodes: int = 2) -> dict:
    """Write `Scribbles/<name>/001.json`: the robot's scribble on an empty prediction at `frame`
    (default: the middle frame), as the initial interaction of a sequence without one; returns it."""
    import_davisinteractive()
    from davisinteractive.robot import InteractiveScribblesRobot

    ann_paths = sorted((Path(davis_root) / "Annotations" / "480p" / name).glob("*.png"))
    gt = np.stack([read_label_png(p) for p in ann_paths]).astype(np.int64)
    gt[gt == 255] = 0
    frame = (len(gt) - 1) // 2 if frame is None else frame
    params = dict(ROBOT_PARAMETERS, min_nb_nodes=min_nb_nodes)
    scribble = InteractiveScribblesRobot(**params).interact(name, np.zeros_like(gt), gt,
                                                             nb_objects=int(gt.max()), frame=frame)
    for paths in scribble["scribbles"]:  # the robot stamps wall-clock times: fixed, so the file is reproducible
        for path in paths:
            path["start_time"] = path["end_time"] = 0.0
    path = Path(davis_root) / "Scribbles" / name / "001.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(scribble))
    return copy.deepcopy(scribble)

"""`make demo` / `make bench` for GIS-RAmap on the synthetic sample (`run_demo`, `bench_round`).

`run_demo` runs a real davisinteractive session (3 interactions, RS4, J&F) on the synthetic DAVIS
sample -- its initial scribbles drawn by the framework's robot -- and, when a YouTube-VOS-format sample
is given, YouTube-IVOS with 5 synthetic clicks per object. `bench_round` times one interaction round.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import pandas as pd
import torch

from common.data.palette import read_label_png
from common.hub.checkpoints import demo_model, official_or_seeded, seeded_init
from common.inference.fast import FastOptions
from common.runtime.device import Stopwatch
from gis.model import GISNet

DEMO_INTERACTIONS = 3


def _davis_with_scribbles(davis_root: Path, work: Path) -> Path:
    """The sample as given if it has initial scribbles, else a copy with the robot's scribbles added."""
    from common.data.scribbles import write_robot_scribbles

    names = (davis_root / "ImageSets" / "2017" / "val.txt").read_text().split()
    if all((davis_root / "Scribbles" / n / "001.json").is_file() for n in names):
        return davis_root
    copy = work / "DAVIS"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(davis_root, copy)
    for name in names:
        write_robot_scribbles(copy, name)
    return copy


def run_demo(davis_root: Path, ytvos_root: Optional[Path], out_dir: Path, device: torch.device,
             trained: Optional[Path] = None) -> Dict[str, Any]:
    """The DAVIS interactive session of the sample (RS4, the robot) and, when given, YouTube-IVOS on its
    YouTube-VOS sample; `trained`: a GIS checkpoint to use instead of the cached official or seeded weights."""
    from gis.framework import registered_sequences
    from gis.ivos_main_davis import result_dir_name, run_ivos

    out_dir.mkdir(parents=True, exist_ok=True)
    net, weights = demo_model("gis-davis", GISNet, device, trained=trained)
    davis = _davis_with_scribbles(Path(davis_root), out_dir / "data")
    session_dir = out_dir / result_dir_name("J_AND_F", "RS4")
    if session_dir.exists():
        shutil.rmtree(session_dir)
    with torch.no_grad(), registered_sequences(davis, "val") as names:
        summary = run_ivos(net, davis, session_dir, metric="J_AND_F", guide="RS4",
                           samples=[(n, 1) for n in sorted(names)], max_interactions=DEMO_INTERACTIONS,
                           max_time=600, save_masks=True)
    report = pd.read_csv(next(session_dir.glob("result_*.csv")))
    last = report[report["interaction"] == report["interaction"].max()]
    row = {"J&F-Mean": float(last["j_and_f"].mean()), "J-Mean": float(last["jaccard"].mean()),
           "F-Mean": float(last["contour"].mean()), "AUC": float(summary["auc"]),
           "J&F@60s": float(summary["metric_at_threshold"]["J_AND_F"]), "weights": weights}
    print(f"gis: DAVIS session, {DEMO_INTERACTIONS} interactions: AUC {row['AUC']:.3f}, J&F@60s {row['J&F@60s']:.3f}; "
          f"masks in {session_dir / 'result_video'}")
    if ytvos_root is not None:
        jf = _youtube_demo(Path(ytvos_root), out_dir, device)
        row["YouTube-IVOS J&F round-4"] = jf[-1]
    return row


def _youtube_demo(ytvos_root: Path, out_dir: Path, device: torch.device) -> list:
    """YouTube-IVOS on the synthetic YouTube-VOS sample rearranged as a train split (full ground truth)."""
    from gis.ivos_main_youtube import run_youtube
    from gis.youtube_session import write_synthetic_points

    root = out_dir / "data" / "YouTubeVOS-train"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(ytvos_root / "valid" / "JPEGImages", root / "train" / "JPEGImages")
    shutil.copytree(ytvos_root / "valid_gt" / "Annotations", root / "train" / "Annotations")
    videos = sorted(p.name for p in (root / "train" / "JPEGImages").iterdir())
    points = write_synthetic_points(root, out_dir / "data" / "youtube_points", videos, n_points=(5,))
    height = read_label_png(next((root / "train" / "Annotations" / videos[0]).glob("*.png"))).shape
    result = out_dir / "GIS-RAmap[JF]_[wo_RS]" / "iPoint05"
    if result.exists():
        shutil.rmtree(result)
    net = official_or_seeded("gis-youtube", GISNet, device)
    with torch.no_grad():
        jf = run_youtube(net, root, 5, result, points_dir=points, short_side=min(height), save_masks=True)
    print("gis: YouTube-IVOS (5 clicks), J&F per round " + " / ".join(f"{v:.3f}" for v in jf))
    return jf


def bench_round(davis_root: Path, device: torch.device, fast: Optional[FastOptions] = None) -> float:
    """Seconds per interaction round (scribbles -> masks of the whole video), median of 3 after a warm-up.

    Seeded weights, the first val video of `davis_root`, the robot's scribble on its middle frame;
    every timed round starts a fresh session, so it is the full first round (all frames propagated;
    fast mode's cross-round feature cache does not help here). `fast`: the `--fast` path (`gis.fast.FastGIS`)
    with these options; None: the faithful path.
    """
    from common.data.scribbles import write_robot_scribbles
    from gis.davis_frames import load_all_frames
    from gis.fast import FastGIS
    from gis.ivos import GISSession, annotated_frame_of, scribble_channels

    davis_root = Path(davis_root)
    name = (davis_root / "ImageSets" / "2017" / "val.txt").read_text().split()[0]
    ann = sorted((davis_root / "Annotations" / "480p" / name).glob("*.png"))
    n_obj = int(max(read_label_png(p).max() for p in ann))
    frames = load_all_frames(davis_root, name, len(ann))
    with tempfile.TemporaryDirectory() as tmp:  # the robot writes a Scribbles/ file; keep davis_root untouched
        work = Path(tmp)
        shutil.copytree(davis_root / "Annotations" / "480p" / name, work / "Annotations" / "480p" / name)
        scribble = write_robot_scribbles(work, name)
    frame = annotated_frame_of(scribble)
    net = seeded_init(GISNet, device)
    engine = FastGIS(net, fast) if fast is not None else None
    times = []
    with torch.no_grad():
        for run in range(4):
            session = GISSession(net, frames, n_obj, fast=engine)
            with Stopwatch(device) as watch:
                iact = scribble_channels(scribble["scribbles"][frame], n_obj, session.frame_labels(frame), first_round=True)
                session.run_round(iact, frame)
                session.labels()
            if run > 0:
                times.append(watch.elapsed)
    return float(np.median(times))

"""Fast mode against faithful mode on one device, every paper: the `make gpu-check` step for what CI cannot reach.

CI's agreement tests (`tests/test_*_fast.py`) run on the CPU, where fast mode keeps float32. On CUDA its defaults
differ (fp16 encoders for BMVOS, EMVOS and TBD, channels_last, a bf16 GIS head), so this runs each paper's
faithful and default fast mode (`FastOptions()`) with seeded weights on the first video of a DAVIS-layout folder
(gpu-check passes the generated 480p benchmark video) and checks the project's agreement bound: J&F against the
ground truth within 0.1 points of faithful mode's. GIS is compared on one interaction round (the robot's
scribble on the middle frame, all frames propagated). Prints a table and writes the rows as JSON; exit status 1
when a paper is outside the bound.

    python tools/device_agreement.py --davis DAVIS_ROOT --json OUT.json [--device cuda] [--papers bmvos,gis]
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from common.data.datasets import DAVIS
from common.evaluation.metrics import object_scores
from common.hub.checkpoints import SEEDED
from common.inference.fast import FastOptions
from common.runtime.device import add_device_argument, pick_device
from common.runtime.errors import UserError, run_cli

JF_TOLERANCE = 0.1  # J&F points (percent), the bound of tests/agreement.py and the README


def jf_percent(gt: np.ndarray, pred: np.ndarray) -> float:
    """J&F mean in % over `gt`'s objects `[T, H, W]`, frames after the given first one."""
    ids = [k for k in np.unique(gt) if k not in (0, 255)]
    j, f = object_scores(gt[1:], pred[1:], ids)
    return 100 * (j.mean() + f.mean()) / 2


def _row(paper: str, gt: np.ndarray, faithful: np.ndarray, fast: np.ndarray) -> Dict[str, object]:
    jf_faithful, jf_fast = float(jf_percent(gt, faithful)), float(jf_percent(gt, fast))
    return {"paper": paper, "frames": int(gt.shape[0]), "jf_faithful": jf_faithful, "jf_fast": jf_fast,
            "jf_difference": abs(jf_fast - jf_faithful), "differing_pixels": float(np.mean(faithful != fast)),
            "agrees": bool(abs(jf_fast - jf_faithful) <= JF_TOLERANCE)}


def semi_supervised(paper: str, dataset: DAVIS, device: torch.device) -> Dict[str, object]:
    from vos.papers import PAPERS

    video = dataset.videos()[0]
    inference = PAPERS[paper].inference
    masks = {}
    for mode, fast in (("faithful", None), ("fast", FastOptions())):
        result = inference.make_segmenter(SEEDED, device, fast=fast, resize=False)(video)
        masks[mode] = np.stack([result[t] for t in sorted(result)])
    return _row(paper, dataset.gt_masks(video.name), masks["faithful"], masks["fast"])


def interactive_round(dataset: DAVIS, device: torch.device) -> Dict[str, object]:
    """GIS: one round from the robot's scribble, faithful session against the fast one (as `bench_round`)."""
    from common.data.scribbles import write_robot_scribbles
    from common.hub.checkpoints import seeded_init
    from gis.davis_frames import load_all_frames
    from gis.fast import FastGIS
    from gis.ivos import GISSession, annotated_frame_of, scribble_channels
    from gis.model import GISNet

    name = dataset.names[0]
    gt = dataset.gt_masks(name)
    n_objects = int(gt[gt != 255].max())
    frames = load_all_frames(dataset.root, name, gt.shape[0])
    with tempfile.TemporaryDirectory() as tmp:  # the robot writes a Scribbles/ file: keep the input untouched
        annotations = dataset.root / "Annotations" / "480p" / name
        shutil.copytree(annotations, Path(tmp) / "Annotations" / "480p" / name)
        scribble = write_robot_scribbles(Path(tmp), name)
    frame = annotated_frame_of(scribble)
    net = seeded_init(GISNet, device)
    labels = {}
    with torch.no_grad():
        for mode, engine in (("faithful", None), ("fast", FastGIS(net, FastOptions()))):
            session = GISSession(net, frames, n_objects, fast=engine)
            iact = scribble_channels(scribble["scribbles"][frame], n_objects, session.labels()[frame],
                                     first_round=True)
            session.run_round(iact, frame)
            labels[mode] = session.labels()
    return _row("gis", gt, labels["faithful"], labels["fast"])


def format_table(rows: List[Dict[str, object]]) -> str:
    lines = ["| paper | frames | J&F faithful | J&F fast | difference | differing pixels | within 0.1 |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        lines.append(f"| {r['paper']} | {r['frames']} | {r['jf_faithful']:.2f} | {r['jf_fast']:.2f} | "
                     f"{r['jf_difference']:.3f} | {r['differing_pixels']:.4%} | {'yes' if r['agrees'] else 'NO'} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from vos.papers import INTERACTIVE, PAPERS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis", type=Path, required=True, help="DAVIS 2017 layout root (its first val video)")
    parser.add_argument("--json", type=Path, required=True, help="where to write the rows")
    parser.add_argument("--papers", default=",".join(PAPERS), help="comma-separated subset (default: all)")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    papers = [p for p in args.papers.split(",") if p]
    if not papers or set(papers) - set(PAPERS):
        raise UserError(f"--papers takes a comma-separated subset of {', '.join(PAPERS)}; got {args.papers!r}")
    if not (args.davis / "ImageSets" / "2017" / "val.txt").is_file():
        raise UserError(f"--davis {args.davis}: no ImageSets/2017/val.txt there; pass a DAVIS 2017 layout root "
                        "(python -m common.data.synthetic OUT writes one)")
    device = pick_device(args.device)
    dataset = DAVIS(args.davis, 2017, "val")
    rows = []
    for paper in papers:
        rows.append(interactive_round(dataset, device) if paper in INTERACTIVE
                    else semi_supervised(paper, dataset, device))
        print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"device": str(device), "rows": rows, "table": format_table(rows)}, indent=2))
    print(f"written: {args.json}")
    return 0 if all(r["agrees"] for r in rows) else 1


if __name__ == "__main__":
    run_cli(main)

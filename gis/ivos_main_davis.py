"""GIS-RAmap on the DAVIS 2017 interactive benchmark (a real davisinteractive session, local mode).

    python -m gis.ivos_main_davis --davis data/DAVIS --weights gis-davis --output outputs/gis/davis17-val \
        --metric J_AND_F --guide RS4

For each metric (`--metric J J_AND_F` runs both, as the reference's `test_metric_list`), the
framework's robot gives 3 initial scribbles per val sequence and then answers every submitted
prediction with a new scribble on the frame it chooses (among the frames GIS recommends, with RS1 /
RS4). Written to `<output>/GIS-RAmap[J|JF]_[<guide>]/`:

* `result_<stamp>.csv`         the framework's session report (per frame, object and interaction);
* `summary_<stamp>.json`       its global summary (AUC, metric@60 s, the curve);
* `summary_in_csv.csv`         per object and scribble sample, the mean J of every round;
* `summary_graph_<final>.png`  the AUC curve (metric vs time and vs interactions);
* `test_logs.txt`              the log, with the AUC / metric@60 s lines and the processing speed;
* `result_video/<seq>-scrNN/roundNN/*.png` with `--save-masks`.

The folder is written as `<name>.partial` and renamed when the session has finished.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from tqdm import tqdm

from common.davisinteractive_compat import import_davisinteractive
from common.device import add_device_argument, pick_device
from common.errors import UserError, run_cli
from common.palette import write_label_png
from common.weights import is_seeded
from gis.fast import FastGIS, add_fast_arguments, check_fast_arguments, engine_from_args
from gis.framework import registered_sequences
from gis.ivos import GUIDE_METHODS, GISSession, annotated_frame_of, scribble_channels
from gis.model import GISNet, load_net

METRIC_TAGS = {"J": "J", "J_AND_F": "JF"}
METRIC_NAMES = {"J": "J", "F": "F", "J_AND_F": "J&F"}

RoundCallback = Callable[[dict], None]


def result_dir_name(metric: str, guide: str) -> str:
    return f"GIS-RAmap[{METRIC_TAGS[metric]}]_[{guide}]"


def load_davis_frames(davis_root: Path, sequence: str, num_frames: int) -> np.ndarray:
    """RGB uint8 [T,H,W,3], decoded with OpenCV as the reference's loader does."""
    frames = []
    for f in range(num_frames):
        path = davis_root / "JPEGImages" / "480p" / sequence / f"{f:05d}.jpg"
        bgr = cv2.imread(str(path))
        if bgr is None:
            raise UserError(f"cannot read frame {path}; is --davis the DAVIS 2017 root (JPEGImages/480p/...)?")
        frames.append(bgr[:, :, ::-1])
    return np.ascontiguousarray(np.stack(frames))


def plot_summary(summary: dict, metric: str, save_dir: Path) -> Path:
    """The AUC curve: metric vs accumulated time (with the 60 s threshold) and vs interactions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = METRIC_NAMES[metric]
    times, values = summary["curve"]["time"], summary["curve"][metric]
    th = summary["metric_at_threshold"]["threshold"]
    at_th = summary["metric_at_threshold"][metric]
    fig = plt.figure(figsize=(6, 8))
    fig.suptitle(f"[AUC/t: {summary['auc']:.3f}]         [{name}@{th}: {at_th:.3f}]", fontsize=16)
    ax1 = fig.add_subplot(211)
    ax1.plot(times, values)
    ax1.plot(times, values, "b.")
    ax1.set_ylim([0, 1])
    ax1.set_xlim([0, max(times)])
    ax1.set_xlabel("Accumulated Time (s)")
    ax1.set_ylabel(name)
    ax1.axvline(th, c="r")
    ax1.yaxis.grid(True)
    ax2 = fig.add_subplot(212)
    ax2.plot(range(len(times)), values)
    ax2.plot(range(len(times)), values, "b.")
    ax2.set_ylim([0, 1])
    ax2.set_xlim([0, len(times) - 1])
    ax2.set_xlabel("Interactions (n)")
    ax2.set_ylabel(name)
    ax2.yaxis.grid(True)
    path = save_dir / f"summary_graph_{values[-1]:.3f}.png"
    fig.savefig(path)
    plt.close(fig)
    return path


class _Log:
    def __init__(self, path: Path, echo: bool):
        self.path, self.echo = path, echo

    def __call__(self, line: str) -> None:
        if self.echo:
            tqdm.write(line)
        with open(self.path, "a") as fp:
            fp.write(line + "\n")


def run_ivos(net: GISNet, davis_root: Path, out_dir: Path, *, metric: str = "J_AND_F", guide: str = "wo_RS",
             subset: str = "val", samples: Optional[List[Tuple[str, int]]] = None, max_interactions: int = 8,
             max_time: Optional[float] = None, proportion: float = 0.99, dilation: int = 5,
             min_nb_nodes: int = 2, save_masks: bool = False, host: str = "localhost",
             user_key: Optional[str] = None, echo: bool = True, on_round: Optional[RoundCallback] = None,
             fast: Optional[FastGIS] = None) -> dict:
    """One davisinteractive session (the reference's `Main_tester.run_IVOS`); returns its global summary.

    `samples` defaults to every sequence of the framework's `subset` with scribbles 1..3.
    `on_round` receives, after every submission, a dict with the sequence, scribble index, round,
    annotated frame, submitted masks, the round's scores and the recommended frames.
    `fast` (from `gis.fast`) runs the rounds on the fast path.
    """
    import_davisinteractive()
    from davisinteractive.dataset import Davis
    from davisinteractive.metrics import batched_jaccard
    from davisinteractive.session import DavisInteractiveSession

    if guide not in GUIDE_METHODS:
        raise UserError(f"unknown guide method {guide!r}; choose one of {', '.join(GUIDE_METHODS)}")
    if metric not in METRIC_TAGS:
        raise UserError(f"unknown metric {metric!r}; choose J or J_AND_F")
    max_time = max_interactions * 30 if max_time is None else max_time
    if samples is None:
        samples = [(seq, idx) for seq in sorted(Davis.sets[subset]) for idx in (1, 2, 3)
                   if idx <= Davis.dataset[seq]["num_scribbles"]]
    out_dir.mkdir(parents=True, exist_ok=True)
    log = _Log(out_dir / "test_logs.txt", echo)
    log(f"{result_dir_name(metric, guide)}: {len(samples)} samples, {max_interactions} interactions, "
        f"proportion {proportion}")
    csv_path = out_dir / "summary_in_csv.csv"
    with open(csv_path, "w", newline="") as fp:
        csv.writer(fp).writerow(["sequence", "obj_idx", "scr_idx"] + [f"round-{i + 1}" for i in range(max_interactions)])

    seen: Dict[str, int] = {}
    n_frames_done, model_seconds = 0, 0.0
    progress = tqdm(total=len(samples) * max_interactions, desc=f"GIS {METRIC_TAGS[metric]} {guide}",
                    disable=not echo, unit="round")
    with DavisInteractiveSession(host=host, user_key=user_key, davis_root=str(davis_root), subset=subset,
                                 report_save_dir=str(out_dir), max_nb_interactions=max_interactions,
                                 max_time=max_time, metric_to_optimize=metric) as sess:
        if getattr(sess.connector, "service", None) is not None:  # local evaluation: configure the robot
            sess.connector.service.robot.min_nb_nodes = min_nb_nodes
        sess.samples = samples
        state: Optional[GISSession] = None
        while sess.next():
            sequence, scribbles, first = sess.get_scribbles(only_last=False)
            if first:
                info = Davis.dataset[sequence]
                frames = load_davis_frames(Path(davis_root), sequence, info["num_frames"])
                state = GISSession(net, frames, info["num_objects"], proportion=proportion,
                                   max_rounds=max_interactions, fast=fast)
                gt = Davis(str(davis_root)).load_annotations(sequence)  # for the per-object CSV
                seen[sequence] = seen.get(sequence, 0) + 1
                scr_id = seen[sequence]
                ious: List[np.ndarray] = []
            assert state is not None
            annotated = annotated_frame_of(sess.sample_last_scribble)
            log(f"Running sequence {sequence} (scribble {sess.samples[sess.sample_idx][1]}) round {state.round + 1}")

            start = time.perf_counter()
            iact = scribble_channels(scribbles["scribbles"][annotated], state.n_objects, state.labels()[annotated],
                                     first_round=state.round == 0, dilation=dilation)
            visited = state.run_round(iact, annotated)
            masks = state.labels()
            model_seconds += time.perf_counter() - start
            n_frames_done += len(visited) - 1
            recommended = state.finish_round(guide)
            sess.submit_masks(masks, recommended)
            progress.update(1)

            ious.append(batched_jaccard(gt, masks, average_over_objects=False, nb_objects=state.n_objects))
            if on_round is not None:
                on_round({"sequence": sequence, "scribble_idx": scr_id, "round": state.round,
                          "annotated_frame": annotated, "masks": masks.copy(),
                          "scores": state.scores[state.round - 1].copy(), "recommended": recommended})
            if save_masks:
                round_dir = out_dir / "result_video" / f"{sequence}-scr{scr_id:02d}" / f"round{state.round:02d}"
                for f, labels in enumerate(masks):
                    write_label_png(round_dir / f"{f:05d}.png", labels)
            if state.round == max_interactions:
                per_round = np.stack(ious).mean(axis=1)  # rounds x objects
                with open(csv_path, "a", newline="") as fp:
                    writer = csv.writer(fp)
                    for obj in range(state.n_objects):
                        writer.writerow([sequence, str(obj + 1), str(scr_id)] + list(per_round[:, obj]))
    progress.close()

    summary_path = out_dir / f"summary_{sess.report_name[7:]}.json"
    summary = sess.get_global_summary(save_file=str(summary_path))
    th = summary["metric_at_threshold"]["threshold"]
    log(f"AUC: \t{summary['auc']:.3f}")
    log(f"{METRIC_NAMES[metric]}@{th}: \t{summary['metric_at_threshold'][metric]:.3f}")
    plot_summary(summary, metric, out_dir)
    if model_seconds > 0:
        log(f"frames processed: {n_frames_done}, model time: {model_seconds:.1f} s, "
            f"fps: {n_frames_done / model_seconds:.2f}")
    return summary


def _check_dataset(davis_root: Path, subset: str, sequences: Sequence[str]) -> None:
    """The framework would try to download missing scribbles/annotations; say what is missing instead."""
    from davisinteractive.dataset import Davis

    for seq in sequences:
        if not (davis_root / "JPEGImages" / "480p" / seq).is_dir():
            raise UserError(f"sequence {seq!r} of the {subset} subset is not in {davis_root} (no JPEGImages/480p/{seq}); "
                            f"--davis must hold DAVIS 2017 trainval 480p, or a folder whose ImageSets/2017/{subset}.txt "
                            "lists its own sequences (as `python -m common.synthetic` writes), or restrict the run "
                            "with --sequences")
        info = Davis.dataset[seq]
        if info["num_scribbles"] == 0:
            raise UserError(f"no scribble files in {davis_root / 'Scribbles' / seq}: the interactive benchmark starts "
                            "from them (DAVIS-2017-scribbles-trainval.zip; `python -m common.synthetic` writes them "
                            "for its sample)")
        needed = [davis_root / "Scribbles" / seq / f"{i:03d}.json" for i in range(1, info["num_scribbles"] + 1)]
        needed += [davis_root / "Annotations" / "480p" / seq / f"{f:05d}.png" for f in range(info["num_frames"])]
        missing = [p for p in needed if not p.is_file()]
        if missing:
            raise UserError(f"{missing[0]} not found ({len(missing)} file(s) of sequence {seq!r} missing); --davis "
                            "must hold DAVIS 2017 trainval 480p with the interactive scribbles "
                            "(DAVIS-2017-scribbles-trainval.zip), or restrict the run with --sequences")


# ---------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gis.ivos_main_davis", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--davis", type=Path, default=Path("data/DAVIS"), help="DAVIS 2017 root (JPEGImages, Annotations, Scribbles)")
    p.add_argument("--output", type=Path, default=Path("outputs/gis/davis17-val"),
                   help="result folder (one GIS-RAmap[<metric>]_[<guide>] folder per metric inside)")
    p.add_argument("--weights", default="gis-davis",
                   help="checkpoint path or registry name, or 'seeded' ('none' is an alias) for a seeded "
                        "initialisation that needs no download (the numbers are then not the paper's)")
    p.add_argument("--metric", nargs="+", default=["J", "J_AND_F"], choices=sorted(METRIC_TAGS),
                   help="metric(s) the framework optimises (one session each), config.test_metric_list")
    p.add_argument("--guide", default="wo_RS", choices=GUIDE_METHODS, help="frame recommendation, config.test_guide_method")
    p.add_argument("--subset", default="val", choices=["train", "val", "trainval"], help="config.test_subset")
    p.add_argument("--sequences", nargs="+", default=None,
                   help="restrict the benchmark to these sequences (the framework's subset becomes this list)")
    p.add_argument("--scribble-indices", nargs="+", type=int, default=[1, 2, 3], help="initial scribble samples per sequence")
    p.add_argument("--max-interactions", type=int, default=8, help="interactions per sample")
    p.add_argument("--max-time", type=float, default=None, help="seconds per object and sample (default 30 x interactions)")
    p.add_argument("--proportion", type=float, default=0.99, help="propagation proportion, config.test_propagation_proportion")
    p.add_argument("--dilation", type=int, default=5, help="scribble dilation kernel, config.scribble_dilation_param")
    p.add_argument("--min-nb-nodes", type=int, default=2, help="robot min_nb_nodes, config.test_min_nb_nodes")
    p.add_argument("--host", default="localhost", help="davisinteractive server ('localhost' = local evaluation)")
    p.add_argument("--user-key", default=None, help="davisinteractive user key (remote server only)")
    p.add_argument("--save-masks", action="store_true", help="write every round's masks as PNGs, config.test_save_pngs_option")
    p.add_argument("--overwrite", action="store_true", help="replace an existing result folder")
    add_fast_arguments(p)
    add_device_argument(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    import_davisinteractive()
    from davisinteractive.dataset import Davis

    if not args.davis.is_dir():
        raise UserError(f"DAVIS root not found: {args.davis}; pass --davis")
    check_fast_arguments(args)
    if args.max_interactions < 1:
        raise UserError(f"--max-interactions must be at least 1, got {args.max_interactions}")
    # The folder's own list of the subset when it has one (DAVIS: the same as the framework's table; other
    # DAVIS-format data such as the synthetic sample: its sequences), else the framework's table.
    own_list = args.sequences or (args.davis / "ImageSets" / "2017" / f"{args.subset}.txt").is_file()
    register = registered_sequences(args.davis, args.subset, args.sequences) if own_list else nullcontext()
    with torch.no_grad(), register:
        sequences = Davis.sets[args.subset]
        _check_dataset(args.davis, args.subset, sequences)
        samples = [(s, i) for s in sorted(sequences) for i in args.scribble_indices
                   if i <= Davis.dataset[s]["num_scribbles"]]
        if not samples:
            raise UserError(f"no scribble samples for subset {args.subset!r} and indices {args.scribble_indices}")
        finals = [args.output / result_dir_name(metric, args.guide) for metric in args.metric]
        existing = [f for f in finals if f.exists()]
        if existing and not args.overwrite:
            raise UserError(f"{existing[0]} exists; pass --overwrite or choose another --output")
        device = pick_device(args.device)
        weights = None if is_seeded(args.weights, aliases=("none",)) else args.weights
        net, origin = load_net(weights, device)
        fast = engine_from_args(args, net, device)
        print(f"GIS-RAmap on {device}{' (fast mode)' if fast else ''}; {origin}")
        for metric, final in zip(args.metric, finals):
            partial = final.with_name(final.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            summary = run_ivos(net, args.davis, partial, metric=metric, guide=args.guide, subset=args.subset,
                               samples=samples, max_interactions=args.max_interactions, max_time=args.max_time,
                               proportion=args.proportion, dilation=args.dilation, min_nb_nodes=args.min_nb_nodes,
                               save_masks=args.save_masks, host=args.host, user_key=args.user_key, fast=fast)
            shutil.rmtree(final, ignore_errors=True)
            partial.rename(final)
            print(json.dumps({"metric": metric, "guide": args.guide, "auc": summary["auc"],
                              "metric_at_60s": summary["metric_at_threshold"][metric], "folder": str(final)}))
    return 0


if __name__ == "__main__":
    run_cli(main)

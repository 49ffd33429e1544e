"""GIS-RAmap on the DAVIS 2017 interactive benchmark (a real davisinteractive session, local mode).

    python -m gis.ivos_main_davis --davis data/DAVIS --weights gis-davis --output outputs/gis/davis17-val \
        --metric J_AND_F --guide RS4

For each metric (`--metric J J_AND_F` runs both, as the reference's `test_metric_list`), the
framework's robot gives 3 initial scribbles per val sequence and then answers every submitted
prediction with a new scribble on the frame it chooses (among the frames GIS recommends, with RS1 /
RS4). Written to `<output>/GIS-RAmap[J|JF]_[<guide>]/`:

* `result_<stamp>.csv`         the framework's session report (per frame, object and interaction);
* `summary_<stamp>.json`       its global summary (AUC, metric@60 s, the curve) and the metric after each
                               interaction (`metric_per_interaction`, which unlike the first two does not
                               depend on the hardware's speed);
* `summary_in_csv.csv`         per object and scribble sample, the mean J of every round;
* `summary_graph_<final>.png`  the AUC curve (metric vs time and vs interactions);
* `test_logs.txt`              the log, with the AUC / metric@60 s lines and the processing speed;
* `result_video/<seq>-scrNN/roundNN/*.png` with `--save-masks`;
* `progress.json`, `finished_report.csv`  the finished sequences and their report rows.

Every frame is checked before the session starts. The folder is written as `<name>.partial` and
renamed when the session has finished; after an interruption a rerun with the same settings resumes
after the finished sequences (`gis.session_progress`), and a session that fails is removed.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from common.data.datasets import check_sequence_sizes, read_json
from common.data.davisinteractive_compat import import_davisinteractive
from common.data.output_folder import check_output_folder
from common.data.palette import write_label_png
from common.inference.fast import add_fast_arguments, fast_options_from_args
from common.runtime.device import add_device_argument, pick_device
from common.runtime.errors import UserError, on_interrupt, run_cli
from gis.framework import registered_sequences
from gis.options import FAST_HELP, GUIDE_METHODS

if TYPE_CHECKING:  # the model, torch and pandas load where they run: `--help` answers without them
    from gis.fast import FastGIS
    from gis.model import GISNet

METRIC_TAGS = {"J": "J", "J_AND_F": "JF"}
METRIC_NAMES = {"J": "J", "F": "F", "J_AND_F": "J&F"}

RoundCallback = Callable[[dict], None]


def result_dir_name(metric: str, guide: str) -> str:
    return f"GIS-RAmap[{METRIC_TAGS[metric]}]_[{guide}]"


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


def _summary_header(max_interactions: int) -> List[str]:
    return ["sequence", "obj_idx", "scr_idx"] + [f"round-{i + 1}" for i in range(max_interactions)]


def _save_round_masks(out_dir: Path, sequence: str, scr_id: int, round_nb: int, masks: np.ndarray) -> None:
    round_dir = out_dir / "result_video" / f"{sequence}-scr{scr_id:02d}" / f"round{round_nb:02d}"
    for f, labels in enumerate(masks):
        write_label_png(round_dir / f"{f:05d}.png", labels)


def _grouped_by_sequence(samples: Sequence[Tuple[str, int]]) -> List[Tuple[str, int]]:
    """Samples with each sequence's samples next to each other (a sequence is finished as a whole)."""
    first: Dict[str, int] = {}
    for i, (seq, _) in enumerate(samples):
        first.setdefault(seq, i)
    return sorted(samples, key=lambda s: first[s[0]])


def per_interaction(summary: dict, metric: str) -> List[float]:
    """The metric after each interaction: the curve without its time-0 and timeout points."""
    return list(summary["curve"][metric][1:-1])


def run_ivos(net: GISNet, davis_root: Path, out_dir: Path, *, metric: str = "J_AND_F", guide: str = "wo_RS",
             subset: str = "val", samples: Optional[List[Tuple[str, int]]] = None, max_interactions: int = 8,
             max_time: Optional[float] = None, proportion: float = 0.99, dilation: int = 5,
             min_nb_nodes: int = 2, save_masks: bool = False, host: str = "localhost",
             user_key: Optional[str] = None, echo: bool = True, on_round: Optional[RoundCallback] = None,
             fast: Optional[FastGIS] = None, resume: Optional[Dict[str, object]] = None,
             size: Optional[int] = None) -> dict:
    """One davisinteractive session (the reference's `Main_tester.run_IVOS`); returns its global summary,
    with `metric_per_interaction` added.

    `samples` defaults to every sequence of the framework's `subset` with scribbles 1..3.
    `on_round` receives, after every submission, a dict with the sequence, scribble index, round,
    annotated frame, submitted masks, the round's scores and the recommended frames.
    `fast` (from `gis.fast`) runs the rounds on the fast path. `size`: the working size, as the app's
    `--size` (the model sees frames with that shorter side; its masks are upsampled, nearest, to the frame
    size, where the framework scores them); None is the frames' own size, as the paper.
    `resume` (local sessions): settings that identify the run beyond the arguments here (weights...);
    when given, the sequences that a run with the same settings finished in `out_dir` are kept and
    only the others run (`gis.session_progress`).

    Timed I/O: as in the reference, each round decodes the frames it propagates to inside the
    interaction's time window, round 1 also loads the ground truth, and `save_masks` writes before the
    submission. The fast path decodes a sample's frames once, in its round 1, and saves after submitting.
    """
    import_davisinteractive()
    from davisinteractive.dataset import Davis
    from davisinteractive.metrics import batched_jaccard
    from davisinteractive.session import DavisInteractiveSession

    from gis.davis_frames import DavisFrames, load_all_frames
    from gis.ivos import (GISSession, WorkingFrames, annotated_frame_of, scribble_channels, upsample_labels,
                          working_frames)
    from gis.session_progress import SessionProgress, remaining_samples

    if guide not in GUIDE_METHODS:
        raise UserError(f"unknown guide method {guide!r}; choose one of {', '.join(GUIDE_METHODS)}")
    if metric not in METRIC_TAGS:
        raise UserError(f"unknown metric {metric!r}; choose J or J_AND_F")
    max_time = max_interactions * 30 if max_time is None else max_time
    if samples is None:
        samples = [(seq, idx) for seq in sorted(Davis.sets[subset]) for idx in (1, 2, 3)
                   if idx <= Davis.dataset[seq]["num_scribbles"]]
    samples = _grouped_by_sequence(samples)
    local = host == "localhost"
    out_dir.mkdir(parents=True, exist_ok=True)
    log = _Log(out_dir / "test_logs.txt", echo)  # appends: a resumed session continues the log
    csv_path = out_dir / "summary_in_csv.csv"
    header = _summary_header(max_interactions)
    settings = {"metric": metric, "guide": guide, "subset": subset, "samples": [list(s) for s in samples],
                "max_interactions": max_interactions, "max_time": max_time, "proportion": proportion,
                "dilation": dilation, "min_nb_nodes": min_nb_nodes, "fast": fast is not None,
                **({"size": size} if size is not None else {}), **(resume or {})}
    progress = SessionProgress(out_dir, settings)
    kept_rows = progress.resume() if resume is not None and local else None
    # An earlier run's reports and summaries: this session writes its own, over all sequences.
    for pattern in ("result_*.csv", "summary_*.json", "summary_graph_*.png"):
        for stale in out_dir.glob(pattern):
            stale.unlink()
    if kept_rows is None:
        (out_dir / "test_logs.txt").unlink(missing_ok=True)
        progress.start_fresh()
        with open(csv_path, "w", newline="") as fp:
            csv.writer(fp).writerow(header)
    else:
        progress.keep_finished_summary_rows(header)
        log(f"resuming: {len(progress.finished)} finished sequence(s) kept ({', '.join(progress.finished)})")
    todo = remaining_samples(samples, progress.finished)
    log(f"{result_dir_name(metric, guide)}: {len(todo)} of {len(samples)} samples to run, {max_interactions} "
        f"interactions, proportion {proportion}")

    seen: Dict[str, int] = {}
    n_frames_done, model_seconds = 0, 0.0
    progress_bar = tqdm(total=len(todo) * max_interactions, desc=f"GIS {METRIC_TAGS[metric]} {guide}",
                        disable=not echo, unit="round")
    # closed on the way out, so that an interruption's last line is not followed by the bar drawn again
    with progress_bar, DavisInteractiveSession(host=host, user_key=user_key, davis_root=str(davis_root), subset=subset,
                                 report_save_dir=str(out_dir), max_nb_interactions=max_interactions,
                                 max_time=max_time, metric_to_optimize=metric) as sess:
        if local:  # local evaluation: configure the robot, put back the finished sequences' results
            sess.connector.service.robot.min_nb_nodes = min_nb_nodes
            if kept_rows is not None and len(kept_rows):
                storage = sess.connector.service.storage  # still empty: the session has not started
                storage.report = kept_rows.assign(session_id=sess.session_key)[list(storage.report.columns)]
        sess.samples = todo
        state: Optional[GISSession] = None
        running: Optional[str] = None
        while sess.next():
            upcoming = sess.samples[sess.sample_idx][0]
            if running is not None and upcoming != running and local:  # outside the timed window
                progress.mark_finished(running, sess.get_report())
            running = upcoming
            sequence, scribbles, first = sess.get_scribbles(only_last=False)
            if first:
                info = Davis.dataset[sequence]
                frame_hw = tuple(info["image_size"][::-1])
                if fast is None:
                    frames = DavisFrames(Path(davis_root), sequence, info["num_frames"], frame_hw)
                    frames = frames if size is None else WorkingFrames(frames, size)
                else:
                    frames = working_frames(load_all_frames(Path(davis_root), sequence, info["num_frames"]), size)
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
            iact = scribble_channels(scribbles["scribbles"][annotated], state.n_objects, state.frame_labels(annotated),
                                     first_round=state.round == 0, dilation=dilation)
            visited = state.run_round(iact, annotated)
            masks = upsample_labels(state.labels(), *frame_hw)  # as they are without a working size
            model_seconds += time.perf_counter() - start
            n_frames_done += len(visited) - 1
            recommended = state.finish_round(guide)
            if save_masks and fast is None:
                _save_round_masks(out_dir, sequence, scr_id, state.round, masks)
            sess.submit_masks(masks, recommended)
            progress_bar.update(1)

            if save_masks and fast is not None:
                _save_round_masks(out_dir, sequence, scr_id, state.round, masks)
            ious.append(batched_jaccard(gt, masks, average_over_objects=False, nb_objects=state.n_objects))
            if on_round is not None:
                on_round({"sequence": sequence, "scribble_idx": scr_id, "round": state.round,
                          "annotated_frame": annotated, "masks": masks.copy(),
                          "scores": state.scores[state.round - 1].copy(), "recommended": recommended})
            if state.round == max_interactions:
                per_round = np.stack(ious).mean(axis=1)  # rounds x objects
                with open(csv_path, "a", newline="") as fp:
                    writer = csv.writer(fp)
                    for obj in range(state.n_objects):
                        writer.writerow([sequence, str(obj + 1), str(scr_id)] + list(per_round[:, obj]))
        if running is not None and local:
            progress.mark_finished(running, sess.get_report())

    summary = dict(sess.get_global_summary())
    summary["metric_per_interaction"] = {metric: per_interaction(summary, metric)}
    with open(out_dir / f"summary_{sess.report_name[7:]}.json", "w") as fp:
        json.dump(summary, fp)
    th = summary["metric_at_threshold"]["threshold"]
    name = METRIC_NAMES[metric]
    log(f"AUC: \t{summary['auc']:.3f}")
    log(f"{name}@{th}: \t{summary['metric_at_threshold'][metric]:.3f}")
    log(f"{name} per interaction: \t" + " ".join(f"{v:.3f}" for v in per_interaction(summary, metric)))
    log(f"(AUC and {name}@{th}s integrate measured seconds and depend on the hardware; "
        f"the per-interaction {name} does not)")
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
                            "lists its own sequences (as `python -m common.data.synthetic` writes), or restrict the run "
                            "with --sequences")
        info = Davis.dataset[seq]
        if info["num_scribbles"] == 0:
            raise UserError(f"no scribble files in {davis_root / 'Scribbles' / seq}: the interactive benchmark starts "
                            "from them (DAVIS-2017-scribbles-trainval.zip; `python -m common.data.synthetic` writes them "
                            "for its sample)")
        needed = [davis_root / "Scribbles" / seq / f"{i:03d}.json" for i in range(1, info["num_scribbles"] + 1)]
        needed += [davis_root / "Annotations" / "480p" / seq / f"{f:05d}.png" for f in range(info["num_frames"])]
        missing = [p for p in needed if not p.is_file()]
        if missing:
            raise UserError(f"{missing[0]} not found ({len(missing)} file(s) of sequence {seq!r} missing); --davis "
                            "must hold DAVIS 2017 trainval 480p with the interactive scribbles "
                            "(DAVIS-2017-scribbles-trainval.zip), or restrict the run with --sequences")
        for path in needed[:info["num_scribbles"]]:  # the framework would fail on one in the middle of the session
            read_json(path, "replace it with the file of DAVIS-2017-scribbles-trainval.zip (or, for generated data, "
                            "rerun `python -m common.data.synthetic`)")


def run_session_folder(net: GISNet, args: argparse.Namespace, samples: List[Tuple[str, int]], metric: str,
                       final: Path, fast: Optional[FastGIS]) -> dict:
    """One metric's session into `<final>.partial`, renamed to `final` when it has finished.

    An interrupted session leaves the folder behind, and a rerun with the same settings resumes after
    its finished sequences (`--overwrite` starts over); a session that fails is removed."""
    partial = final.with_name(final.name + ".partial")
    if args.overwrite:
        shutil.rmtree(partial, ignore_errors=True)
    on_interrupt(f"the finished sequences are kept in {partial} and a rerun with the same settings resumes after "
                 f"them")
    try:
        summary = run_ivos(net, args.davis, partial, metric=metric, guide=args.guide, subset=args.subset,
                           samples=samples, max_interactions=args.max_interactions, max_time=args.max_time,
                           proportion=args.proportion, dilation=args.dilation, min_nb_nodes=args.min_nb_nodes,
                           save_masks=args.save_masks, host=args.host, user_key=args.user_key, fast=fast,
                           resume={"weights": args.weights}, size=args.size)
    except KeyboardInterrupt:
        raise  # the finished sequences stay in the .partial folder for the rerun
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    return summary


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
    p.add_argument("--size", type=int, default=None,
                   help="working size: the shorter side (px) the model propagates at, masks upsampled to the frame "
                        "and scored there (as gis.app's --size); default: the frames' own size, as the paper")
    add_fast_arguments(p, fast_help=FAST_HELP)
    add_device_argument(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    import_davisinteractive()
    from davisinteractive.dataset import Davis

    from gis.davis_frames import check_frames
    from gis.fast import FastGIS
    from gis.model import load_model

    if not args.davis.is_dir():
        raise UserError(f"DAVIS root not found: {args.davis}; pass --davis")
    fast_options = fast_options_from_args(args)
    if args.max_interactions < 1:
        raise UserError(f"--max-interactions must be at least 1, got {args.max_interactions}")
    if args.size is not None and not 16 <= args.size <= 4096:
        raise UserError(f"--size must be a shorter side of 16..4096 px, got {args.size}")
    # The folder's own list of the subset when it has one (DAVIS: the same as the framework's table; other
    # DAVIS-format data such as the synthetic sample: its sequences), else the framework's table.
    own_list = args.sequences or (args.davis / "ImageSets" / "2017" / f"{args.subset}.txt").is_file()
    register = registered_sequences(args.davis, args.subset, args.sequences) if own_list else nullcontext()
    with torch.no_grad(), register:
        sequences = Davis.sets[args.subset]
        _check_dataset(args.davis, args.subset, sequences)
        for seq in sequences:  # the rest of the input, then the output folder, before the weights load
            check_sequence_sizes(args.davis / "JPEGImages" / "480p" / seq, args.davis / "Annotations" / "480p" / seq)
        check_output_folder(args.output)
        samples = [(s, i) for s in sorted(sequences) for i in args.scribble_indices
                   if i <= Davis.dataset[s]["num_scribbles"]]
        if not samples:
            raise UserError(f"no scribble samples for subset {args.subset!r} and indices {args.scribble_indices}")
        finals = [args.output / result_dir_name(metric, args.guide) for metric in args.metric]
        existing = [f for f in finals if f.exists()]
        if existing and not args.overwrite:
            raise UserError(f"{existing[0]} exists; pass --overwrite or choose another --output")
        check_frames(args.davis, {s: Davis.dataset[s]["num_frames"] for s, _ in samples})
        device = pick_device(args.device)
        net = load_model(args.weights, device)
        fast = FastGIS(net, fast_options) if fast_options is not None else None
        print(f"GIS-RAmap on {device}{' (fast mode)' if fast is not None else ''}")
        for metric, final in zip(args.metric, finals):
            summary = run_session_folder(net, args, samples, metric, final, fast)
            print(json.dumps({"metric": metric, "guide": args.guide, "auc": summary["auc"],
                              "metric_at_60s": summary["metric_at_threshold"][metric],
                              "per_interaction": summary["metric_per_interaction"][metric], "folder": str(final)}))
    return 0


if __name__ == "__main__":
    run_cli(main)

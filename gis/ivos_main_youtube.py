"""GIS-RAmap on YouTube-IVOS (200 YouTube-VOS 2019 train videos; protocol in `gis.youtube_session`).

    python -m gis.ivos_main_youtube --youtube data/YouTubeVOS2019 --weights gis-youtube --output outputs/gis/ytvos19-ivos

`--fast` runs the fast inference path (`gis.fast`). Videos are independent, so the run scales out with
`torchrun --nproc_per_node=N -m gis.ivos_main_youtube ...`: each rank takes its share of the videos and
rank 0 writes the summaries (same files as one process). The DAVIS session (`gis.ivos_main_davis`) is
one sequential davisinteractive session and runs in a single process.

For each click budget (`--points 5 10 20 50`), every video gets 4 rounds: the clicks on its
annotated frame, then 3 robot scribbles on the frames the session picks. Frames are resized to a
480-pixel shorter side for the network and the masks resized back (nearest). Written to
`<output>/GIS-RAmap[JF]_[<guide>]/`:

* `iPointNN/summary_in_csv.csv`  per video and object, the J&F of rounds 1-4;
* `iPointNN/summary.json`        the per-round means over all objects;
* `iPointNN/test_logs.txt`       the log; `iPointNN/progress.jsonl` the finished videos (a rerun
  resumes after them);
* `summary_total.json`           the per-round means averaged over the click budgets (the published
  file holds this average; the reference script's code would write their sum);
* `iPointNN/result_video/<video>/roundNN/*.png` with `--save-masks`.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from common.data.ivos_points import POINT_COUNTS, VALIDATION_LIST, points_file
from common.data.output_folder import check_output_folder
from common.data.palette import write_label_png
from common.inference.fast import add_fast_arguments, fast_options_from_args
from common.runtime.device import add_device_argument, pick_device
from common.runtime.errors import UserError, on_interrupt, run_cli
from gis.options import FAST_HELP, GUIDE_METHODS
from gis.youtube_session import PACKAGED_POINTS_DIR, YoutubeSession, check_videos, load_rgb

if TYPE_CHECKING:  # the model and torch load where they run: `--help` answers without them
    from common.runtime.distributed import DistContext
    from gis.fast import FastGIS
    from gis.model import GISNet

N_ROUNDS = 4


def resized_size(height: int, width: int, short_side: int) -> tuple:
    """(H, W) after scaling the shorter side to `short_side` (the other side truncated)."""
    if width >= height:
        return short_side, int((width / height) * short_side)
    return int((height / width) * short_side), short_side


def resize_frame(rgb: np.ndarray, short_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    if (w >= h and h == short_side) or (w < h and w == short_side):
        return rgb
    nh, nw = resized_size(h, w, short_side)
    return cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_CUBIC)


def resize_labels(labels: np.ndarray, short_side: int) -> np.ndarray:
    nh, nw = resized_size(*labels.shape[:2], short_side)
    return cv2.resize(labels.astype(np.float64), (nw, nh), interpolation=cv2.INTER_NEAREST)


def run_video(net: GISNet, session: YoutubeSession, video: str, *, guide: str, proportion: float, dilation: int,
              short_side: int, save_dir: Optional[Path] = None, fast: Optional[FastGIS] = None) -> List[int]:
    """The reference's per-video loop; returns the annotated frames of the 4 rounds."""
    import torch
    import torch.nn.functional as F

    from gis.ivos import GISSession, crop, point_channels, scribble_channels

    (h, w), n_frames, n_obj = session.initialize_session_for_video(video)
    frames = np.stack([resize_frame(load_rgb(p), short_side) for p in session.frame_paths(video)])
    state = GISSession(net, frames, n_obj, proportion=proportion, blend=False, max_rounds=N_ROUNDS, fast=fast)
    final = np.zeros([n_frames, h, w], dtype=np.uint8)
    scale = short_side / min(h, w)
    for _ in range(N_ROUNDS):
        annotated = session.prev_frames_used_in_index[-1]
        if state.round == 0:
            iact = point_channels(session.get_points_firstround(), n_obj, frames.shape[1], frames.shape[2], scale)
        else:
            prev = resize_labels(final[annotated], short_side)
            iact = scribble_channels(session.get_scrdata_currentround()["scribbles"][annotated], n_obj, prev,
                                     first_round=False, dilation=dilation)
        visited = state.run_round(iact, annotated)
        # Only the visited frames change; probabilities are resized (nearest) to the original size.
        for f in dict.fromkeys(visited):
            probs = crop(state.prob_maps[f], state.pad).unsqueeze(0)
            final[f] = torch.argmax(F.interpolate(probs, size=(h, w))[0], dim=0).cpu().numpy().astype(np.uint8)
        session.submit_masks(final, state.finish_round(guide))
        if save_dir is not None:
            for f, name in enumerate(session.frame_list):
                write_label_png(save_dir / video / f"round{state.round:02d}" / name, final[f])
    return list(session.prev_frames_used_in_index)


def run_youtube(net: GISNet, youtube_root: Path, n_points: int, out_dir: Path, *, points_dir: Path,
                guide: str = "wo_RS", proportion: float = 0.99, dilation: int = 5, short_side: int = 480,
                min_nb_nodes: int = 2, videos: Optional[Sequence[str]] = None, save_masks: bool = False,
                echo: bool = True, fast: Optional[FastGIS] = None, dist: Optional[DistContext] = None
                ) -> Optional[List[float]]:
    """All videos with `n_points` initial clicks; returns the per-round mean J&F (summary.json).

    Under torchrun (`dist` enabled) each rank runs its shard of the videos (`common.runtime.distributed.shard`)
    and records them in its own `progress.rank<r>.jsonl`; after a barrier rank 0 merges them into
    `progress.jsonl`, writes the summaries and returns the numbers (the other ranks return None).
    """
    from common.runtime.distributed import shard

    session = YoutubeSession(youtube_root, points_file(points_dir, n_points), Path(points_dir) / VALIDATION_LIST,
                             n_total_rounds=N_ROUNDS, min_nb_nodes=min_nb_nodes, videos=videos)
    out_dir.mkdir(parents=True, exist_ok=True)
    merged_path = out_dir / "progress.jsonl"
    distributed = dist is not None and dist.enabled
    progress_path = out_dir / f"progress.rank{dist.rank}.jsonl" if distributed else merged_path
    done = _read_progress(out_dir)
    log_path = out_dir / (f"test_logs.rank{dist.rank}.txt" if distributed else "test_logs.txt")
    mine = shard(session.youtube_val_videos, dist) if distributed else session.youtube_val_videos
    on_interrupt(f"the finished videos are kept ({progress_path}) and a rerun resumes after them")
    # closed on the way out, so that an interruption's last line is not followed by the bar drawn again
    with tqdm(mine, desc=f"YouTube-IVOS {n_points:02d} points", disable=not echo, unit="video") as bar:
        for video in bar:
            if video in done:
                continue
            save_dir = out_dir / "result_video" if save_masks else None
            annotated = run_video(net, session, video, guide=guide, proportion=proportion, dilation=dilation,
                                  short_side=short_side, save_dir=save_dir, fast=fast)
            rec = {"video": video, "annotated_frames": annotated, "jf": session.video_summary().tolist()}
            with open(progress_path, "a") as fp:
                fp.write(json.dumps(rec) + "\n")
            done[video] = rec
            with open(log_path, "a") as fp:
                fp.write(f"{video}: frames {annotated}, J&F per round "
                         f"{np.mean(rec['jf'], axis=0).round(4).tolist()}\n")
    if distributed:
        dist.barrier()  # every rank's videos are recorded
        if not dist.is_main:
            return None
        done = _merge_rank_files(out_dir, session.youtube_val_videos)
        log_path = out_dir / "test_logs.txt"

    with open(out_dir / "summary_in_csv.csv", "w", newline="") as fp:
        writer = csv.writer(fp)
        writer.writerow(["sequence", "obj_idx"] + [f"round-{i + 1}" for i in range(N_ROUNDS)])
        for video in session.youtube_val_videos:
            for obj, rounds in enumerate(done[video]["jf"]):
                writer.writerow([video, str(obj + 1)] + list(rounds))
    # Per round, the mean over every object of every video (YoutubeSession.performance_summary), in video order.
    per_object = np.concatenate([np.asarray(done[v]["jf"]) for v in session.youtube_val_videos])
    performance = [float(v) for v in per_object.mean(axis=0)]
    (out_dir / "summary.json").write_text(json.dumps(performance))
    with open(log_path, "a") as fp:
        fp.write(f"{performance}\n")
    return performance


def _read_progress(out_dir: Path) -> dict:
    """Finished videos: `progress.jsonl` plus the per-rank files of an interrupted torchrun."""
    done = {}
    for path in [out_dir / "progress.jsonl"] + sorted(out_dir.glob("progress.rank*.jsonl")):
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    done[rec["video"]] = rec
    return done


def _merge_rank_files(out_dir: Path, videos: Sequence[str]) -> dict:
    """Rank 0 after the barrier: fold the per-rank progress files and logs into the single-process ones."""
    done = _read_progress(out_dir)
    missing = [v for v in videos if v not in done]
    if missing:
        raise UserError(f"{len(missing)} video(s) have no result after the distributed run, first {missing[0]!r}; "
                        "rerun the same command to resume")
    tmp = out_dir / "progress.jsonl.tmp"
    tmp.write_text("".join(json.dumps(done[v]) + "\n" for v in videos))
    tmp.replace(out_dir / "progress.jsonl")
    with open(out_dir / "test_logs.txt", "a") as log:
        for path in sorted(out_dir.glob("test_logs.rank*.txt")):
            log.write(path.read_text())
            path.unlink()
    for path in out_dir.glob("progress.rank*.jsonl"):
        path.unlink()
    return done


# ---------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gis.ivos_main_youtube", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--youtube", type=Path, default=Path("data/YouTubeVOS2019"),
                   help="YouTube-VOS 2019 root (train/JPEGImages, train/Annotations)")
    p.add_argument("--output", type=Path, default=Path("outputs/gis/ytvos19-ivos"),
                   help="result folder (GIS-RAmap[JF]_[<guide>]/iPointNN inside)")
    p.add_argument("--weights", default="gis-youtube",
                   help="checkpoint path or registry name, or 'seeded' ('none' is an alias) for a seeded "
                        "initialisation that needs no download (the numbers are then not the paper's)")
    p.add_argument("--points", nargs="+", type=int, default=list(POINT_COUNTS), help="click budgets (point_info_NN.json)")
    p.add_argument("--points-dir", type=Path, default=PACKAGED_POINTS_DIR,
                   help=f"folder with {VALIDATION_LIST} and point_info_NN.json")
    p.add_argument("--videos", nargs="+", default=None, help="restrict to these videos")
    p.add_argument("--guide", default="wo_RS", choices=GUIDE_METHODS, help="frame recommendation")
    p.add_argument("--proportion", type=float, default=0.99, help="propagation proportion")
    p.add_argument("--dilation", type=int, default=5, help="scribble dilation kernel")
    p.add_argument("--min-nb-nodes", type=int, default=2, help="robot min_nb_nodes")
    p.add_argument("--short-side", type=int, default=480, help="network input: shorter side resized to this")
    p.add_argument("--save-masks", action="store_true", help="write every round's masks as PNGs")
    add_fast_arguments(p, fast_help=FAST_HELP)
    add_device_argument(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if not (args.youtube / "train" / "JPEGImages").is_dir():
        raise UserError(f"{args.youtube}/train/JPEGImages not found; pass --youtube (YouTube-VOS 2019 root)")
    fast_options = fast_options_from_args(args)
    check_videos(args.youtube, args.points_dir, args.videos)  # all input and the output folder before the weights
    check_output_folder(args.output)
    import torch

    from common.runtime.distributed import init_distributed
    from gis.fast import FastGIS
    from gis.model import load_model

    ctx = init_distributed(pick_device(args.device))  # torchrun: this rank's device; plain run: unchanged
    device = ctx.device
    net = load_model(args.weights, device)
    fast = FastGIS(net, fast_options) if fast_options is not None else None
    if ctx.is_main:
        print(f"GIS-RAmap on {device}{' (fast mode)' if fast is not None else ''}"
              f"{f', {ctx.world_size} ranks' if ctx.enabled else ''}")
    result_dir = args.output / f"GIS-RAmap[JF]_[{args.guide}]"
    per_budget = {}
    with torch.no_grad():
        for n in args.points:
            per_budget[n] = run_youtube(net, args.youtube, n, result_dir / f"iPoint{n:02d}", points_dir=args.points_dir,
                                        guide=args.guide, proportion=args.proportion, dilation=args.dilation,
                                        short_side=args.short_side, min_nb_nodes=args.min_nb_nodes,
                                        videos=args.videos, save_masks=args.save_masks, echo=ctx.is_main,
                                        fast=fast, dist=ctx)
            if ctx.is_main:
                print(f"iPoint{n:02d}: J&F per round " + " / ".join(f"{v:.3f}" for v in per_budget[n]))
    if not ctx.is_main:
        return 0
    total = np.mean([per_budget[n] for n in args.points], axis=0).tolist()
    (result_dir / "summary_total.json").write_text(json.dumps(total))
    print("mean over click budgets: " + " / ".join(f"{v:.3f}" for v in total) +
          "   (published: 0.672 / 0.755 / 0.806 / 0.832)")
    return 0


if __name__ == "__main__":
    run_cli(main)

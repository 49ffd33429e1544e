"""Train BMVOS, EMVOS, TBD or HMMN from scratch on generated data, then score it on generated videos it never saw.

    python -m vos.train_sample tbd [--minutes 30] [--out outputs/train-sample] [--device cpu]
    make train-sample PAPER=tbd [MINUTES=30]
    python -m vos.train_sample tbd --resume        # after Ctrl-C: continue where it stopped (same --minutes)

1. Writes a generated training set, `<out>/data/{DAVIS,COCO}` (`common.data.synthetic.make_training_sample`: many
   more videos and COCO-layout images than the demo sample; 1-3 objects that move, turn, occlude each other and,
   in half the scenes, resemble each other), kept and reused by later runs.
2. Trains the paper's two stages (COCO, then DAVIS-layout videos; HMMN the video stage alone, `VIDEO_ONLY`) from
   a random start with the scratch-training switches (`SCRATCH_FLAGS`: encoder trained, BatchNorm in train mode, a
   higher learning rate, for TBD and HMMN decaying along a cosine over each stage's time, deep supervision, teacher
   forcing, for EMVOS matching supervision; small crops; HMMN's own in `HMMN_FLAGS`), each stage for its share of
   `--minutes` of training time, validating on the training set's own val videos. `--resume` continues an
   interrupted run: each stage restarts from its last resume checkpoint, and the minutes it trained before count
   against its share.
3. Scores the best validated checkpoint (HMMN: its final weights, `KEEPS_LAST_WEIGHTS`) with the paper's own test
   command line (`--weights <out>/<paper>/best.pth`) on `<out>/eval/DAVIS`: the videos `python -m
   common.data.synthetic` writes at its default size and object count with `--seed 7` (a seed the training data
   never used).

Writes `<out>/<paper>/best.pth`, `<out>/<paper>/scores.json` ({"J&F", "J", "F"} in percent and "train_seconds"),
the per-step CSV logs and learning-curve PNGs of each stage, and keeps the checkpoints in
`<out>/<paper>/checkpoints/`. "train_seconds" is the time spent in the stages' training loops (validation
included), summed over resumed runs; writing the data and scoring are not counted.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from common.data.output_folder import check_output_folder, write_text_atomic
from common.runtime.errors import UserError, on_interrupt, run_cli
from common.runtime.training_arguments import resume_checkpoint

PAPERS = ("tbd", "emvos", "bmvos", "hmmn")
EVAL_SEED = 7            # `python -m common.data.synthetic OUT --seed 7 --videos 5`; never used for training data
EVAL_VIDEOS = 5
# The training videos are as long as the evaluation videos (8 frames), so their objects move as fast: a generated
# object covers the same path whatever the video's length (README: BMVOS lost fast objects after 12-frame videos);
# 90 of them hold as many frames as the 60 of 12 frames before
TRAIN_VIDEOS, TRAIN_FRAMES = 90, 8
COCO_SHARE = 0.3         # of the time budget, for the COCO stage; the rest trains on the videos
# HMMN spends its whole budget on the videos: 30 minutes of its video stage alone scored 40.8 on the 5 unseen videos
# and 53.9 on 20 more, where 9 minutes of static images and 21 of videos had scored 32.3 and 39.9 (hmmn/README.md);
# with the flags as they are, the static stage first scored 64.2 on the 5 against 65.5-71.8 without it ("The static
# stage back")
VIDEO_ONLY = {"hmmn"}
# Deviations from the official recipe that make training from a random start feasible on a CPU (all off by default
# in the paper's training command line): see the README's "Training on generated data".
# (--deep-supervision and --teacher-forcing: without them TBD and EMVOS never learn which object is the target)
SCRATCH_FLAGS = ["--init", "scratch", "--train-encoder", "--bn-train", "--deep-supervision", "--teacher-forcing"]
# the learning rate (1e-3 makes EMVOS collapse), measured in 30-minute runs: on 60 videos of 12 frames TBD (with
# its cosine) 85.2 at 6e-4 against 78.1 at 3e-4, EMVOS 68.9 against 62.8; BMVOS needs the 8-frame videos for it
# (83.4 at 6e-4 against 68.3 at 3e-4; on 12-frame videos 63.7 against 65.5)
SCRATCH_LR = {"tbd": "6e-4", "emvos": "6e-4", "bmvos": "6e-4"}
# --cosine-lr only in the stages where 30-minute runs measured it better than a constant rate (README): TBD
# 67.8 -> 78.1 with it in both stages; EMVOS fell 62.8 -> 56.1 and BMVOS 65.5 -> 57.7 with it in both, EMVOS to
# 53.6 with it in the video stage alone. HMMN: in place of its recipe's step decay, 69.7, 68.0 and 65.8 in three
# runs where the step decay scored 56.5 the same day (hmmn/README.md, "A half cosine in place of the step decay")
COSINE_LR_STAGES = {"tbd": ("coco", "video"), "hmmn": ("video",)}
# --matching-supervision (EMVOS's matcher is the one that declares its similarities): without it EMVOS's decoder
# learned to follow the previous mask and barely used its matching (68.6 without it, 81.2 and 82.5 with it, README)
PAPER_SCRATCH_FLAGS = {"emvos": ["--matching-supervision"]}
VIDEO_CLIP_LENGTH = 4
# batch, crop and run length of every paper's stages; the time limit ends them, the epochs never do
RUN_FLAGS = ["--batch-size", "4", "--clips-per-epoch", "16", "--crop", "96",
             "--epochs", "100000", "--save-step", "100000", "--val-step", "25"]
SCHEDULE_FLAGS = RUN_FLAGS + ["--short-side", "96", "--coco-clip-length", "3",
                              "--video-clip-length", str(VIDEO_CLIP_LENGTH), "--min-fg-pixels", "64"]
# HMMN (hmmn.train, STCN's recipe): its encoders always train and its crops are random (no --short-side,
# --min-fg-pixels); 3-frame clips and the bootstrapped loss as in its recipe. Its own scratch switches (hmmn/README.md,
# "Training from a random start"): 3e-4 with the aggregation unclamped (the released clamp stalls it), the read-out
# attention supervised at /16 (it saturates on background cells otherwise), spread over the memory cells of the query
# cell's label and supervised at /8 and /4 too, with the /8 and /4 reads in every pass (it otherwise settles on one
# wrong cell per query cell), the ground truth memorised and a 50-step warm-up: 32.3 on the 5 scored videos and 39.9
# on 20 more after both stages (every pixel in the loss then, `--no-bootstrap`: the bootstrapped loss drove the masks
# of those first runs to 0.5), where the flags before the label spread gave 36.5 and 33.4 and 3e-5 without any of
# them 23-24 (the video stage alone: 40.8, 53.9); with the encoders' bottlenecks started as the identity, 60.7 and
# 74.8 (the video stage alone; 64.8 and 80.0 with the clips loaded in-process, 516 steps where 400). With the
# cosine the recipe's bootstrapped loss trains as well as every pixel's: 70.5 and 65.5 on the 5 (two seeds) where
# `--no-bootstrap` scored 64.5 the same day, so it is the recipe's again (hmmn/README.md, "The recipe's loss back").
# A soft Dice term per object (Cutie's loss): four runs 68.1-73.2 on the 5 and 81.6-84.7 on the 20 (means 70.8 and
# 83.5), where the command without it scored 70.3 and 80.2 on a machine as fast (hmmn/README.md, "The Dice term
# adopted; what the models see of video 04")
HMMN_FLAGS = ["--init", "scratch", "--bn-train", "--lr", "3e-4", "--unclamped-aggregation", "--matching-supervision",
              "--matching-labels", "--fine-matching-supervision", "--memory-dropout", "0",
              "--teacher-forcing", "--warmup-steps", "50", "--zero-init-residual", "--dice-loss"] + RUN_FLAGS
# HMMN keeps the weights its run ends with, as STCN's recipe does (it has no validation): on 20 more unseen videos
# its final weights scored 10.0 points above the checkpoint the 3 validation videos picked, on average over 5 runs
# (10.7-13.7 above in four, 0.7 below in one; hmmn/README.md, "The final weights, not the validated ones;
# twice the time")
KEEPS_LAST_WEIGHTS = {"hmmn"}
VIDEO_STAGE = {"hmmn": "main"}  # the second stage's name where it is not "davis"
DEFAULT_OUT = Path("outputs/train-sample")
RUN_FILE = "run.json"  # in <out>/<paper>: the `run_settings` of the run, which a resume must keep


def trained_checkpoint(out: Path, paper: str) -> Path:
    """Where a run of this command with `--out out` leaves the paper's trained model (what `--weights` loads)."""
    return out / paper / "best.pth"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vos.train_sample", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("paper", choices=PAPERS)
    p.add_argument("--minutes", type=float, default=30.0, help="training time budget, the stages together")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    p.add_argument("--train-videos", type=int, default=TRAIN_VIDEOS, help="generated training videos")
    p.add_argument("--train-frames", type=int, default=TRAIN_FRAMES, help="frames per generated training video")
    p.add_argument("--coco-images", type=int, default=200, help="generated COCO-layout images")
    p.add_argument("--val-videos", type=int, default=3, help="generated videos to validate on while training")
    p.add_argument("--eval-videos", type=int, default=EVAL_VIDEOS, help="generated videos to score on")
    # 0: on 2 CPU cores one loader process, forked again every 16-clip epoch, cost a quarter of each step (HMMN 4.6 s
    # a step against 3.5 in-process, TBD's COCO stage 1.31 against 0.92; system time 63 s against 5 s over 32 HMMN
    # steps, README)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default 0: in-process)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in <out>/<paper> (give the same --minutes)")
    return p


def check_args(args: argparse.Namespace) -> None:
    if not args.minutes > 0:
        raise UserError(f"--minutes {args.minutes}: the training budget must be positive")
    for flag in ("train_videos", "coco_images", "val_videos", "eval_videos"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be at least 1")
    if args.train_frames < VIDEO_CLIP_LENGTH:
        raise UserError(f"--train-frames {args.train_frames}: must be at least {VIDEO_CLIP_LENGTH}, the length of "
                        f"the video stage's clips")
    if args.workers < 0:
        raise UserError(f"--workers {args.workers}: must be at least 0")
    check_output_folder(args.out, "--out")
    run_dir = args.out / args.paper
    if (run_dir / "checkpoints").exists() and not args.resume:
        raise UserError(f"{run_dir} already holds a training run; pass --resume to continue it "
                        f"(make train-sample PAPER={args.paper} RESUME=1), or delete that folder to train again")
    if args.resume:
        started_with = _run_settings(run_dir)
        if started_with is None:
            raise UserError(f"--resume: {run_dir} holds no run to continue; start without --resume")
        differ = [f"--{key.replace('_', '-')} {started_with[key]:g}" for key, value in run_settings(args).items()
                  if key in started_with and started_with[key] != value]
        if differ:
            raise UserError(f"--resume: the run in {run_dir} was started with {', '.join(differ)}; resume it with "
                            f"the same budget and data (make: MINUTES=...)")
        # a run of another stage plan (HMMN's before it trained the videos alone) would be deleted as unstarted
        first = resume_checkpoint(run_dir / "checkpoints", stage_plan(args.paper)[0][1])
        others = sorted(path.name for path in first.parent.glob("*_last.pth")) if not first.is_file() else []
        if others:
            raise UserError(f"--resume: {first.parent} holds {', '.join(others)}, not {first.name}: a run of other "
                            f"stages than this command trains; delete that folder to train again")


def run_settings(args: argparse.Namespace) -> dict:
    """What a resumed run must keep: the budget and the generated data it trains on."""
    return {key: getattr(args, key) for key in ("minutes", "train_videos", "train_frames", "coco_images", "val_videos")}


def _run_settings(run_dir: Path) -> Optional[dict]:
    """The `run_settings` a run in `run_dir` was started with (None: no run there); a run from before the data
    settings were recorded has only its minutes."""
    try:
        settings = json.loads((run_dir / RUN_FILE).read_text())
        settings["minutes"] = float(settings["minutes"])
        return settings
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_data(args: argparse.Namespace) -> dict:
    from common.data.synthetic import make_davis_sample, make_training_sample

    train = make_training_sample(args.out / "data", n_train=args.train_videos, n_val=args.val_videos,
                                 n_frames=args.train_frames, coco_images=args.coco_images)
    # the evaluation videos: `python -m common.data.synthetic`'s default size (96x160), objects (2) and frames (8)
    evaluation = make_davis_sample(args.out / "eval" / "DAVIS", seed=EVAL_SEED, n_videos=args.eval_videos,
                                   n_train=0, n_test_dev=0)
    return {"coco": train["coco"], "davis": train["davis"], "eval": evaluation}


def stage_plan(paper: str) -> List[Tuple[str, str]]:
    """The calls of the paper's training command line, in order: its `--stages` argument and the name its
    checkpoints and logs take (`<name>_last.pth`, `<name>_log.csv`). The last call trains the videos."""
    video = VIDEO_STAGE.get(paper, "davis")
    if paper in VIDEO_ONLY:
        return [(video, video)]
    # the video stage starts from the COCO stage's final weights: its call names both stages and resumes
    return [("coco", "coco"), (f"coco,{video}", f"coco_{video}")]


def train_argv(paper: str, stages: str, data: dict, ckpt: Path, args: argparse.Namespace) -> List[str]:
    argv = (["--train"] if paper in ("emvos", "tbd") else []) + [
        "--coco", str(data["coco"]), "--davis", str(data["davis"]), "--stages", stages,
        "--output-dir", str(ckpt), "--workers", str(args.workers)]
    trains = "coco" if stages == "coco" else "video"  # the stage this call trains (the COCO one is done)
    cosine = ["--cosine-lr"] if trains in COSINE_LR_STAGES.get(paper, ()) else []
    if paper == "hmmn":
        argv += HMMN_FLAGS + cosine
    else:
        argv += (SCRATCH_FLAGS + PAPER_SCRATCH_FLAGS.get(paper, []) + ["--lr", SCRATCH_LR[paper]] + cosine
                 + SCHEDULE_FLAGS)
    return argv + (["--device", args.device] if args.device else [])


def train(paper: str, argv: List[str], minutes_per_stage: float, device_name: Optional[str]) -> None:
    """The paper's own training entry point, in this process, with a time limit per stage."""
    from common.runtime.device import pick_device, seed_everything

    if paper == "hmmn":
        from hmmn.train import build_parser as parser, run as run_hmmn
        run_hmmn(parser().parse_args(argv + ["--time-limit", f"{minutes_per_stage:.4f}"]))
        return
    device = pick_device(device_name)
    if paper == "bmvos":
        from bmvos.model import BMVOS
        from bmvos.train import build_parser as parser, train as run
        from common.training.schedule import build_training_model, parse_stages
        from common.training.tbd_recipe import TBD_SCHEDULE
        args = parser().parse_args(argv + ["--time-limit", f"{minutes_per_stage:.4f}"])
        seed_everything(args.seed)
        run(build_training_model(BMVOS, args.init), parse_stages(args.stages, TBD_SCHEDULE), args, device)
        return
    if paper == "emvos":
        from emvos.run import build_parser as parser, run_train
    else:
        from tbd.run import build_parser as parser, run_train
    args = parser().parse_args(argv + ["--time-limit", f"{minutes_per_stage:.4f}"])
    run_train(args, device)


def stage_seconds(ckpt: Path, stage: str) -> float:
    """Seconds the stage has trained so far, over all its runs (its resume checkpoint's count; 0 before one)."""
    import torch

    last = resume_checkpoint(ckpt, stage)
    if not last.is_file():
        return 0.0
    return float(torch.load(last, map_location="cpu", weights_only=True).get("seconds", 0.0))


def final_weights(paper: str, ckpt: Path, stage: str) -> Path:
    """The weights the run keeps: the stage's best validated ones, else (and for `KEEPS_LAST_WEIGHTS`) its last
    numbered checkpoint (the time limit writes one)."""
    best = ckpt / f"{stage}_best.pth"
    if best.is_file() and paper not in KEEPS_LAST_WEIGHTS:
        return best
    numbered = sorted(ckpt.glob(f"{stage}_[0-9]*.pth"), key=lambda path: int(path.stem.rpartition("_")[2]))
    if not numbered:
        raise UserError(f"training wrote no checkpoint in {ckpt}; give it more --minutes")
    return numbered[-1]


def test_command(paper: str, eval_davis: Path, weights: Path, out: Path, device: Optional[str]) -> List[str]:
    if paper == "hmmn":
        cmd = ["-m", "hmmn.eval_davis", "-s", "val", "-y", "17", "-D", str(eval_davis), "--output",
               str(out / "davis17-val"), "--weights", str(weights)]
    elif paper == "bmvos":
        cmd = ["-m", "bmvos.main_runfile", "--dataset", "DAVIS17_val", "--davis", str(eval_davis), "--output", str(out),
               "--weights", str(weights), "--native-size"]
    else:
        cmd = ["-m", f"{paper}.run", "--test", "--davis", str(eval_davis), "--sets", "davis17-val",
               "--output", str(out), "--weights", str(weights), "--no-resize"]
    return [sys.executable] + cmd + (["--device", device] if device else [])


def score(paper: str, eval_davis: Path, weights: Path, out: Path, device: Optional[str]) -> dict:
    """J&F of `weights` on the evaluation videos, through the paper's test command line (percent)."""
    if out.exists():
        shutil.rmtree(out)
    result = subprocess.run(test_command(paper, eval_davis, weights, out, device))
    if result.returncode != 0:
        raise UserError(f"scoring {weights} with the {paper} test command failed (exit status {result.returncode})")
    with open(out / "davis17-val" / "global_results-val.csv", newline="") as f:
        row = next(csv.DictReader(f))
    return {key: round(100 * float(row[column]), 2)
            for key, column in (("J&F", "J&F-Mean"), ("J", "J-Mean"), ("F", "F-Mean"))}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    run_dir = args.out / args.paper
    ckpt = run_dir / "checkpoints"
    data = write_data(args)  # the same seed writes the same data, so a resumed run trains on what it began with
    on_interrupt(f"training stopped; the checkpoints in {ckpt} are kept, and the same command with --resume "
                 f"continues from the last one")
    plan = stage_plan(args.paper)
    # a run stopped before its first resume checkpoint has nothing to continue from: it starts again
    resume = ["--resume"] if resume_checkpoint(ckpt, plan[0][1]).is_file() else []
    if args.resume and not resume:
        print(f"notice: {ckpt} holds no resume checkpoint yet (the first comes with the first validation); "
              f"training starts again")
    if not resume and ckpt.exists():
        shutil.rmtree(ckpt)  # only this command's partial logs and checkpoints: the log would otherwise continue them
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / RUN_FILE, json.dumps(run_settings(args)) + "\n")
    train_seconds = 0.0
    for index, (stages, name) in enumerate(plan):
        # the COCO stage gets its share; the video stage what the budget has left (--resume loads a finished COCO
        # stage's final weights once, a time-limited stage counting as finished)
        last = index == len(plan) - 1
        minutes = max(args.minutes - train_seconds / 60, 0.01) if last else args.minutes * COCO_SHARE
        train(args.paper, train_argv(args.paper, stages, data, ckpt, args) + (resume if index == 0 else ["--resume"]),
              minutes, args.device)
        train_seconds += stage_seconds(ckpt, name)
    on_interrupt(None)

    best = trained_checkpoint(args.out, args.paper)
    shutil.copyfile(final_weights(args.paper, ckpt, plan[-1][1]), best)
    for _, stage in plan:
        for name in (f"{stage}_log.csv", f"{stage}_curves.png"):
            if (ckpt / name).is_file():
                shutil.copyfile(ckpt / name, run_dir / name)
    scores = score(args.paper, data["eval"], best, run_dir / "eval", args.device)
    scores["train_seconds"] = round(train_seconds, 1)
    (run_dir / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
    print(f"{args.paper}: J&F {scores['J&F']:.1f} (J {scores['J']:.1f}, F {scores['F']:.1f}) on {args.eval_videos} "
          f"unseen generated videos after {train_seconds / 60:.1f} min of training; {run_dir / 'scores.json'}")
    return 0


if __name__ == "__main__":
    run_cli(main)

"""`make reproduce-bmvos`: official weights on DAVIS 2016 and 2017 val, compared with the published numbers.

    python -m bmvos.reproduce --davis data/DAVIS --output outputs/bmvos [--device cuda] [--test-dev]
        [--ytvos data/YTVOS18] [--fast [--precision bf16] [--compile]]
    torchrun --nproc_per_node=N -m bmvos.reproduce --davis data/DAVIS ...   (videos sharded over N ranks)

Fetches the official DAVIS checkpoint into the weights cache (gdown), segments both val sets with the
official evaluator's settings, scores J&F in-process and prints ours against the paper (WACV 2022) and
against the released model's training logs. `--test-dev` / `--ytvos` also write the server submissions
(YouTube-VOS with the official ytvos checkpoint). Reruns resume: finished videos are skipped. `--fast` runs
the batched fast mode (`bmvos.fast.FastBMVOS`); its J&F agrees with the faithful default within noise. Under
torchrun every rank segments its share of the videos and rank 0 scores and prints the table.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

from bmvos import TITLE
from bmvos.checkpoints import OFFICIAL_WEIGHTS
from bmvos.main_runfile import DATASET_SETS, MODELS
from common.inference.benchmark_sets import BENCHMARK_SETS, run_sets
from common.inference.fast import add_fast_arguments, fast_options_from_args
from common.inference.reproduce import gap, reproduce_parser, text_table
from common.runtime.device import pick_device
from common.runtime.errors import run_cli

PUBLISHED: Dict[str, float] = {"davis16-val": 82.2, "davis17-val": 72.7}  # J&F-Mean in %, the paper's table
# J&F-Mean in % in the training logs the authors released with the checkpoint
TRAINING_LOG: Dict[str, float] = {"davis16-val": 82.3, "davis17-val": 72.6}

DATASET_NAMES = {folder: name for name, folder in DATASET_SETS.items()}  # rows keep main_runfile's --dataset names


def format_table(ours: Dict[str, float]) -> str:
    """Ours (J&F-Mean in % per set) against the paper and the training logs."""
    rows = []
    for name, paper in PUBLISHED.items():
        mine, log = ours.get(name), TRAINING_LOG[name]
        rows.append((DATASET_NAMES[name], mine, paper, gap(mine, paper), log, gap(mine, log)))
    return text_table(("benchmark", "ours", "paper", "diff", "log", "diff"), rows, name_width=14)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = reproduce_parser("bmvos", __doc__)
    parser.add_argument("--weights", default=None,
                        help="DAVIS checkpoint file instead of the official one (fetched into the weights cache), "
                             "or 'seeded'")
    parser.add_argument("--native-size", action="store_true",
                        help="skip the official evaluator's 480p resize (only for small test data)")
    add_fast_arguments(parser, fast_help="fast mode: objects batched, autocast on CUDA, channels_last "
                                         "(agrees within noise)")
    args = parser.parse_args(argv)
    fast = fast_options_from_args(args)

    # the model and torch load after the arguments are parsed, so that `--help` and a mistyped flag answer at once
    from bmvos.inference import load_segmenter, segment_video
    from common.runtime.distributed import init_distributed

    ctx = init_distributed(pick_device(args.device))  # torchrun: this rank's GPU and video share; else a no-op
    resize = not args.native_size
    sets = [*PUBLISHED, *(["davis17-test-dev"] if args.test_dev else []),
            *(["ytvos18-valid"] if args.ytvos is not None else [])]
    weights_of = {"davis": args.weights or OFFICIAL_WEIGHTS, "ytvos": MODELS["ytvos"]}  # --weights: DAVIS only
    summary = run_sets(sets, {"davis": args.davis, "ytvos": args.ytvos}, args.output, ctx.device, title=TITLE,
                       weights=None, default_weights=weights_of,
                       load_model=lambda name: load_segmenter(name, ctx.device, fast),
                       segment=lambda model, video: segment_video(model, video, resize=resize),
                       fast=fast is not None, dist=ctx)
    if not ctx.is_main:  # the other ranks segmented their share; rank 0 scored
        return 0

    ours = {name: 100 * summary[name]["J&F-Mean"] for name in PUBLISHED}
    mode = "fast mode" if fast is not None else "faithful mode"
    print(f"\nBMVOS reproduction, J&F-Mean in % ({ctx.device}, {mode})")
    print(format_table(ours))
    for name in sets:
        if "zip" in summary[name]:
            print(f"{DATASET_NAMES[name]}: upload {summary[name]['zip']} to {BENCHMARK_SETS[name].server}")
    return 0


if __name__ == "__main__":
    run_cli(main)

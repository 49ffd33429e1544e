"""`make reproduce-bmvos`: official weights on DAVIS 2016 and 2017 val, compared with the published numbers.

    python -m bmvos.reproduce --davis data/DAVIS --output outputs/bmvos [--device cuda] [--test-dev]
        [--ytvos data/YTVOS18] [--fast [--compile]]
    torchrun --nproc_per_node=N -m bmvos.reproduce --davis data/DAVIS ...   (videos sharded over N ranks)

Fetches the official DAVIS checkpoint into the weights cache (gdown), segments both val sets with the
official evaluator's settings, scores J&F in-process and prints ours against the paper (WACV 2022) and
against the released model's logs. `--test-dev` / `--ytvos` also write the server submissions (YouTube-VOS
with the official ytvos checkpoint). Reruns resume: finished videos are skipped. `--fast` runs the batched
fast mode (`FastBMVOS`); its J&F agrees with the faithful default within noise. Under torchrun every rank
segments its share of the videos and rank 0 scores and prints the table.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from bmvos.inference import SHORT_SIDE
from bmvos.main_runfile import build_model, run_benchmark
from bmvos.model import BMVOS, FastBMVOS
from common.runtime.device import pick_device
from common.runtime.distributed import init_distributed
from common.runtime.errors import UserError, run_cli
from common.inference.reproduce import gap, reproduce_parser, text_table

# J&F-Mean in %: the paper's table, and the logs the authors released with the checkpoint.
PUBLISHED: Dict[str, Tuple[float, float]] = {"DAVIS16_val": (82.2, 82.3), "DAVIS17_val": (72.7, 72.6)}


def format_table(ours: Dict[str, float]) -> str:
    rows = []
    for name, (paper, log) in PUBLISHED.items():
        mine = ours.get(name)
        rows.append((name, mine, paper, gap(mine, paper), log, gap(mine, log)))
    return text_table(("benchmark", "ours", "paper", "diff", "log", "diff"), rows, name_width=14)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = reproduce_parser("bmvos", __doc__)
    parser.add_argument("--weights", type=Path, default=None,
                        help="DAVIS checkpoint file instead of the official one (fetched into the weights cache), or 'seeded'")
    parser.add_argument("--native-size", action="store_true",
                        help="skip the official evaluator's 480p resize (only for small test data)")
    parser.add_argument("--fast", action="store_true",
                        help="fast mode: objects batched, autocast on CUDA, channels_last (agrees within noise)")
    parser.add_argument("--compile", action="store_true", help="with --fast: torch.compile the network's stages")
    args = parser.parse_args(argv)
    if args.compile and not args.fast:
        raise UserError("--compile applies to fast mode; add --fast")

    ctx = init_distributed(pick_device(args.device))  # torchrun: this rank's GPU and video share; else a no-op
    device = ctx.device
    short_side = None if args.native_size else SHORT_SIDE

    def model_for(name: str, weights: Optional[Path]) -> Union[BMVOS, FastBMVOS]:
        model = build_model(name, weights, device)
        return FastBMVOS(model, compile=args.compile) if args.fast else model

    def run(model: Union[BMVOS, FastBMVOS], name: str):
        return run_benchmark(model, name, args.davis, args.ytvos, args.output, device, short_side, dist=ctx)

    model = model_for("davis", args.weights)
    ours: Dict[str, float] = {}
    for name in PUBLISHED:
        result = run(model, name)
        if result is not None:  # None on the ranks other than 0
            ours[name] = 100 * result.global_row["J&F-Mean"]
    servers: List[str] = []
    if args.test_dev:
        run(model, "DAVIS17_test-dev")
        servers.append(f"DAVIS17_test-dev: upload {args.output / 'davis17-test-dev.zip'} to the DAVIS test-dev server")
    if args.ytvos is not None:
        run(model_for("ytvos", None), "YTVOS18_val")
        servers.append(f"YTVOS18_val: upload {args.output / 'ytvos18-valid.zip'} to the YouTube-VOS 2018 server")

    if not ctx.is_main:
        return 0
    mode = "fast mode" if args.fast else "faithful mode"
    print(f"\nBMVOS reproduction, J&F-Mean in % ({device}, {mode})")
    print(format_table(ours))
    for line in servers:
        print(line)
    return 0


if __name__ == "__main__":
    run_cli(main)

"""`make reproduce-bmvos`: official weights on DAVIS 2016 and 2017 val, compared with the published numbers.

    python -m bmvos.reproduce --davis data/DAVIS --output outputs/bmvos [--device cuda] [--test-dev]
        [--ytvos data/YTVOS18]

Fetches the official DAVIS checkpoint into the weights cache (gdown), segments both val sets with the
official evaluator's settings, scores J&F in-process and prints ours against the paper (WACV 2022) and
against the released model's logs. `--test-dev` / `--ytvos` also write the server submissions (YouTube-VOS
with the official ytvos checkpoint). Reruns resume: finished videos are skipped.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from bmvos.inference import SHORT_SIDE
from bmvos.main_runfile import build_model, run_benchmark
from common.device import add_device_argument, pick_device
from common.errors import run_cli

# J&F-Mean in %: the paper's table, and the logs the authors released with the checkpoint.
PUBLISHED: Dict[str, Tuple[float, float]] = {"DAVIS16_val": (82.2, 82.3), "DAVIS17_val": (72.7, 72.6)}


def format_table(ours: Dict[str, float]) -> str:
    lines = [f"{'benchmark':<14}{'ours':>8}{'paper':>8}{'diff':>8}{'log':>8}{'diff':>8}"]
    for name, (paper, log) in PUBLISHED.items():
        if name not in ours:
            lines.append(f"{name:<14}{'-':>8}{paper:>8.1f}{'-':>8}{log:>8.1f}{'-':>8}")
            continue
        mine = ours[name]
        lines.append(f"{name:<14}{mine:>8.1f}{paper:>8.1f}{mine - paper:>+8.1f}{log:>8.1f}{mine - log:>+8.1f}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bmvos.reproduce", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis", type=Path, required=True, help="DAVIS 2017 root (JPEGImages/, Annotations/)")
    parser.add_argument("--ytvos", type=Path, default=None, help="YouTube-VOS 2018 root: also write its submission")
    parser.add_argument("--output", type=Path, default=Path("outputs/bmvos"), help="results folder")
    parser.add_argument("--test-dev", action="store_true", help="also DAVIS 2017 test-dev (submission zip)")
    parser.add_argument("--weights", type=Path, default=None,
                        help="DAVIS checkpoint file instead of the official one (fetched into the weights cache)")
    parser.add_argument("--native-size", action="store_true",
                        help="skip the official evaluator's 480p resize (only for small test data)")
    add_device_argument(parser)
    args = parser.parse_args(argv)

    device = pick_device(args.device)
    short_side = None if args.native_size else SHORT_SIDE
    model = build_model("davis", args.weights, device)
    ours: Dict[str, float] = {}
    for name in PUBLISHED:
        result = run_benchmark(model, name, args.davis, args.ytvos, args.output, device, short_side)
        assert result is not None
        ours[name] = 100 * result.global_row["J&F-Mean"]
    servers: List[str] = []
    if args.test_dev:
        run_benchmark(model, "DAVIS17_test-dev", args.davis, args.ytvos, args.output, device, short_side)
        servers.append(f"DAVIS17_test-dev: upload {args.output / 'DAVIS17_test-dev.zip'} to the DAVIS test-dev server")
    if args.ytvos is not None:
        ytvos_model = build_model("ytvos", None, device)
        run_benchmark(ytvos_model, "YTVOS18_val", args.davis, args.ytvos, args.output, device, short_side)
        servers.append(f"YTVOS18_val: upload {args.output / 'YTVOS18_val.zip'} to the YouTube-VOS 2018 server")

    print(f"\nBMVOS reproduction, J&F-Mean in % ({device})")
    print(format_table(ours))
    for line in servers:
        print(line)
    return 0


if __name__ == "__main__":
    run_cli(main)

"""`make reproduce-hmmn`: official weights, DAVIS 2016/2017 val, and a table against the paper.

    python -m hmmn.reproduce --davis data/DAVIS --output outputs/hmmn [--device cuda]
        [--test-dev] [--ytvos18 data/YouTubeVOS2018] [--ytvos19 data/YouTubeVOS2019]

DAVIS val sets are scored here (J&F); DAVIS 2017 test-dev and YouTube-VOS are scored by their servers,
so for them this writes the submission zip and the table says where it is. Reruns resume.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from common.runtime.device import pick_device
from common.runtime.errors import run_cli
from common.inference.reproduce import reproduce_parser
from hmmn.eval_davis import run_split, set_name
from hmmn.inference import load_model

# ICCV 2021 paper, J&F (YouTube-VOS: overall score G).
PUBLISHED = {
    "DAVIS 2016 val": 90.8,
    "DAVIS 2017 val": 84.7,
    "DAVIS 2017 test-dev": 78.6,
    "YouTube-VOS 2018 valid": 82.6,
    "YouTube-VOS 2019 valid": 82.5,
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = reproduce_parser("hmmn", __doc__, ytvos=False)  # two YouTube-VOS years: --ytvos18 / --ytvos19
    parser.add_argument("--weights", default="hmmn", help="checkpoint file, registry name or 'seeded' (default: hmmn)")
    parser.add_argument("--ytvos18", type=Path, default=None, help="YouTube-VOS 2018 root (valid/, valid_all_frames/)")
    parser.add_argument("--ytvos19", type=Path, default=None, help="YouTube-VOS 2019 root")
    parser.add_argument("--mem-every", type=int, default=5)
    args = parser.parse_args(argv)

    device = pick_device(args.device)
    model = load_model(args.weights, device)
    jobs: List[Tuple[str, int, str, Path]] = [("DAVIS 2016 val", 16, "val", args.davis),
                                              ("DAVIS 2017 val", 17, "val", args.davis)]
    if args.test_dev:
        jobs.append(("DAVIS 2017 test-dev", 17, "test-dev", args.davis))
    for year, root in ((18, args.ytvos18), (19, args.ytvos19)):
        if root is not None:
            jobs.append((f"YouTube-VOS 20{year} valid", year, "valid", root))

    ours = {}
    for label, year, split, root in jobs:
        output = args.output / set_name(year, split)
        result = run_split(model, device, year, split, str(root), output, mem_every=args.mem_every)
        ours[label] = (f"{100 * result.global_row['J&F-Mean']:.1f}" if result is not None
                       else f"server: {output / 'submission.zip'}")

    print(f"\nHMMN reproduction ({device})")
    print(f"{'benchmark':<26}{'published':>10}  this run")
    for label, published in PUBLISHED.items():
        print(f"{label:<26}{published:>10.1f}  {ours.get(label, 'not run')}")
    return 0


if __name__ == "__main__":
    run_cli(main)

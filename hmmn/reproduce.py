"""`make reproduce-hmmn`: official weights, DAVIS 2016/2017 val, and a table against the paper.

    python -m hmmn.reproduce --davis data/DAVIS --output outputs/hmmn [--device cuda]
        [--test-dev] [--ytvos18 data/YouTubeVOS2018] [--ytvos19 data/YouTubeVOS2019]

DAVIS val sets are scored here (J&F); DAVIS 2017 test-dev and YouTube-VOS are scored by their servers,
so for them this writes the submission zip and the table says where it is. Each set goes to
`<output>/<set>/` in eval_davis's layout. Reruns resume.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from common.inference.benchmark_sets import BENCHMARK_SETS, run_sets
from common.inference.reproduce import reproduce_parser
from common.runtime.device import pick_device
from common.runtime.errors import run_cli
from hmmn import TITLE
from hmmn.checkpoints import OFFICIAL_WEIGHTS
from hmmn.eval_davis import OFFICIAL, UNDER_ROOT, hmmn_segment, model_loader

# ICCV 2021 paper, J&F in % (YouTube-VOS: the overall score G).
PUBLISHED: Dict[str, float] = {
    "davis16-val": 90.8,
    "davis17-val": 84.7,
    "davis17-test-dev": 78.6,
    "ytvos18-valid": 82.6,
    "ytvos19-valid": 82.5,
}
LABELS = {  # the table's row names
    "davis16-val": "DAVIS 2016 val",
    "davis17-val": "DAVIS 2017 val",
    "davis17-test-dev": "DAVIS 2017 test-dev",
    "ytvos18-valid": "YouTube-VOS 2018 valid",
    "ytvos19-valid": "YouTube-VOS 2019 valid",
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = reproduce_parser("hmmn", __doc__, ytvos=False)  # two YouTube-VOS years: --ytvos18 / --ytvos19
    parser.add_argument("--weights", default=OFFICIAL_WEIGHTS,
                        help=f"checkpoint file, registry name or 'seeded' (default: {OFFICIAL_WEIGHTS})")
    parser.add_argument("--ytvos18", type=Path, default=None, help="YouTube-VOS 2018 root (valid/, valid_all_frames/)")
    parser.add_argument("--ytvos19", type=Path, default=None, help="YouTube-VOS 2019 root")
    parser.add_argument("--mem-every", type=int, default=5)
    args = parser.parse_args(argv)

    device = pick_device(args.device)
    load = functools.lru_cache(maxsize=None)(model_loader(device, None))  # one network for every set
    jobs: List[Tuple[str, Path]] = [("davis16-val", args.davis), ("davis17-val", args.davis)]
    if args.test_dev:
        jobs.append(("davis17-test-dev", args.davis))
    jobs += [(name, root) for name, root in (("ytvos18-valid", args.ytvos18), ("ytvos19-valid", args.ytvos19))
             if root is not None]

    ours = {}
    for name, root in jobs:  # one set at a time: each YouTube-VOS year has its own root
        roots = {BENCHMARK_SETS[name].family: root}
        summary = run_sets([name], roots, args.output, device, title=TITLE, weights=args.weights,
                           default_weights=OFFICIAL, load_model=load, segment=hmmn_segment(args.mem_every),
                           layout=UNDER_ROOT)[name]
        ours[name] = f"{100 * summary['J&F-Mean']:.1f}" if "J&F-Mean" in summary else f"server: {summary['zip']}"

    print(f"\nHMMN reproduction ({device})")
    print(f"{'benchmark':<26}{'published':>10}  this run")
    for name, published in PUBLISHED.items():
        print(f"{LABELS[name]:<26}{published:>10.1f}  {ours.get(name, 'not run')}")
    return 0


if __name__ == "__main__":
    run_cli(main)

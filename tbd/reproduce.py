"""`make reproduce-tbd`: official weights on DAVIS 2016/2017 val, compared with the published numbers.

    python -m tbd.reproduce --davis data/DAVIS --output outputs/tbd [--device cuda] [--test-dev]
        [--ytvos data/YTVOS18]

Fetches the official checkpoints into the weights cache (gdown), segments the sets with the official
evaluator's settings (480p rule), scores the val sets in-process and prints ours against the paper
(ECCV 2022, Table: COCO-pretrained model, and the model trained without COCO). DAVIS 2017 test-dev and
YouTube-VOS 2018 are scored by their servers: `--test-dev` / `--ytvos` write the submission zips (YouTube-VOS
with the `tbd-ytvos` checkpoint). Reruns resume: finished videos are skipped.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

from common.inference.reproduce import gap, reproduce_parser, text_table
from common.runtime.device import pick_device
from common.runtime.errors import run_cli
from tbd.run import run_test_sets

# J&F-Mean in % from the paper, COCO-pretrained model: the one the released weights are.
PUBLISHED: Dict[str, float] = {
    "davis16-val": 86.8,
    "davis17-val": 80.0,
    "davis17-test-dev": 69.4,
    "ytvos18-valid": 80.5,
}
# J&F-Mean in % from the paper, the model trained without COCO (no released weights; shown for reference).
PUBLISHED_WITHOUT_COCO: Dict[str, float] = {
    "davis16-val": 84.3,
    "davis17-val": 75.2,
    "davis17-test-dev": 66.0,
    "ytvos18-valid": 77.8,
}


def format_table(ours: Dict[str, Optional[float]], server: Dict[str, str]) -> str:
    rows = []
    for name, paper in PUBLISHED.items():
        mine = ours.get(name)
        shown = "server" if mine is None and name in server else mine
        rows.append((name, shown, paper, gap(mine, paper), PUBLISHED_WITHOUT_COCO[name]))
    return text_table(("benchmark", "ours", "paper", "diff", "no-COCO"), rows, name_width=18)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = reproduce_parser("tbd", __doc__).parse_args(argv)

    device = pick_device(args.device)
    sets = ["davis16-val", "davis17-val"] + (["davis17-test-dev"] if args.test_dev else [])
    sets += ["ytvos18-valid"] if args.ytvos is not None else []
    summary = run_test_sets(sets, {"davis": args.davis, "ytvos": args.ytvos}, args.output, device)
    ours = {name: 100 * row["J&F-Mean"] for name, row in summary.items() if "J&F-Mean" in row}
    server = {name: str(row["zip"]) for name, row in summary.items() if "zip" in row}

    print(f"\nTBD reproduction, J&F-Mean in % ({device}; paper = COCO-pretrained model)")
    print(format_table(ours, server))
    for name, zip_path in server.items():
        print(f"{name}: upload {zip_path} to the {'DAVIS test-dev' if 'davis' in name else 'YouTube-VOS 2018'} "
              f"server")
    return 0


if __name__ == "__main__":
    run_cli(main)

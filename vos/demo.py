"""`make demo`: the main job on an embedded default.

Generates the synthetic DAVIS-format sample, runs every paper package end to end on it through its
`demo.run_demo` (the weights `make train-sample` trained here when `<trained>/<paper>/best.pth` exists, else
the official weights when they are already in the weights cache, else a seeded initialisation), writes
palette PNGs and prints one J&F table, each row labelled with the weights it used, below the metric
pipeline's own check (ground truth scored against itself).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from common.data import synthetic
from common.evaluation.evaluate import evaluate
from common.runtime.device import add_device_argument, pick_device
from common.runtime.errors import UserError, run_cli
from vos.papers import PAPER_NAMES
from vos.train_sample import DEFAULT_OUT, trained_checkpoint

COLUMNS = ("J&F-Mean", "J-Mean", "F-Mean")


def _metric_pipeline_only(davis_root: Path, out_dir: Path) -> Dict[str, float]:
    """Score the ground truth against itself: proves data, PNG I/O and metrics work together."""
    results = out_dir / "ground_truth"
    if results.exists():
        shutil.rmtree(results)
    shutil.copytree(davis_root / "Annotations" / "480p", results)
    return evaluate(davis_root, results, split="val", year=2017).global_row


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default: demo_out)")
    parser.add_argument("--papers", default=",".join(PAPER_NAMES),
                        help=f"comma-separated subset of {','.join(PAPER_NAMES)} (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic sample")
    parser.add_argument("--trained", type=Path, default=DEFAULT_OUT,
                        help="where `make train-sample` put its models: <trained>/<paper>/best.pth is used when "
                             "present")
    add_device_argument(parser)
    args = parser.parse_args(argv)

    papers = [p for p in args.papers.split(",") if p]
    unknown = sorted(set(papers) - set(PAPER_NAMES))
    if unknown:
        raise UserError(f"unknown paper(s) {unknown} in --papers; choose from {', '.join(PAPER_NAMES)}")
    device = pick_device(args.device)
    from vos.papers import PAPERS  # the models load after the arguments are parsed

    data = args.out / "data"
    davis_root = synthetic.make_davis_sample(data / "DAVIS", seed=args.seed)
    ytvos_root = synthetic.make_ytvos_sample(data / "YouTubeVOS", seed=args.seed)
    print(f"synthetic sample: {davis_root} and {ytvos_root}")

    rows: List[tuple] = [("ground truth (metric check)", _metric_pipeline_only(davis_root, args.out))]
    for paper in papers:
        print(f"\n== {paper} ==")
        trained = trained_checkpoint(args.trained, paper)
        rows.append((paper, PAPERS[paper].demo.run_demo(davis_root, ytvos_root, args.out / paper, device,
                                                        trained=trained if trained.is_file() else None)))

    print("\nDemo results on the synthetic DAVIS 2017 sample (synthetic data; not benchmark numbers)")
    print(f"{'method':<30}" + "".join(f"{c:>10}" for c in COLUMNS) + "  weights")
    for name, row in rows:
        print(f"{name:<30}" + "".join(f"{row[c]:>10.3f}" if c in row else f"{'-':>10}" for c in COLUMNS)
              + f"  {row.get('weights', '')}")
    print(f"\noutputs: {args.out.resolve()}")
    return 0


if __name__ == "__main__":
    run_cli(main)

"""`make reproduce-gis`: the DAVIS 2017 interactive benchmark with the official weights, ours vs published.

    python -m gis.reproduce --davis data/DAVIS --output outputs/gis [--device cuda]

Runs the davisinteractive session (8 interactions, 3 initial scribbles per val sequence) for the
metrics J and J&F with and without reliability-score guidance (wo_RS, RS4), i.e. 4 sessions, and
prints AUC and metric@60 s next to the paper's numbers. A session whose result folder already holds
a summary is not rerun.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional, Sequence

from common.runtime.device import add_device_argument
from common.runtime.errors import UserError, run_cli
from gis import ivos_main_davis
from gis.ivos_main_davis import result_dir_name

DAVIS_SET = "davis17-val"  # <output>/<set>, the result-folder scheme of all five papers

# {set: {(metric, guide): (AUC, metric@60s)}}, GIS-RAmap paper / official result files
PUBLISHED = {
    DAVIS_SET: {
        ("J_AND_F", "wo_RS"): (0.855, 0.865),
        ("J_AND_F", "RS4"): (0.856, 0.866),
        ("J", "wo_RS"): (0.818, 0.827),
        ("J", "RS4"): (0.820, 0.829),
    },
}


def _summary(folder: Path) -> Optional[dict]:
    found = sorted(folder.glob("summary_2*.json")) if folder.is_dir() else []
    return json.loads(found[-1].read_text()) if found else None


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gis.reproduce", description=__doc__.split("\n\n")[0])
    p.add_argument("--davis", type=Path, default=Path("data/DAVIS"), help="DAVIS 2017 root with Scribbles/")
    p.add_argument("--output", type=Path, default=Path("outputs/gis"),
                   help=f"output root: sessions go to <output>/{DAVIS_SET}/GIS-RAmap[<metric>]_[<guide>]")
    p.add_argument("--weights", default="gis-davis", help="checkpoint path, registry name or 'seeded'")
    p.add_argument("--metrics", nargs="+", default=["J_AND_F", "J"], choices=["J", "J_AND_F"])
    p.add_argument("--guides", nargs="+", default=["wo_RS", "RS4"], choices=["wo_RS", "RS1", "RS4"])
    add_device_argument(p)
    args = p.parse_args(argv)
    if not (args.davis / "Scribbles").is_dir():
        raise UserError(f"{args.davis}/Scribbles not found: the benchmark needs DAVIS 2017 with the interactive "
                        "scribbles (DAVIS-2017-scribbles-trainval.zip) unpacked into --davis")
    rows = []
    for metric in args.metrics:
        for guide in args.guides:
            folder = args.output / DAVIS_SET / result_dir_name(metric, guide)
            summary = _summary(folder)
            if summary is None:
                argv_session = ["--davis", str(args.davis), "--output", str(args.output / DAVIS_SET),
                                "--weights", args.weights, "--metric", metric, "--guide", guide]
                if folder.exists():  # a folder without a summary: start over (a .partial one resumes)
                    argv_session.append("--overwrite")
                if args.device:
                    argv_session += ["--device", args.device]
                ivos_main_davis.main(argv_session)
                summary = _summary(folder)
            auc, at60 = summary["auc"], summary["metric_at_threshold"][metric]
            pub = PUBLISHED[DAVIS_SET].get((metric, guide), (float("nan"), float("nan")))
            rows.append((metric, guide, auc, pub[0], at60, pub[1]))
    name = {"J": "J", "J_AND_F": "J&F"}
    print(f"{'metric':<6} {'guide':<6} {'AUC ours':>9} {'AUC paper':>10} {'@60s ours':>10} {'@60s paper':>11}")
    for metric, guide, auc, pauc, at60, p60 in rows:
        print(f"{name[metric]:<6} {guide:<6} {auc:>9.3f} {pauc:>10.3f} {at60:>10.3f} {p60:>11.3f}")
    return 0


if __name__ == "__main__":
    run_cli(main)

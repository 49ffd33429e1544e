"""Every paper's released results (the authors' pre-computed masks and summaries): list them, or download,
extract and check them (`common.hub.results` says how).

    python -m vos.precomputed list
    python -m vos.precomputed fetch NAME [NAME ...] [--davis ROOT] [--force]
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from common.hub.results import RESULTS_REGISTRY, cache_dir, fetch, results_root, spec_for
from common.runtime.errors import UserError, run_cli
from vos.papers import register_all


def main(argv: Optional[Sequence[str]] = None) -> int:
    register_all()  # the registries, before the parser names their entries
    parser = argparse.ArgumentParser(prog="python -m vos.precomputed", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every registered archive, its source and whether it is cached")
    get = sub.add_parser("fetch", help="download, extract and check archives")
    get.add_argument("names", nargs="+", metavar="NAME", help=f"one of: {', '.join(RESULTS_REGISTRY.names())}")
    get.add_argument("--davis", type=Path, default=None,
                     help="DAVIS root: match DAVIS result folders against its ImageSets lists")
    get.add_argument("--force", action="store_true", help="download again even if cached")
    args = parser.parse_args(argv)

    if args.command == "list":
        print(f"cache: {cache_dir() / 'precomputed'}")
        for spec in RESULTS_REGISTRY:
            here = results_root(spec.name)
            sets = ", ".join(spec.sets) + ("" if spec.sets_confirmed or not spec.sets else " (unconfirmed)")
            print(f"{spec.name:22s} {sets or 'summary files'}")
            print(f"{'':22s} {'cached at ' + str(here) if here.is_dir() else ' or '.join(spec.page_urls)}")
            print(f"{'':22s} source: {spec.source}")
        return 0
    for name in args.names:
        spec_for(name)  # every name checked before any download
    if args.davis is not None and not args.davis.is_dir():
        raise UserError(f"DAVIS root not found: {args.davis}")
    for name in args.names:
        print(fetch(name, davis_root=args.davis, force=args.force).report())
    return 0


if __name__ == "__main__":
    run_cli(main)

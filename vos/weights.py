"""Every paper's official checkpoints: list them, or download them into the cache and check them.

    python -m vos.weights list
    python -m vos.weights fetch NAME [NAME ...] [--force]
"""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

from common.hub.checkpoints import CHECKPOINT_REGISTRY, cache_dir, cached_path, cached_problem, fetch
from common.runtime.errors import run_cli
from vos.papers import register_all


def main(argv: Optional[Sequence[str]] = None) -> int:
    register_all()  # the registries, before the parser names their entries
    parser = argparse.ArgumentParser(prog="python -m vos.weights", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="show every registered checkpoint and whether it is cached")
    get = sub.add_parser("fetch", help="download checkpoints into the cache and check them")
    get.add_argument("names", nargs="+", metavar="NAME", help=f"one of: {', '.join(CHECKPOINT_REGISTRY.names())}")
    get.add_argument("--force", action="store_true", help="download again even if cached")
    args = parser.parse_args(argv)

    if args.command == "list":
        print(f"weights cache: {cache_dir()}")
        for spec in CHECKPOINT_REGISTRY:
            here, problem = cached_path(spec.name), cached_problem(spec.name)
            if problem:
                state = f"not usable: {problem}; run fetch --force {spec.name}"
            else:
                state = f"cached at {here}" if here else (spec.page_url or "no link: download by hand")
            print(f"{spec.name:18s} {spec.paper + '/' + spec.filename:38s} {state}")
        return 0
    for name in args.names:
        CHECKPOINT_REGISTRY[name]  # every name checked before any download
    for name in args.names:
        print(f"{name}: {fetch(name, force=args.force)}")
    return 0


if __name__ == "__main__":
    run_cli(main)

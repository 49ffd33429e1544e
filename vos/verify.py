"""`make verify-<paper>`: score the authors' released results, then measure how close ours are to them.

    python -m vos.verify PAPER --davis ROOT [--output DIR] [--sets SET ...] [--device D] [--no-run]
        [-- ARGS FOR <paper>.reproduce]

1. Fetch the paper's archives of pre-computed results (`common.hub.results`, checked layout).
2. Score their DAVIS val results with `common.evaluation.evaluate` and print them beside the published J&F (from
   `<paper>.reproduce.PUBLISHED`): both come from the same masks, so they must agree to the printed
   precision. This checks our evaluator on real data. A mismatch makes the exit status 1.
3. Our results are `<output>/<set>` (default output `outputs/<paper>`). A set whose folder is missing or
   lacks sequences is produced by running `python -m <paper>.reproduce --davis ROOT --output DIR` (with
   the arguments after `--`), which resumes a partial run; `--no-run` only uses what is there.
4. Print the agreement of ours with theirs per set (`common.evaluation.agree`: mean IoU, bit-identical frames,
   identical pixels, worst sequences); `agreement.csv` goes into `<output>/<set>`.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from common.evaluation.agree import compare
from common.hub import results as released
from common.hub.results import SETS
from common.inference.reproduce import text_table
from common.runtime.device import add_device_argument
from common.runtime.errors import UserError, run_cli
from vos.papers import SEMI_SUPERVISED

DEFAULT_SETS = ("davis16-val", "davis17-val")


def published_jf(paper: str) -> Dict[str, float]:
    """{set: J&F in %} as the paper publishes it (`<paper>.reproduce.PUBLISHED`)."""
    from vos.papers import PAPERS  # the models load only when a command runs

    return dict(PAPERS[paper].reproduce.PUBLISHED)


def archives_for(paper: str, sets: Sequence[str]) -> List[str]:
    """The registry names of the paper's archives that (are expected to) hold any of `sets`."""
    from vos.papers import PAPERS

    return [spec.name for spec in PAPERS[paper].checkpoints.RELEASED_RESULTS if set(spec.sets) & set(sets)]


def _complete(folder: Path, benchmark: str, davis_root: Path) -> bool:
    """Whether `folder` holds masks for every sequence of `benchmark` (YouTube-VOS: for any sequence)."""
    names = released.expected_sequences(benchmark, davis_root)
    if not folder.is_dir():
        return False
    present = {p.name for p in folder.iterdir() if p.is_dir() and any(p.glob("*.png"))}
    return set(names) <= present if names is not None else bool(present)


def run_reproduction(paper: str, davis_root: Path, output: Path, device: Optional[str], extra: Sequence[str]) -> None:
    command = [sys.executable, "-m", f"{paper}.reproduce", "--davis", str(davis_root), "--output", str(output)]
    command += (["--device", device] if device else []) + list(extra)
    print(f"running our reproduction: {' '.join(command[1:])}", flush=True)
    if subprocess.run(command).returncode != 0:
        raise UserError(f"our reproduction failed (`python {' '.join(command[1:])}`, see its message above); "
                        f"fix it, or compare what exists with --no-run")


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: List[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    parser = argparse.ArgumentParser(prog="python -m vos.verify", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("paper", choices=SEMI_SUPERVISED)
    parser.add_argument("--davis", type=Path, required=True, help="DAVIS 2017 root (ImageSets/, Annotations/)")
    parser.add_argument("--output", type=Path, default=None, help="our results root (default: outputs/<paper>)")
    parser.add_argument("--sets", nargs="+", default=list(DEFAULT_SETS), choices=list(SETS),
                        help="sets to compare (default: the DAVIS val sets, which can be scored here)")
    parser.add_argument("--no-run", action="store_true", help="do not run our reproduction; compare what exists")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    output = args.output or Path("outputs") / args.paper
    if not args.davis.is_dir():
        raise UserError(f"DAVIS root not found: {args.davis}; pass --davis (make: DATA=...)")
    for s in args.sets:
        released.expected_sequences(s, args.davis)  # a DAVIS root without its ImageSets fails here, first
    names = archives_for(args.paper, args.sets)
    if not names:
        raise UserError(f"no released results of {args.paper} are registered for {', '.join(args.sets)}")

    theirs: Dict[str, Path] = {}
    for name in names:
        layout = released.fetch(name, davis_root=args.davis)
        print(layout.report())
        theirs.update({s: p for s, p in layout.sets.items() if s in args.sets})

    # 2. Their masks, scored by our evaluator, beside the published numbers.
    from common.evaluation.evaluate import evaluate

    published = published_jf(args.paper)
    rows, mismatches = [], []
    for s in args.sets:
        info = SETS[s]
        score = None
        if s in theirs and info.davis is not None and info.davis[1] == "val":
            year, split = info.davis
            score = 100 * evaluate(args.davis, theirs[s], split, year).global_row["J&F-Mean"]
        paper_value = published.get(s)
        if score is None or paper_value is None:
            verdict = "not in archive" if s not in theirs else ("server only" if score is None else "no number")
        else:
            verdict = "match" if f"{score:.1f}" == f"{paper_value:.1f}" else "MISMATCH"
            if verdict == "MISMATCH":
                mismatches.append(s)
        rows.append((s, score, paper_value, verdict))
    print(f"\n{args.paper}: the authors' results scored by common.evaluation.evaluate (J&F-Mean, %)")
    table = text_table(("set", "theirs", "published"), [row[:3] for row in rows], name_width=18).split("\n")
    print("\n".join(f"{line}  {verdict}" for line, verdict in zip(table, ["check"] + [r[3] for r in rows])))

    # 3.-4. Ours, then how close they are.
    missing = [s for s in args.sets if s in theirs and not _complete(output / s, s, args.davis)]
    if missing and not args.no_run:
        run_reproduction(args.paper, args.davis, output, args.device, extra)
    for s in args.sets:
        print(f"\n{args.paper} {s}: ours {output / s} vs theirs {theirs.get(s, '-')}")
        if s not in theirs:
            print("  not in the authors' archive")
            continue
        if not _complete(output / s, s, args.davis):
            print(f"  no complete results of ours at {output / s}; run `make reproduce-{args.paper}`")
            continue
        davis_set = SETS[s].davis
        agreement = compare(output / s, theirs[s], binary=davis_set is not None and davis_set[0] == 2016,
                            only=released.expected_sequences(s, args.davis), progress=True)
        csv_path = agreement.write_csv(output / s)
        summary = agreement.format_table().split("\n\n", 1)[1]  # the summary, without the per-sequence rows
        print("  " + summary.replace("\n", "\n  ") + f"\n  per sequence and object: {csv_path}")
    if mismatches:
        print(f"\nMISMATCH: the authors' results score differently from the published numbers on "
              f"{', '.join(mismatches)}; check the evaluator (common.evaluation.evaluate) and the archive", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_cli(main)

"""`make reproduce-emvos`: the official EMVOS weights on DAVIS 2016/2017 val, J&F table and fps.

    python -m emvos.reproduce --davis data/DAVIS --output outputs/emvos [--device cuda] [--test-dev]
        [--ytvos data/YTVOS18] [--weights PATH] [--native-size] [--fast [--precision P] [--compile]]
    torchrun --nproc_per_node=N -m emvos.reproduce ...   (videos sharded over N processes; rank 0 prints)

Fetches `emvos-coco_davis` (committed in the official repository) into the weights cache, segments both
val sets with the official evaluator's settings, scores them in-process and prints one row per set.
`--test-dev` / `--ytvos` also write the server submissions (YouTube-VOS with `emvos-coco_ytvos`).
Reruns resume: finished videos are skipped. The official repository publishes no score table of its own and
none is transcribed here yet (`PUBLISHED` is empty); compare with the EMVOS paper (arXiv 2209.03139).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

from common.inference.fast import add_fast_arguments
from common.inference.reproduce import reproduce_parser
from common.runtime.device import pick_device
from common.runtime.errors import run_cli
from emvos import run

# {result-folder set name: {column: J&F etc. in %}}: the paper's own table, not transcribed yet
PUBLISHED: Dict[str, float] = {}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = reproduce_parser("emvos", __doc__)
    parser.add_argument("--weights", default=None, help="checkpoint instead of the official ones, or 'seeded'")
    parser.add_argument("--native-size", action="store_true", help="skip the 480p rule (small test data only)")
    add_fast_arguments(parser, fast_help="batched fast mode (see emvos.fast)")
    args = parser.parse_args(argv)

    sets = ["davis16-val", "davis17-val"] + (["davis17-test-dev"] if args.test_dev else [])
    sets += ["ytvos18-valid"] if args.ytvos is not None else []
    test_argv = ["--test", "--davis", str(args.davis), "--output", str(args.output), "--sets", *sets]
    if args.ytvos is not None:
        test_argv += ["--ytvos", str(args.ytvos)]
    if args.weights:
        test_argv += ["--weights", args.weights]
    if args.native_size:
        test_argv.append("--no-resize")
    if args.device:
        test_argv += ["--device", args.device]
    if args.fast:
        test_argv.append("--fast")
    if args.precision:
        test_argv += ["--precision", args.precision]
    if args.compile:
        test_argv.append("--compile")
    test_args = run.build_parser().parse_args(test_argv)
    from common.runtime.distributed import init_distributed  # here: torch loads after the arguments are parsed

    ctx = init_distributed(pick_device(args.device))
    device = ctx.device
    summary = run.run_test(test_args, device, dist=ctx)
    if not ctx.is_main:
        return 0

    print(f"\nEMVOS reproduction ({device}); J&F-Mean / J-Mean / F-Mean in %")
    print(f"{'benchmark':<18}{'J&F':>8}{'J':>8}{'F':>8}{'fps':>8}")
    for name, row in summary.items():
        if "J&F-Mean" in row:
            print(f"{name:<18}{100 * row['J&F-Mean']:>8.1f}{100 * row['J-Mean']:>8.1f}{100 * row['F-Mean']:>8.1f}"
                  f"{row['fps']:>8.1f}")
        else:
            print(f"{name:<18}{'server':>8}{'':>8}{'':>8}{row['fps']:>8.1f}  (submission zip in {args.output})")
    return 0


if __name__ == "__main__":
    run_cli(main)

"""GIS-RAmap in the browser (the reference's real-world evaluation GUI and custom-video demo).

    python -m gis.app --davis data/DAVIS [--guide RS1|RS4|wo_RS] [--user NAME]
    python -m gis.app --video clip.mp4 [--objects N]
    python -m gis.app ... --size 240 --fast      # a CPU: propagate at a shorter side of 240 px

Open the printed URL. Through SSH, forward the port first: `ssh -L 7860:127.0.0.1:7860 server`.
"""
from __future__ import annotations

import argparse
import getpass
import logging
import re
import socket
import sys
from pathlib import Path
from typing import Optional, Sequence

from common.inference.fast import add_fast_arguments, fast_options_from_args
from common.runtime.device import add_device_argument, pick_device, sleeping_cpu_threads
from common.runtime.errors import UserError, run_cli
from gis.options import FAST_HELP, GUIDE_METHODS, MAX_OBJECTS, TAB_TIMEOUT_S


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gis.app", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--davis", type=Path, help="DAVIS 2017 root: the real-world evaluation on its val sequences")
    source.add_argument("--video", type=Path, help="custom video (a file OpenCV reads, or a folder of frames)")
    p.add_argument("--objects", type=int, default=1, help="objects to segment in --video")
    p.add_argument("--guide", default="RS1", choices=GUIDE_METHODS, help="frame recommendation after each round")
    p.add_argument("--user", default=None, help="user name in the CSV file name (default: the login name)")
    p.add_argument("--output", type=Path, default=Path("outputs/gis/app"),
                   help="results: <output>/GIS-RAmap_<guide>_<time>/result_<user>.csv, or <output>/<video name>/")
    p.add_argument("--new", action="store_true", help="start a new results folder instead of resuming the last one")
    p.add_argument("--save-masks", action="store_true", help="also save each sequence's final masks as palette PNGs")
    p.add_argument("--weights", default="gis-davis",
                   help="checkpoint path or registry name; 'seeded' (or 'none') = seeded random weights")
    p.add_argument("--size", type=int, default=None,
                   help="working size: the shorter side (px) the model propagates at, masks upsampled to the frame "
                        "(e.g. 240 on a CPU); default: the frames' own size, as the paper")
    p.add_argument("--tab-timeout", type=float, default=TAB_TIMEOUT_S,
                   help="seconds after which a tab that is no longer heard of (its browser died) frees its sequence; "
                        "its work goes to the next tab")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 exposes the app to the network)")
    p.add_argument("--port", type=int, default=7860)
    add_fast_arguments(p, fast_help=FAST_HELP)
    add_device_argument(p)
    return p


def _user_name(given: Optional[str]) -> str:
    name = given
    if name is None:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):
            name = "user"
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise UserError(f"--user {name!r} must be 1-64 letters, digits, '_', '.' or '-' (it names the CSV file)")
    return name


def _davis_loader(dataset):
    from gis.app.session import Video
    from gis.davis_frames import load_all_frames

    def load(name: str) -> Video:
        video = dataset.video(name)
        gt = video.load_gt()
        n_objects = int(gt[gt != 255].max(initial=0))
        if n_objects == 0:
            raise UserError(f"sequence {name} has no object in its annotations")
        return Video(name, load_all_frames(dataset.root, name, video.num_frames), n_objects, gt)

    return load


def _check_port(host: str, port: int) -> None:
    """Fail now, not after loading the model, when the address is taken or not this machine's."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as err:
        raise UserError(f"cannot listen on {host}:{port}: {err.strerror or err}; choose another --port or --host") from None


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    sleeping_cpu_threads()  # before torch: a CPU round shares the cores with the browser at least
    fast_options = fast_options_from_args(args)
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be 1..65535, got {args.port}")
    if not 1 <= args.objects <= MAX_OBJECTS:
        raise UserError(f"--objects must be 1..{MAX_OBJECTS} (the DAVIS palette's object colours), got {args.objects}")
    if args.size is not None and not 16 <= args.size <= 4096:
        raise UserError(f"--size must be a shorter side of 16..4096 px, got {args.size}")
    if not 0 < args.tab_timeout <= 86400:
        raise UserError(f"--tab-timeout must be seconds in (0, 86400], got {args.tab_timeout:g}")
    _check_port(args.host, args.port)
    try:
        import uvicorn

        from gis.app.server import DavisSource, VideoSource, create_app
    except ImportError as err:
        raise UserError(f"the web app needs {err.name}; run `make setup` (or pip install starlette uvicorn)") from None

    # torch and the model load only now: --help and argument errors answer at once.
    from common.data.datasets import DAVIS
    from gis.app.evaluation import ResultsFolder, remaining
    from gis.app.session import Model, Video
    from gis.fast import FastGIS
    from gis.model import load_model

    # Check and load the input before the model, so mistakes are reported at once.
    if args.davis is not None:
        user = _user_name(args.user)
        dataset = DAVIS(args.davis, 2017, "val")
        results = ResultsFolder(args.output, f"GIS-RAmap_{args.guide}", user, fresh=args.new)
        source = DavisSource(dataset.names, _davis_loader(dataset), results, save_masks=args.save_masks)
        left = remaining(dataset.names, results.done_sequences())
        print(f"{len(dataset.names)} DAVIS 2017 val sequences, {len(left)} to do; results: {results.csv_path}"
              + (" (resumed)" if results.resumed else ""))
    else:
        from gis.app.media import load_video

        name, frames, fps = load_video(args.video)
        source = VideoSource(Video(name, frames, args.objects, fps=fps), args.output)
        print(f"{args.video}: {len(frames)} frames of {frames.shape[2]}x{frames.shape[1]} at {fps:g} fps, "
              f"{args.objects} object(s); exports go to {args.output / name}")

    device = pick_device(args.device)
    net = load_model(args.weights, device)
    model = Model(net, FastGIS(net, fast_options) if fast_options is not None else None)
    size = f"working size {args.size} px (shorter side)" if args.size else "full size"
    print(f"GIS-RAmap on {device}{' (fast mode)' if model.fast is not None else ''}, {size}")

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: --host {args.host} makes the app reachable from other machines, without any login; "
              f"prefer the default 127.0.0.1 and an SSH tunnel", file=sys.stderr)
    app = create_app(model, source, args.guide, size=args.size, tab_timeout=args.tab_timeout)
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"open http://{shown}:{args.port}/  (Ctrl+C stops the server)", flush=True)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    run_cli(main)

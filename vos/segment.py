"""Segment your own clip with BMVOS, EMVOS, TBD or HMMN, from one first-frame mask.

    python -m vos.segment --method tbd --video clip.mp4 --mask first.png [--mask-frame N]
        [--weights NAME|FILE|seeded] [--out DIR] [--fast [--precision P] [--compile]] [--native-size] [--device cuda]

Writes into --out a palette PNG per frame (`00000.png`, ... holding the mask's object ids), `overlay.mp4`
(the frames with the objects tinted, OpenCV's mp4v writer) and `stats.json` (frames/s, ms/frame, peak
memory, the settings). The paper's own evaluator settings apply: the 480p rule of BMVOS, EMVOS and TBD
(`--native-size` turns it off) and HMMN's memory schedule at the stored size. Frames before --mask-frame are
written as background. Default weights are the paper's official DAVIS checkpoint; `--weights seeded`
runs a seeded initialisation (pipeline checks only: the masks are not the paper's).

The folder is written under a temporary name and renamed when complete, so it is never half-written; a
rerun on a finished folder reports it and does nothing (`--overwrite` redoes it). One clip is one
recurrent propagation, so an interrupted run starts that clip again.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Tuple, Type

import numpy as np
from tqdm import tqdm

from common.data.clip import Clip, load_clip
from common.data.output_folder import check_output_folder
from common.data.overlay import overlay, write_mp4
from common.data.palette import read_label_png, write_label_png
from common.hub.checkpoints import SEEDED, file_sha256
from common.inference.fast import FastOptions, add_fast_arguments, fast_options_from_args
from common.runtime.device import Stopwatch, add_device_argument, peak_memory_mib, pick_device, reset_peak_memory
from common.runtime.errors import UserError, on_interrupt, run_cli
from vos.papers import SEMI_SUPERVISED

if TYPE_CHECKING:  # torch, the papers' models and the runner load where a clip is segmented, not for `--help`
    import torch

STATS = "stats.json"
OVERLAY = "overlay.mp4"


def add_input_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """The clip arguments `vos.segment` and `vos.compare` share."""
    source = parser.add_mutually_exclusive_group(required=required)
    source.add_argument("--video", type=Path, help="a video file (mp4 or anything OpenCV decodes)")
    source.add_argument("--frames", type=Path, help="a folder of frames (jpg/png, sorted by name)")
    parser.add_argument("--mask", type=Path, required=required,
                        help="first mask: DAVIS palette PNG (ids 1..N) or 0/255 binary PNG, at the frames' size")
    parser.add_argument("--mask-frame", type=int, default=0,
                        help="frame the mask belongs to (default 0); earlier frames are written as background")
    add_fast_arguments(parser, fast_help="the paper package's fast mode (see README)")
    parser.add_argument("--native-size", action="store_true",
                        help="skip the 480p rule of BMVOS/EMVOS/TBD (HMMN always runs at the stored size)")
    parser.add_argument("--overwrite", action="store_true", help="redo finished result folders")
    add_device_argument(parser)


def frame_file(index: int) -> str:
    return f"{index:05d}.png"


def is_finished(out: Path, frames: Optional[int] = None) -> bool:
    """A complete result folder: stats, overlay and one PNG per frame (`frames` of them when given)."""
    stats = out / STATS
    if not (stats.is_file() and (out / OVERLAY).is_file()):
        return False
    count = json.loads(stats.read_text())["frames_total"]
    return (frames is None or count == frames) and all((out / frame_file(i)).is_file() for i in range(count))


def read_stats(out: Path) -> Dict[str, Any]:
    return json.loads((out / STATS).read_text())


def read_result(out: Path, frames: int) -> Iterator[np.ndarray]:
    """The label maps of a finished folder, frame by frame."""
    for index in range(frames):
        yield read_label_png(out / frame_file(index))


def official_weights(method: str) -> str:
    from vos.papers import PAPERS

    return PAPERS[method].checkpoints.OFFICIAL_WEIGHTS


@contextlib.contextmanager
def frame_progress(encoder: Type[torch.nn.Module], total: int, desc: str) -> Iterator[tqdm]:
    """A frames progress bar that advances whenever a module of class `encoder` (the paper's per-frame image
    encoder, `<paper>.inference.FRAME_ENCODER`) encodes frames; the models run whole videos in one call."""
    import torch

    bar = tqdm(total=total, desc=desc, unit="frame", dynamic_ncols=True)

    def count(module: torch.nn.Module, inputs: Tuple[Any, ...], _output: Any) -> None:
        if isinstance(module, encoder) and inputs and isinstance(inputs[0], torch.Tensor):
            bar.update(min(int(inputs[0].shape[0]), total - bar.n))

    hook = torch.nn.modules.module.register_module_forward_hook(count)
    try:
        yield bar
        bar.update(total - bar.n)  # a first frame some encoders never see (HMMN memorises it)
    finally:
        hook.remove()
        bar.close()


def segment_clip(clip: Clip, method: str, device: torch.device, weights: Optional[str] = None,
                 fast: Optional[FastOptions] = None, resize: bool = True) -> Dict[str, Any]:
    """Run `method` on the clip: `{"labels": {frame: uint8 [H, W] original ids}, "seconds": model time,
    "peak_memory_mib": ...}` (frames before the mask frame have no entry). `fast`: the paper's fast mode."""
    import torch

    from vos.papers import PAPERS

    inference = PAPERS[method].inference
    segment = inference.make_segmenter(weights or official_weights(method), device, fast=fast, resize=resize)
    video = clip.video()
    reset_peak_memory(device)
    print(f"{method}: segmenting {len(video)} frames of {clip.size[1]}x{clip.size[0]} "
          f"({len(clip.object_ids)} object(s)) on {device}", flush=True)
    with frame_progress(inference.FRAME_ENCODER, len(video), method), torch.no_grad(), \
            Stopwatch(device) as watch:
        out = segment(video)
    missing = [t for t in range(len(video)) if t not in out]
    assert not missing, f"{method} returned no label map for frames {missing[:5]}"
    labels = {clip.mask_frame + t: clip.to_original_ids(np.asarray(out[t])) for t in range(len(video))}
    return {"labels": labels, "seconds": watch.elapsed, "peak_memory_mib": peak_memory_mib(device)}


def write_result(clip: Clip, labels: Dict[int, np.ndarray], out: Path, stats: Dict[str, Any]) -> None:
    """PNGs, overlay and stats into a temporary sibling of `out`, renamed into place when complete."""
    from common.inference.runner import TMP_PREFIX

    tmp = out.with_name(f"{TMP_PREFIX}{out.name}")
    if tmp.exists():
        shutil.rmtree(tmp)  # left by an interrupted run
    tmp.mkdir(parents=True)
    background = np.zeros(clip.size, dtype=np.uint8)

    def overlays() -> Iterator[np.ndarray]:
        for index in tqdm(range(len(clip)), desc="writing", unit="frame", dynamic_ncols=True):
            frame_labels = labels.get(index, background)
            write_label_png(tmp / frame_file(index), frame_labels)
            yield overlay(clip.frame(index), frame_labels)

    write_mp4(overlays(), tmp / OVERLAY, fps=clip.fps, prefer_ffmpeg=False)
    (tmp / STATS).write_text(json.dumps(stats, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def weights_sha256(weights: Optional[str]) -> Optional[str]:
    """The content hash of a checkpoint file given as `--weights` (None for a registry name or `seeded`): a model
    retrained into the same path must not pass for the one a finished result was made with."""
    return file_sha256(Path(weights)) if weights is not None and Path(weights).is_file() else None


def result_settings(method: str, weights: Optional[str], fast: Optional[FastOptions], native_size: bool,
                    clip: Clip) -> Dict[str, Any]:
    """What a finished folder must have been made with to be reused (`fast`: False, or the fast options)."""
    return {"method": method, "weights": weights or official_weights(method),
            "weights_sha256": weights_sha256(weights),
            "fast": dataclasses.asdict(fast) if fast is not None else False,
            "native_size": native_size, "frames_total": len(clip), "mask_frame": clip.mask_frame,
            "object_ids": clip.object_ids}


def settings_differ(out: Path, settings: Dict[str, Any]) -> List[str]:
    made = read_stats(out)
    return [k for k, v in settings.items() if made.get(k) != v]


def check_out(out: Path, settings: Dict[str, Any], overwrite: bool) -> bool:
    """True when `out` is a finished result of the same `settings` to keep; anything else there is refused."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; choose a folder")
    if is_finished(out) and not overwrite:
        differ = settings_differ(out, settings)
        if differ:
            raise UserError(f"--out {out} holds a finished result made with other settings ({', '.join(differ)}); "
                            f"choose another folder or pass --overwrite to redo it")
        return True
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"--out {out} exists and is not a finished result folder; choose another folder or pass "
                        f"--overwrite to replace it")
    return False


def summary(stats: Dict[str, Any]) -> str:
    return (f"{stats['method']}: {stats['frames']} frames, {stats['fps']:.2f} frames/s, {stats['ms_per_frame']:.1f} "
            f"ms/frame, peak memory {stats['peak_memory_mib']:.0f} MiB ({stats['memory_kind']})")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vos.segment", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", required=True, choices=SEMI_SUPERVISED)
    add_input_arguments(parser)
    parser.add_argument("--weights", default=None,
                        help="registry name or checkpoint file (default: the paper's official DAVIS weights); "
                             f"'{SEEDED}': seeded initialisation")
    parser.add_argument("--out", type=Path, default=None,
                        help="result folder (default: outputs/segment/<clip name>/<method>)")
    args = parser.parse_args(argv)

    fast = fast_options_from_args(args)
    clip = load_clip(args.video, args.frames, args.mask, args.mask_frame)
    out = args.out or Path("outputs") / "segment" / clip.name / args.method
    settings = result_settings(args.method, args.weights, fast, args.native_size, clip)
    check_output_folder(out, "--out")
    if check_out(out, settings, args.overwrite):
        print(f"{out} is finished (--overwrite redoes it)\n{summary(read_stats(out))}")
        return 0
    device = pick_device(args.device)
    on_interrupt(f"nothing was written to {out}: one clip is one propagation, so a rerun segments it again from "
                 f"the start")
    result = segment_clip(clip, args.method, device, args.weights, fast, not args.native_size)
    frames = len(clip) - clip.mask_frame
    stats = {**settings, "device": str(device), "frames": frames, "seconds": result["seconds"], "fps": frames / result["seconds"],
             "ms_per_frame": 1000 * result["seconds"] / frames, "peak_memory_mib": result["peak_memory_mib"],
             "memory_kind": "CUDA max allocated" if device.type == "cuda" else "process peak RSS"}
    write_result(clip, result["labels"], out, stats)
    print(f"{summary(stats)}\nwritten: {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)

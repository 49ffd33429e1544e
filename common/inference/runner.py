"""Run a segmenter over videos and write palette PNGs: timed, resumable, never half-written.

    stats = run_videos(dataset.videos(), segment, Path("results/davis17"), device=device, desc="BMVOS")
    print(stats.summary())

`segment(video)` returns ``{frame index: uint8 [H, W] label map}``; the runner writes the frames the
benchmark scores (`video.scored_frames`) as ``output_dir/<video>/<frame name>.png``. Each video is written
into a hidden temporary folder and renamed into place when complete, so an interrupted run leaves only
finished videos, and a rerun skips them. Only `segment` is timed (CUDA-synchronised), as the official
testers time only the model call.

Under torchrun pass `dist=init_distributed(device)`: each rank segments its shard of the videos
(`common.runtime.distributed.shard`: sorted by name, round robin) and all ranks meet at a barrier before
`run_videos` returns, so rank 0 can then score or zip the complete folder.
"""
from __future__ import annotations

import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, List, Mapping, Optional, Union

import numpy as np
import torch
from tqdm import tqdm

from common.data.datasets import Video
from common.data.palette import write_label_png
from common.data.paths import PathLike
from common.runtime.device import Stopwatch
from common.runtime.distributed import DistContext, shard
from common.runtime.errors import UserError

Segmenter = Callable[[Video], Mapping[int, np.ndarray]]

TMP_PREFIX = ".tmp-"


@dataclass
class VideoStats:
    name: str
    frames: int      # frames the model processed (all frames of the video, as the official fps counts)
    seconds: float   # time inside `segment`

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class RunStats:
    videos: List[VideoStats] = field(default_factory=list)  # videos segmented in this run
    skipped: List[str] = field(default_factory=list)        # videos already complete (resume)

    @property
    def total_frames(self) -> int:
        return sum(v.frames for v in self.videos)

    @property
    def total_seconds(self) -> float:
        return sum(v.seconds for v in self.videos)

    @property
    def fps(self) -> float:
        """Total frames / total model seconds, as the official testers report it."""
        return self.total_frames / self.total_seconds if self.total_seconds > 0 else float("nan")

    def summary(self) -> str:
        text = (f"{len(self.videos)} videos, {self.total_frames} frames in {self.total_seconds:.2f} s: "
                f"{self.fps:.1f} fps")
        if self.skipped:
            text += f" ({len(self.skipped)} finished videos skipped)"
        return text


def expected_files(video: Video) -> List[str]:
    """PNG names a finished result folder of `video` holds."""
    return [f"{video.frame_names[i]}.png" for i in video.scored_frames]


def is_complete(folder: Path, video: Video) -> bool:
    return folder.is_dir() and all((folder / name).is_file() for name in expected_files(video))


def _as_label_map(labels: object, video: Video, index: int, size: tuple) -> np.ndarray:
    """Check one returned label map: uint8 [H, W] of the video's size (tensors are moved to numpy)."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    where = f"segmenter output for {video.name} frame {index}"
    if not isinstance(labels, np.ndarray):
        raise TypeError(f"{where} is a {type(labels).__name__}, expected a numpy uint8 [H, W] array")
    if labels.dtype != np.uint8:
        raise TypeError(f"{where} has dtype {labels.dtype}, expected uint8 object ids")
    if labels.shape != tuple(size):
        raise ValueError(f"{where} has shape {labels.shape}, expected {tuple(size)} (the frame size)")
    return labels


def _write_video(folder: Path, video: Video, labels: Mapping[int, np.ndarray]) -> None:
    """Write the scored frames into a temporary sibling, then rename it into place."""
    size = video.size
    frames = video.scored_frames
    missing = [i for i in frames if i not in labels]
    if missing:
        raise ValueError(f"segmenter returned no label map for {video.name} frames {missing[:5]} "
                         f"(it must return every scored frame: {len(frames)} of them)")
    checked = {i: _as_label_map(labels[i], video, i, size) for i in frames}
    tmp = folder.with_name(f"{TMP_PREFIX}{folder.name}")
    if tmp.exists():
        shutil.rmtree(tmp)  # left by an interrupted run
    tmp.mkdir(parents=True)
    for i in frames:
        write_label_png(tmp / f"{video.frame_names[i]}.png", checked[i])
    if folder.exists():  # an incomplete folder not written by this runner
        shutil.rmtree(folder)
    os.replace(tmp, folder)


def run_videos(videos: Iterable[Video], segment: Segmenter, output_dir: PathLike, *,
               device: Union[torch.device, str], desc: str = "segmenting",
               overwrite: bool = False, dist: Optional[DistContext] = None) -> RunStats:
    """Segment every video not already finished under `output_dir`; return per-video and total timing.

    Frames written are `video.scored_frames` (extra label maps returned by `segment` are ignored, e.g. the
    unscored YouTube-VOS frames). `overwrite=True` redoes finished videos too. With an enabled `dist`
    context only this rank's shard is segmented, every rank waits for the others before returning, and
    the returned stats are this rank's.
    """
    device = torch.device(device)
    output_dir = Path(output_dir)
    created = [p for p in [output_dir, *output_dir.parents] if not p.exists()]  # innermost first
    output_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _run_videos(videos, segment, output_dir, device, desc, overwrite, dist)
    except BaseException:
        for folder in created:  # failed before its first video was written: leave no empty folders behind
            try:
                folder.rmdir()  # only if still empty
            except OSError:
                break
        raise


def _run_videos(videos: Iterable[Video], segment: Segmenter, output_dir: Path, device: torch.device, desc: str,
                overwrite: bool, dist: Optional[DistContext]) -> RunStats:
    distributed = dist is not None and dist.enabled
    videos = shard(videos, dist)
    if distributed:
        assert dist is not None
        desc = f"{desc} [rank {dist.rank}/{dist.world_size}]"
    stats = RunStats()
    # closed on the way out, so that an interruption's last line is not followed by the bar drawn again
    with tqdm(videos, desc=desc, unit="video", dynamic_ncols=True) as bar:
        for video in bar:
            folder = output_dir / video.name
            if not overwrite and is_complete(folder, video):
                stats.skipped.append(video.name)
                continue
            bar.set_postfix_str(video.name)
            watch = Stopwatch(device)
            with torch.no_grad(), watch:
                labels = segment(video)
            _write_video(folder, video, labels)
            done = VideoStats(video.name, len(video), watch.elapsed)
            stats.videos.append(done)
            tqdm.write(f"{video.name}: {done.frames} frames, {done.fps:.1f} fps")
    if stats.skipped:
        tqdm.write(f"skipped {len(stats.skipped)} finished videos in {output_dir} (resume)")
    if stats.videos:
        tqdm.write(f"total: {stats.summary()}")
    if distributed:
        assert dist is not None
        dist.barrier()  # every rank's videos are on disk before anyone scores or zips the folder
    return stats


def zip_submission(output_dir: PathLike, zip_path: PathLike, layout: str = "davis") -> Path:
    """Pack result PNGs for an evaluation server.

    ``layout='davis'`` (DAVIS test-dev, CodaLab): ``<video>/<frame>.png`` at the zip root.
    ``layout='youtube'`` (YouTube-VOS): ``Annotations/<video>/<frame>.png``.
    The zip is written to a temporary name first, so a failed run leaves no truncated archive.
    """
    if layout not in ("davis", "youtube"):
        raise UserError(f"submission layout must be 'davis' or 'youtube', got {layout!r}")
    output_dir, zip_path = Path(output_dir), Path(zip_path)
    if not output_dir.is_dir():
        raise UserError(f"results folder not found: {output_dir}; run the model first")
    videos = sorted(p for p in output_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not videos:
        raise UserError(f"no video folders in {output_dir}; run the model first")
    members = []
    for video in videos:
        pngs = sorted(video.glob("*.png"))
        if not pngs:
            raise UserError(f"result folder {video} holds no PNGs; delete it and rerun the model")
        members += [(png, f"{video.name}/{png.name}") for png in pngs]
    prefix = "Annotations/" if layout == "youtube" else ""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = zip_path.with_name(f".{zip_path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for png, name in members:
            archive.write(png, prefix + name)
    os.replace(tmp, zip_path)
    return zip_path

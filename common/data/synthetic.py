"""A small synthetic sample in the DAVIS 2017, YouTube-VOS and COCO layouts, for tests and `make demo`.

Each video is a panning textured background with textured blobs moving smoothly across it, passing in
front of each other (occlusion; fixed depth order per video). Textures are attached to the objects, so
matching-based models have something to match from frame to frame. Everything is deterministic from the
seed: rerunning with the same arguments writes byte-identical files.

    python -m common.data.synthetic OUT [--seed 0] [--videos 3] [--frames 8] [--height 96 --width 160] [--objects 2]

writes ``OUT/DAVIS`` (2017 + 2016 lists, ground truth for every train/val frame, the interactive
benchmark's initial ``Scribbles/``), ``OUT/YouTubeVOS``
(2018 layout: valid/ with every 5th frame, valid_all_frames/, meta.json, objects entering mid-video, and
``valid_gt/`` with the hidden ground truth of the scored frames; train/ with every 5th frame and its full ground
truth, and ``ivos_points/``, the YouTube-IVOS click files of the train videos) and ``OUT/COCO``. Use
``--height 480 --width 854`` for benchmark-sized frames.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from common.data.output_folder import check_output_folder
from common.data.palette import write_label_png
from common.data.paths import PathLike
from common.runtime.errors import UserError, run_cli

MARKER = "SYNTHETIC.json"  # marks a folder as ours, so a rerun may replace it
JPEG_QUALITY = 92
YTVOS_STRIDE = 5  # YouTube-VOS scores (and annotates) every 5th frame


# ---------------------------------------------------------------------------------------------------------------------
# Textures and objects

def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """float32 [H, W, 3] in [0, 1]: random colours on a coarse grid, bicubically upsampled."""
    coarse = rng.integers(0, 256, size=(max(2, height // cell + 2), max(2, width // cell + 2), 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
    return np.asarray(image, dtype=np.float32) / 255.0


def _texture(rng: np.random.Generator, size: int, base_color: np.ndarray) -> np.ndarray:
    """uint8 [size, size, 3] texture: a base colour modulated by stripes and two octaves of noise."""
    coarse = _smooth_noise(rng, size, size, cell=max(2, size // 6))
    fine = _smooth_noise(rng, size, size, cell=max(2, size // 24))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    freq = rng.uniform(2.0, 5.0) * 2 * math.pi / size
    angle = rng.uniform(0, math.pi)
    stripes = 0.5 + 0.5 * np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy))[..., None]
    texture = base_color[None, None, :] * (0.55 + 0.45 * stripes) + 0.35 * (coarse - 0.5) + 0.25 * (fine - 0.5)
    return (np.clip(texture, 0, 1) * 255).round().astype(np.uint8)


@dataclass
class _Blob:
    """A textured star-shaped blob moving on a smooth (sinusoidal) path; all lengths in pixels."""

    label: int
    radius: Tuple[float, float]          # half-axes (ry, rx)
    wobble: Tuple[int, float, float]     # boundary bumps: count, relative amplitude, phase
    center: Tuple[float, float]          # mean position (y, x)
    sway: Tuple[float, float]            # amplitude of the motion (y, x)
    phase: Tuple[float, float]           # phase of the motion (y, x)
    angle: Tuple[float, float]           # orientation at t=0 and turn over the whole video (radians)
    texture: np.ndarray                  # uint8 [S, S, 3], attached to the blob
    start: int = 0                       # first frame the blob is in the scene (YouTube-VOS: enters mid-video)

    def pose(self, s: float) -> Tuple[float, float, float]:
        """Centre and orientation at normalised time s in [0, 1] (half a period over the video)."""
        cy = self.center[0] + self.sway[0] * math.sin(math.pi * s + self.phase[0])
        cx = self.center[1] + self.sway[1] * math.sin(math.pi * s + self.phase[1])
        return cy, cx, self.angle[0] + self.angle[1] * s

    def paint(self, image: np.ndarray, labels: np.ndarray, s: float) -> None:
        """Draw the blob over `image` (uint8 [H, W, 3]) and `labels` (uint8 [H, W]) in place."""
        height, width = labels.shape
        cy, cx, theta = self.pose(s)
        reach = max(self.radius) * (1 + self.wobble[1]) + 1
        y0, y1 = max(0, int(cy - reach)), min(height, int(cy + reach) + 1)
        x0, x1 = max(0, int(cx - reach)), min(width, int(cx + reach) + 1)
        if y0 >= y1 or x0 >= x1:
            return
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dy, dx = yy - cy, xx - cx
        cos, sin = math.cos(theta), math.sin(theta)
        u, v = cos * dx + sin * dy, -sin * dx + cos * dy  # blob-local coordinates
        nu, nv = u / self.radius[1], v / self.radius[0]
        bumps, amplitude, bump_phase = self.wobble
        inside = np.hypot(nu, nv) <= 1 + amplitude * np.sin(bumps * np.arctan2(nv, nu) + bump_phase)
        size = self.texture.shape[0]
        ti = np.clip(np.floor(v + size / 2).astype(np.int64), 0, size - 1)
        tj = np.clip(np.floor(u + size / 2).astype(np.int64), 0, size - 1)
        tex = self.texture[ti, tj]
        image[y0:y1, x0:x1][inside] = tex[inside]
        labels[y0:y1, x0:x1][inside] = self.label


@dataclass
class _Scene:
    background: np.ndarray   # uint8 [H + pan, W + pan, 3]
    pan: Tuple[float, float]  # camera offset (y, x) reached at the end of the video
    blobs: List[_Blob]        # back to front
    height: int
    width: int
    n_frames: int

    def render(self, t: int) -> Tuple[np.ndarray, np.ndarray]:
        """Frame t as (uint8 [H, W, 3] RGB, uint8 [H, W] labels)."""
        s = t / max(1, self.n_frames - 1)
        oy, ox = int(round(self.pan[0] * s)), int(round(self.pan[1] * s))
        image = self.background[oy:oy + self.height, ox:ox + self.width].copy()
        labels = np.zeros((self.height, self.width), np.uint8)
        for blob in self.blobs:
            if t >= blob.start:
                blob.paint(image, labels, s)
        return image, labels


def _make_blob(rng: np.random.Generator, label: int, height: int, width: int, start: int = 0) -> _Blob:
    short = min(height, width)
    ry, rx = rng.uniform(0.14, 0.24) * short, rng.uniform(0.14, 0.24) * short
    color = rng.uniform(0.15, 1.0, size=3).astype(np.float32)
    # The texture covers the whole blob (diameter incl. boundary bumps), so it never wraps into a seam.
    tex_size = int(math.ceil(2 * max(ry, rx) * 1.25)) + 4
    return _Blob(
        label=label,
        radius=(ry, rx),
        wobble=(int(rng.integers(3, 7)), float(rng.uniform(0.05, 0.2)), float(rng.uniform(0, 2 * math.pi))),
        center=(rng.uniform(0.35, 0.65) * height, rng.uniform(0.3, 0.7) * width),
        sway=(rng.uniform(0.05, 0.2) * height, rng.uniform(0.15, 0.3) * width),  # paths cross: occlusions
        phase=(float(rng.uniform(-math.pi, math.pi)), float(rng.uniform(-math.pi, math.pi))),
        angle=(float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(-0.6, 0.6))),
        texture=_texture(rng, tex_size, color),
        start=start,
    )


def _make_scene(rng: np.random.Generator, height: int, width: int, n_frames: int,
                starts: Sequence[int]) -> _Scene:
    """A scene whose blob `k` (label k + 1) enters at `starts[k]`, clearly visible on the frame it enters."""
    pan = (float(rng.uniform(0, 0.08) * height), float(rng.uniform(0, 0.12) * width))
    bg_h, bg_w = height + int(pan[0]) + 2, width + int(pan[1]) + 2
    background = (0.7 * _smooth_noise(rng, bg_h, bg_w, cell=max(4, height // 8))
                  + 0.3 * _smooth_noise(rng, bg_h, bg_w, cell=max(2, height // 32)))
    background = (0.25 + 0.5 * background) * 255  # mid-contrast so objects stand out but are not trivial
    background = background.round().astype(np.uint8)
    blobs: List[_Blob] = []
    for k, start in enumerate(starts):
        for _attempt in range(100):
            blob = _make_blob(rng, k + 1, height, width, start)
            scene = _Scene(background, pan, blobs + [blob], height, width, n_frames)
            _, labels = scene.render(start)
            area = math.pi * blob.radius[0] * blob.radius[1]
            # the annotated frame must show most of the new object and keep the earlier ones visible
            visible = [np.count_nonzero(labels == b.label) for b in scene.blobs if b.start <= start]
            if np.count_nonzero(labels == blob.label) >= 0.6 * area and min(visible) >= 0.25 * area:
                break
        blobs.append(blob)
    return _Scene(background, pan, blobs, height, width, n_frames)


# ---------------------------------------------------------------------------------------------------------------------
# Writers

def _save_jpeg(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="JPEG", quality=JPEG_QUALITY)


def _check_replaceable(root: Path) -> None:
    """Refuse to replace a folder that is not ours."""
    if root.exists() and not (root / MARKER).is_file():
        raise UserError(f"{root} already exists and is not a synthetic sample (no {MARKER}); "
                        f"choose an empty output folder")


def _prepare(root: Path) -> Path:
    """A fresh temporary sibling of `root` to write into; refuses to replace a folder that is not ours."""
    root = Path(root)
    _check_replaceable(root)
    tmp = root.with_name(f".{root.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def _publish(tmp: Path, root: Path, params: dict) -> Path:
    (tmp / MARKER).write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")
    if root.exists():
        shutil.rmtree(root)
    tmp.rename(root)
    return root


def _check_size(height: int, width: int, n_frames: int, n_objects: int, n_videos: int = 1, *,
                frames_flag: str = "--frames", count_flag: str = "--videos") -> None:
    if n_videos < 1:
        raise UserError(f"{count_flag} {n_videos}: the synthetic sample needs at least 1 video (image)")
    if height < 32 or width < 32:
        raise UserError(f"synthetic frames must be at least 32x32, got {width}x{height}")
    if n_frames < 2:
        raise UserError(f"{frames_flag} {n_frames}: synthetic videos need at least 2 frames")
    if not 1 <= n_objects <= 254:
        raise UserError(f"number of objects must be 1..254, got {n_objects}")


def make_davis_sample(root: PathLike, seed: int = 0, n_videos: int = 3, n_frames: int = 8,
                      height: int = 96, width: int = 160, n_objects: int = 2,
                      n_train: int = 2, n_test_dev: int = 1, scribbles: bool = False) -> Path:
    """Write a DAVIS-2017-format tree at `root` (the DAVIS folder itself) and return it.

    ``ImageSets/2017/val.txt`` lists `n_videos` videos (synth-val-XX), train.txt `n_train`, test-dev.txt
    `n_test_dev` (their Annotations hold only frame 0, as in the real test-dev). ``ImageSets/2016``
    lists the same train/val videos; the loader binarises their masks, as DAVIS 2016 is built from 2017.
    Every video has `n_objects` objects, ids 1..n_objects, all visible in frame 0. With `scribbles`, the
    train and val videos get the initial scribble file of the interactive benchmark
    (`Scribbles/<seq>/001.json`, davisinteractive's robot on the ground truth; see common.data.scribbles).
    """
    _check_size(height, width, n_frames, n_objects, n_videos)
    root = Path(root)
    tmp = _prepare(root)
    rng = np.random.default_rng(seed)
    splits = {"val": [f"synth-val-{i:02d}" for i in range(n_videos)],
              "train": [f"synth-train-{i:02d}" for i in range(n_train)],
              "test-dev": [f"synth-test-{i:02d}" for i in range(n_test_dev)]}
    for split, names in splits.items():
        for name in names:
            scene = _make_scene(rng, height, width, n_frames, [0] * n_objects)
            for t in range(n_frames):
                image, labels = scene.render(t)
                _save_jpeg(tmp / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", image)
                if split != "test-dev" or t == 0:
                    write_label_png(tmp / "Annotations" / "480p" / name / f"{t:05d}.png", labels)
    for year, year_splits in (("2017", ("train", "val", "test-dev")), ("2016", ("train", "val"))):
        (tmp / "ImageSets" / year).mkdir(parents=True)
        for split in year_splits:
            (tmp / "ImageSets" / year / f"{split}.txt").write_text("".join(n + "\n" for n in splits[split]))
    if scribbles:
        from common.data.scribbles import write_robot_scribbles  # imports davisinteractive: only when asked for

        for name in splits["train"] + splits["val"]:
            write_robot_scribbles(tmp, name)
    params = dict(kind="davis", seed=seed, n_videos=n_videos, n_frames=n_frames, height=height, width=width,
                  n_objects=n_objects, n_train=n_train, n_test_dev=n_test_dev, scribbles=scribbles)
    return _publish(tmp, root, params)


def _ytvos_starts(video: int, n_objects: int, n_frames: int) -> List[int]:
    """Annotated frame at which each object enters: object 1 first, later ones on later scored frames.

    Odd videos begin with a few unannotated frames (the video starts at its first annotation); from the
    second video on, objects after the first enter mid-video on a scored (every 5th) frame.
    """
    last_scored = (n_frames - 1) // YTVOS_STRIDE * YTVOS_STRIDE
    first = YTVOS_STRIDE if video % 2 == 1 and last_scored >= YTVOS_STRIDE else 0
    starts = [first]
    for k in range(1, n_objects):
        entry = first + YTVOS_STRIDE * (k if video > 0 else 0)
        starts.append(min(entry, last_scored))
    return starts


def make_ytvos_sample(root: PathLike, seed: int = 0, n_videos: int = 3, n_frames: int = 16,
                      height: int = 96, width: int = 160, n_objects: int = 2, year: int = 2018,
                      n_train: int = 0) -> Path:
    """Write a YouTube-VOS-format validation tree at `root` and return it.

    `n_frames` counts all frames (``valid_all_frames/JPEGImages``); ``valid/JPEGImages`` holds every 5th.
    ``valid/Annotations/<video>/<frame>.png`` exists on the frame each object enters and, as in the real
    dataset, holds only the objects entering there. ``valid/meta.json`` lists objects and the scored
    frames they appear in. ``valid_gt/Annotations`` holds the full ground truth of the scored frames
    (the real set keeps it on the server), so tests can score results. With `n_train`, also a train split of
    that many videos and their YouTube-IVOS click files (`_write_ytvos_train`).
    """
    _check_size(height, width, n_frames, n_objects, n_videos)
    root = Path(root)
    tmp = _prepare(root)
    rng = np.random.default_rng(seed + 1_000_003)  # a different stream from the DAVIS sample of the same seed
    meta: Dict[str, dict] = {"videos": {}}
    for v in range(n_videos):
        name = f"synth{v:03d}"
        starts = _ytvos_starts(v, n_objects, n_frames)
        scene = _make_scene(rng, height, width, n_frames, starts)
        appears: Dict[int, List[str]] = {k + 1: [] for k in range(n_objects)}
        for t in range(n_frames):
            image, labels = scene.render(t)
            frame = f"{t:05d}"
            _save_jpeg(tmp / "valid_all_frames" / "JPEGImages" / name / f"{frame}.jpg", image)
            if t % YTVOS_STRIDE:
                continue
            _save_jpeg(tmp / "valid" / "JPEGImages" / name / f"{frame}.jpg", image)
            write_label_png(tmp / "valid_gt" / "Annotations" / name / f"{frame}.png", labels)
            entering = [k + 1 for k, s in enumerate(starts) if s == t]
            if entering:
                given = np.where(np.isin(labels, entering), labels, 0).astype(np.uint8)
                write_label_png(tmp / "valid" / "Annotations" / name / f"{frame}.png", given)
            for k, s in enumerate(starts):
                if t >= s and np.any(labels == k + 1):
                    appears[k + 1].append(frame)
        meta["videos"][name] = {"objects": {str(k): {"category": "synthetic", "frames": frames}
                                            for k, frames in appears.items()}}
    (tmp / "valid" / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    if n_train:
        _write_ytvos_train(tmp, seed, n_train, n_frames, height, width, n_objects)
    params = dict(kind="youtube-vos", year=year, seed=seed, n_videos=n_videos, n_frames=n_frames,
                  height=height, width=width, n_objects=n_objects, n_train=n_train)
    return _publish(tmp, root, params)


IVOS_POINTS = "ivos_points"  # the YouTube-IVOS click files of the train videos, inside the YouTube-VOS sample


def _write_ytvos_train(tmp: Path, seed: int, n_train: int, n_frames: int, height: int, width: int,
                       n_objects: int) -> None:
    """``train/JPEGImages`` (every 5th frame, as YouTube-VOS ships its train split) with the full ground truth in
    ``train/Annotations``, every object there from the first frame; and the YouTube-IVOS click files of these
    videos in ``ivos_points/`` (`common.data.ivos_points`), so that `gis.ivos_main_youtube` runs on the sample."""
    from common.data.ivos_points import write_ivos_points

    rng = np.random.default_rng(seed + 3_000_003)  # its own stream: the valid videos do not change with it
    names = [f"synth-train{v:03d}" for v in range(n_train)]
    for name in names:
        scene = _make_scene(rng, height, width, n_frames, [0] * n_objects)
        for t in range(0, n_frames, YTVOS_STRIDE):
            image, labels = scene.render(t)
            _save_jpeg(tmp / "train" / "JPEGImages" / name / f"{t:05d}.jpg", image)
            write_label_png(tmp / "train" / "Annotations" / name / f"{t:05d}.png", labels)
    write_ivos_points(tmp, tmp / IVOS_POINTS, names, seed=seed)


def make_coco_sample(root: PathLike, seed: int = 0, n_images: int = 4, height: int = 96, width: int = 160,
                     n_objects: int = 2) -> Path:
    """Write ``JPEGImages/<id>.jpg`` + ``Annotations/<id>.png`` pairs (COCO-style ids) for training smoke tests."""
    _check_size(height, width, 2, n_objects, n_images)
    root = Path(root)
    tmp = _prepare(root)
    rng = np.random.default_rng(seed + 2_000_003)
    for i in range(n_images):
        scene = _make_scene(rng, height, width, 2, [0] * n_objects)
        image, labels = scene.render(0)
        _save_jpeg(tmp / "JPEGImages" / f"{i + 1:012d}.jpg", image)
        write_label_png(tmp / "Annotations" / f"{i + 1:012d}.png", labels)
    params = dict(kind="coco", seed=seed, n_images=n_images, height=height, width=width, n_objects=n_objects)
    return _publish(tmp, root, params)


def make_sample(out: PathLike, seed: int = 0, n_videos: int = 3, n_frames: int = 8, height: int = 96,
                width: int = 160, n_objects: int = 2, ytvos_frames: Optional[int] = None,
                coco_images: int = 4) -> Dict[str, Path]:
    """All three samples under `out`: {'davis': out/DAVIS, 'ytvos': out/YouTubeVOS, 'coco': out/COCO}."""
    out = Path(out)
    ytvos_frames = ytvos_frames if ytvos_frames is not None else 2 * n_frames
    # every part's sizes, and where it goes, before the first is written: a bad one leaves no partial sample
    _check_size(height, width, n_frames, n_objects, n_videos)
    _check_size(height, width, ytvos_frames, n_objects, n_videos, frames_flag="--ytvos-frames")
    _check_size(height, width, 2, n_objects, coco_images, count_flag="--coco-images")
    check_output_folder(out, "the output folder")
    for part in ("DAVIS", "YouTubeVOS", "COCO"):
        _check_replaceable(out / part)
    out.mkdir(parents=True, exist_ok=True)
    return {
        "davis": make_davis_sample(out / "DAVIS", seed, n_videos, n_frames, height, width, n_objects, scribbles=True),
        "ytvos": make_ytvos_sample(out / "YouTubeVOS", seed, n_videos, ytvos_frames, height, width, n_objects,
                                   n_train=n_videos),
        "coco": make_coco_sample(out / "COCO", seed, coco_images, height, width, n_objects),
    }


# ---------------------------------------------------------------------------------------------------------------------
# A training set large enough to generalise from (`vos.train_sample`)

def _lookalike(rng: np.random.Generator, scene: _Scene) -> _Scene:
    """The same scene with every object textured from one base colour: objects that resemble each other."""
    base = rng.uniform(0.15, 1.0, size=3).astype(np.float32)
    for blob in scene.blobs:
        jitter = rng.uniform(-0.08, 0.08, size=3).astype(np.float32)
        blob.texture = _texture(rng, blob.texture.shape[0], np.clip(base + jitter, 0, 1))
    return scene


def _training_scene(rng: np.random.Generator, height: int, width: int, n_frames: int, max_objects: int,
                    lookalike: float) -> _Scene:
    n_objects = int(rng.integers(1, max_objects + 1))
    scene = _make_scene(rng, height, width, n_frames, [0] * n_objects)
    return _lookalike(rng, scene) if rng.random() < lookalike else scene


def make_training_sample(out: PathLike, seed: int = 1021, *, n_train: int, n_val: int, n_frames: int,
                         coco_images: int, height: int = 96, width: int = 160, max_objects: int = 3,
                         lookalike: float = 0.5) -> Dict[str, Path]:
    """A generated training set: `out/DAVIS` (`n_train` train videos and `n_val` val videos for validation
    during training) and `out/COCO` (`coco_images` images). Its counts and video length have no defaults here:
    `vos.train_sample`'s options state them, in one place. Scenes hold 1..`max_objects` objects that move, turn
    and occlude each other; a `lookalike` share of the scenes textures all its objects from one colour. One
    random stream from `seed` (default 1021), apart from the seeds of the demo and evaluation samples."""
    _check_size(height, width, n_frames, max_objects, n_train, count_flag="n_train")
    _check_size(height, width, 2, max_objects, coco_images, count_flag="coco_images")
    out = Path(out)
    rng = np.random.default_rng(seed + 4_000_003)
    davis = _prepare(out / "DAVIS")
    splits = {"train": [f"synth-train-{i:03d}" for i in range(n_train)],
              "val": [f"synth-val-{i:02d}" for i in range(n_val)]}
    for split, names in splits.items():
        for name in names:
            scene = _training_scene(rng, height, width, n_frames, max_objects, lookalike)
            for t in range(n_frames):
                image, labels = scene.render(t)
                _save_jpeg(davis / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", image)
                write_label_png(davis / "Annotations" / "480p" / name / f"{t:05d}.png", labels)
    (davis / "ImageSets" / "2017").mkdir(parents=True)
    for split, names in splits.items():
        (davis / "ImageSets" / "2017" / f"{split}.txt").write_text("".join(n + "\n" for n in names))
    params = dict(kind="davis-training", seed=seed, n_train=n_train, n_val=n_val, n_frames=n_frames,
                  height=height, width=width, max_objects=max_objects, lookalike=lookalike)
    paths = {"davis": _publish(davis, out / "DAVIS", params)}
    coco = _prepare(out / "COCO")
    for i in range(coco_images):
        image, labels = _training_scene(rng, height, width, 2, max_objects, lookalike).render(0)
        _save_jpeg(coco / "JPEGImages" / f"{i + 1:012d}.jpg", image)
        write_label_png(coco / "Annotations" / f"{i + 1:012d}.png", labels)
    paths["coco"] = _publish(coco, out / "COCO", dict(params, kind="coco-training", coco_images=coco_images))
    return paths


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.data.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="output folder (DAVIS/, YouTubeVOS/ and COCO/ are written in it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--videos", type=int, default=3, help="DAVIS val and YouTube-VOS valid videos")
    parser.add_argument("--frames", type=int, default=8,
                        help="frames per DAVIS video (YouTube-VOS videos get twice as many, every 5th scored)")
    parser.add_argument("--ytvos-frames", type=int, default=None, help="all frames per YouTube-VOS video")
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--objects", type=int, default=2)
    parser.add_argument("--coco-images", type=int, default=4)
    args = parser.parse_args(argv)
    paths = make_sample(args.out, args.seed, args.videos, args.frames, args.height, args.width, args.objects,
                        args.ytvos_frames, args.coco_images)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    run_cli(main)

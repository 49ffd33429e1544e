"""YouTube-IVOS: the interactive protocol GIS-RAmap evaluates on YouTube-VOS 2019 *train* videos.

The reference script (`IVOS_main_youtube.py`) imports `libs.youtubesession.YoutubeSession`, which is
not in its repository. This module supplies it, built from what the script calls and what the
published data and result files imply:

* **Videos.** The 200 videos of `youtube_ivos_validation_list.json`, in sorted order (the order of
  the published `summary_in_csv.csv`), from `<root>/train/JPEGImages/<video>/` (every 5th frame of
  the video, as YouTube-VOS ships its train split) with the full ground truth in
  `<root>/train/Annotations/<video>/`. Every listed frame is scored; object ids are 1..N, N being the
  number of objects in the point file.
* **Round 1: clicks.** `point_info_{05,10,20,50}.json` gives, per video, the annotated frame (`fr`,
  an annotation file name) and for every object `[[y...], [x...]]`: 5/10/20/50 positive clicks in
  original-resolution pixels. They are turned into the first round's interaction map.
* **Rounds 2-4: robot scribbles.** After each submission the metric (J&F per frame and object) is
  computed on every frame; the next frame is the one with the lowest object-averaged J&F among the
  recommended frames (all frames for `wo_RS`) not used before (if all were used, among all of them),
  exactly the rule of davisinteractive's local evaluation service. davisinteractive's scribble robot
  (kernel 0.2, max radius 16, 1000 points, `min_nb_nodes` 2 as `config.test_min_nb_nodes`) then draws
  scribbles on that frame's errors, given the submitted mask. As in the DAVIS framework, the model
  receives all scribbles of the sample so far (`only_last=False`).
* **Scores.** `performance_summary()` is, per round, the mean over all objects of all videos of the
  object's J&F averaged over the video's frames -- the per-object values written to
  `summary_in_csv.csv`; averaging the four per-round lists of the 5/10/20/50-click runs gives the
  published `summary_total.json` (0.672 / 0.755 / 0.806 / 0.832).

All this is a reconstruction: it reproduces the structure of the published numbers (per-object
rows, per-round means) but the missing module may have differed in details (e.g. robot settings).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from common.data.datasets import check_sequence_sizes, read_json
from common.data.davisinteractive_compat import import_davisinteractive
from common.data.ivos_points import VALIDATION_LIST, write_ivos_points
from common.data.palette import read_label_png
from common.data.scribbles import ROBOT_PARAMETERS
from common.runtime.errors import UserError

PACKAGED_POINTS_DIR = Path(__file__).resolve().parent / "data"


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"missing YouTube-IVOS file {path}; pass --points-dir pointing at the folder with "
                        f"{VALIDATION_LIST} and point_info_XX.json")
    return read_json(path, "replace it with the reference's file (gis/data/) or rewrite it with "
                           "common.data.ivos_points.write_ivos_points")


class YoutubeSession:
    """Serves the click points, evaluates submissions and simulates the user's scribbles."""

    def __init__(self, youtube_root: Path, points_path: Path, validation_list: Path, *, n_total_rounds: int = 4,
                 min_nb_nodes: int = 2, videos: Optional[Sequence[str]] = None):
        import_davisinteractive()
        from davisinteractive.robot import InteractiveScribblesRobot

        self.root = Path(youtube_root)
        self.points = _read_json(Path(points_path))
        listing = _read_json(Path(validation_list))
        names = sorted(listing) if videos is None else list(videos)
        missing = [v for v in names if v not in self.points]
        if missing:
            raise UserError(f"{points_path} has no points for {len(missing)} listed video(s), first {missing[0]!r}")
        self.youtube_val_videos = names
        self.n_total_rounds = n_total_rounds
        self.robot = InteractiveScribblesRobot(**dict(ROBOT_PARAMETERS, min_nb_nodes=min_nb_nodes))
        self.per_object_rounds: List[np.ndarray] = []  # one [n_rounds] vector per finished object
        self._reset()

    def _reset(self) -> None:
        self.video: Optional[str] = None
        self.gt: Optional[np.ndarray] = None
        self.frame_list: List[str] = []
        self.prev_frames_used_in_index: List[int] = []
        self.scribbles: Optional[dict] = None
        self.metric: Optional[np.ndarray] = None
        self.round = 0
        self.video_rounds: List[np.ndarray] = []

    # -- per video ------------------------------------------------------------------------------
    def frame_paths(self, video: str) -> List[Path]:
        folder = self.root / "train" / "JPEGImages" / video
        paths = sorted(folder.glob("*.jpg"))
        if not paths:
            raise UserError(f"no frames in {folder}; is --youtube the YouTube-VOS 2019 root (train/JPEGImages)?")
        return paths

    def initialize_session_for_video(self, video: str) -> Tuple[Tuple[int, int], int, int]:
        """Load the video's ground truth; returns ((H, W), number of frames, number of objects)."""
        self._reset()
        self.video = video
        frames = self.frame_paths(video)
        self.frame_list = [p.stem + ".png" for p in frames]
        ann_dir = self.root / "train" / "Annotations" / video
        self.gt = np.stack([read_label_png(ann_dir / name) for name in self.frame_list]).astype(np.int64)
        first = self.points[video]["fr"]
        if first not in self.frame_list:
            raise UserError(f"annotated frame {first} of {video} is not among its frames in {ann_dir}")
        self.prev_frames_used_in_index = [self.frame_list.index(first)]
        self.n_objects = len(self.points[video]["points"])
        self.scribbles = {"sequence": video, "scribbles": [[] for _ in self.frame_list]}
        return self.gt.shape[1:3], len(self.frame_list), self.n_objects

    def get_points_firstround(self) -> List[np.ndarray]:
        """Per object `[2, n]` (rows: y, x) click coordinates at the original resolution."""
        return [np.asarray(p) for p in self.points[self.video]["points"]]

    def get_scrdata_currentround(self) -> dict:
        """All scribbles of this video so far, davisinteractive's default format."""
        return self.scribbles

    def submit_masks(self, masks: np.ndarray, next_scribble_frame_candidates: Optional[Sequence[int]] = None) -> None:
        """Score the round's masks [T,H,W]; unless it was the last round, pick the next frame and
        let the robot scribble on it."""
        from davisinteractive.metrics import batched_f_measure, batched_jaccard
        from davisinteractive.utils.scribbles import fuse_scribbles

        masks = np.asarray(masks).astype(np.int64)
        jaccard = batched_jaccard(self.gt, masks, average_over_objects=False, nb_objects=self.n_objects)
        contour = batched_f_measure(self.gt, masks, average_over_objects=False, nb_objects=self.n_objects)
        self.metric = 0.5 * jaccard + 0.5 * contour  # frames x objects
        self.video_rounds.append(self.metric.mean(axis=0))
        self.round += 1
        if self.round == self.n_total_rounds:
            self.per_object_rounds.extend(np.stack(self.video_rounds, axis=1))
            return

        n_frames = len(self.frame_list)
        candidates = set(range(n_frames) if next_scribble_frame_candidates is None else next_scribble_frame_candidates)
        pool = (candidates - set(self.prev_frames_used_in_index)) or candidates
        order = self.metric.mean(axis=1).argsort()
        next_frame = int(next(f for f in order if f in pool))
        self.prev_frames_used_in_index.append(next_frame)

        single = self.robot.interact(self.video, masks[next_frame:next_frame + 1], self.gt[next_frame:next_frame + 1],
                                     nb_objects=self.n_objects, frame=0)
        new = {"sequence": self.video, "scribbles": [[] for _ in range(n_frames)]}
        new["scribbles"][next_frame] = single["scribbles"][0]
        self.scribbles = fuse_scribbles(self.scribbles, new)

    def video_summary(self) -> np.ndarray:
        """[n_objects, n_rounds] J&F of the finished video."""
        return np.stack(self.video_rounds, axis=1)

    def performance_summary(self) -> np.ndarray:
        """Per round, the mean over every finished object of its frame-averaged J&F."""
        return np.mean(np.stack(self.per_object_rounds), axis=0)


def check_videos(youtube_root: Path, points_dir: Path, videos: Optional[Sequence[str]] = None) -> None:
    """Before the weights load: every video to run has its frame and annotation folders, and its
    annotations have the size of its frames (`common.data.datasets.check_sequence_sizes`)."""
    names = sorted(_read_json(Path(points_dir) / VALIDATION_LIST)) if videos is None else list(videos)
    train = Path(youtube_root) / "train"
    for video in names:
        check_sequence_sizes(train / "JPEGImages" / video, train / "Annotations" / video)


def load_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def write_synthetic_points(youtube_root: Path, out_dir: Path, videos: Sequence[str], n_points: Sequence[int] = (5,),
                           seed: int = 0) -> Path:
    """Point files for a YouTube-VOS-format train tree (tests, demo): `common.data.ivos_points.write_ivos_points`."""
    return write_ivos_points(youtube_root, out_dir, videos, n_points, seed)

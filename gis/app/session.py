"""One browser tab: a video, the user's strokes and the GIS-RAmap rounds run on them.

Strokes arrive in the page's pixel-free form (points normalised by the frame size) and are kept in
the davisinteractive scribble format (`path`, `object_id`, `start_time`, `end_time`), so a round runs
exactly as in the robot benchmark (`gis.ivos_main_davis`): scribbles of the annotated frame ->
`scribble_channels` -> `GISSession.run_round` -> `finish_round` for the RS1/RS4 recommendation.
As in the reference GUI, a round uses the strokes drawn since the previous round, and each stroke
first re-segments its frame alone (`GISSession.preview_annotation`) so its effect shows at once.

With a working size (`size`, the shorter side in pixels) the model sees frames shrunk to it and its
masks are upsampled (nearest) to the frame; strokes are fractions of the frame, so they need no change.

A session's work is a small record (`record()`: the strokes of every round, the strokes not yet run,
scores, clock); `restore_blocking` rebuilds the model state from it by running the rounds again, which
gives the same masks on the same machine and path. Model work runs on the caller's worker thread; the
methods named `*_blocking` are the ones to run there.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np

from gis.app.evaluation import RoundClock, object_scores
from gis.fast import FastGIS
from gis.ivos import (GUIDE_METHODS, GISSession, propagation_order, scribble_channels, upsample_labels,
                      working_frames)
from gis.model import GISNet
from gis.options import MAX_OBJECTS

MAX_ROUNDS = 50
MAX_POINTS = 10000  # per stroke
MAX_STROKES = 200  # per round
RECORD_VERSION = 1


class RequestError(Exception):
    """A request the session refuses; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class Video:
    name: str
    frames: np.ndarray  # uint8 RGB [T,H,W,3]
    n_objects: int
    gt: Optional[np.ndarray] = None  # uint8 [T,H,W] ids, void 255 kept (DAVIS val)
    fps: float = 24.0  # playback and export rate (DAVIS is 24 fps; a custom video's from its metadata)

    def __post_init__(self):
        if not 1 <= self.n_objects <= MAX_OBJECTS:
            raise ValueError(f"{self.n_objects} objects; the DAVIS palette has colours for 1..{MAX_OBJECTS}")


@dataclass
class Model:
    net: GISNet
    fast: Optional[FastGIS] = None


def parse_stroke(payload: object, n_frames: int, n_objects: int) -> dict:
    """Check a stroke sent by the page: `{frame, object_id, path: [[x, y], ...] in 0..1, duration}`
    (and `replace: true` to drop strokes not yet run on another frame)."""
    if not isinstance(payload, dict):
        raise RequestError("a stroke must be a JSON object with frame, object_id, path and duration")
    frame, obj, path, duration = (payload.get(k) for k in ("frame", "object_id", "path", "duration"))
    if not isinstance(frame, int) or isinstance(frame, bool) or not 0 <= frame < n_frames:
        raise RequestError(f"stroke frame must be an integer in 0..{n_frames - 1}, got {frame!r}")
    if not isinstance(obj, int) or isinstance(obj, bool) or not 0 <= obj <= n_objects:
        raise RequestError(f"stroke object_id must be 0 (background) .. {n_objects}, got {obj!r}")
    if not isinstance(path, list) or not 1 <= len(path) <= MAX_POINTS:
        raise RequestError(f"stroke path must be a list of 1..{MAX_POINTS} [x, y] points")
    points = []
    for point in path:
        if (not isinstance(point, list) or len(point) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= 1
                           for v in point)):
            raise RequestError("stroke points must be [x, y] with 0 <= x, y <= 1 (fractions of the frame size)")
        points.append([float(point[0]), float(point[1])])
    if not isinstance(duration, (int, float)) or isinstance(duration, bool) or not 0 <= duration < 3600:
        raise RequestError(f"stroke duration must be seconds in [0, 3600), got {duration!r}")
    return {"frame": frame, "object_id": obj, "path": points, "duration": float(duration),
            "replace": payload.get("replace") is True}


class TabSession:
    """The state of one tab. Event-loop methods change bookkeeping only; `*_blocking` do the model work.

    `on_change(session)` is called after every change of the work (to persist it), from either thread."""

    def __init__(self, sid: str, video: Video, model: Model, guide: str, *, size: Optional[int] = None,
                 clock: Callable[[], float] = time.monotonic, on_change: Optional[Callable] = None):
        if guide not in GUIDE_METHODS:
            raise ValueError(f"unknown guide {guide!r}")
        self.sid, self.video, self.model, self.guide, self.size = sid, video, model, guide, size
        self.work = working_frames(video.frames, size)
        self.time = clock
        self.on_change = on_change
        self.lock = threading.RLock()  # guards labels/progress between the worker and the event loop
        self.running = False
        self.restoring = False
        self.last_seen = clock()
        self._reset()

    def _reset(self) -> None:
        self.state = GISSession(self.model.net, self.work, self.video.n_objects, max_rounds=MAX_ROUNDS,
                                fast=self.model.fast)
        self.clock = RoundClock(clock=self.time)
        self.labels = np.zeros(self.video.frames.shape[:3], dtype=np.uint8)
        self.strokes: List[dict] = []
        self.redo: List[dict] = []  # undone strokes ({frame, stroke}), newest last
        self.cleared: List[dict] = []  # the strokes of the last Clear, for its undo
        self.cleared_frame: Optional[int] = None
        self.stroke_frame: Optional[int] = None
        self.preview: Optional[np.ndarray] = None
        self.preview_stamp = 0  # bumped by every stroke change; a preview of older strokes is dropped
        self.version = getattr(self, "version", 0) + 1  # bumped whenever the labels shown change
        self.progress = (0, 0)
        self.error: Optional[str] = None
        self.recommended: Optional[List[int]] = None
        self.scores: Optional[dict] = None
        self.history: List[dict] = []  # each round's mean J, F, J&F (with ground truth)
        self.rounds: List[dict] = []  # each round's annotated frame and strokes: replayed by restore_blocking

    # ------------------------------------------------------------------ views
    @property
    def num_frames(self) -> int:
        return self.video.frames.shape[0]

    @property
    def has_work(self) -> bool:
        return bool(self.rounds or self.strokes)

    def frame_labels(self, frame: int) -> np.ndarray:
        with self.lock:
            if self.preview is not None and frame == self.stroke_frame:
                return self.preview
            return self.labels[frame]

    def info(self) -> dict:
        t, h, w = self.video.frames.shape[:3]
        wh, ww = self.work.shape[1:3]
        return {"sid": self.sid, "sequence": self.video.name, "num_frames": t, "height": h, "width": w,
                "n_objects": self.video.n_objects, "has_gt": self.video.gt is not None, "guide": self.guide,
                "fps": self.video.fps, "work_height": wh, "work_width": ww}

    def status(self) -> dict:
        done, total = self.progress
        return {"round": self.state.round, "running": self.running, "restoring": self.restoring,
                "progress": {"done": done, "total": total}, "error": self.error, "recommended": self.recommended,
                "scores": self.scores, "history": list(self.history), "version": self.version,
                "strokes": len(self.strokes), "stroke_frame": self.stroke_frame, "redo": len(self.redo),
                "undo": bool(self.strokes or self.cleared),
                "paths": [{"object_id": s["object_id"], "path": s["path"]} for s in self.strokes],
                "finding": self.clock.finding_pending}

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)

    # ------------------------------------------------------------------ strokes
    def _check_idle(self) -> None:
        if self.running or self.restoring:
            raise RequestError("a round is running; wait for it to finish", status=409)

    def add_stroke(self, payload: object) -> int:
        """Record a stroke; returns the stamp its preview must carry."""
        self._check_idle()
        stroke = parse_stroke(payload, self.num_frames, self.video.n_objects)
        if len(self.strokes) >= MAX_STROKES:
            raise RequestError(f"at most {MAX_STROKES} strokes per round; press Run or clear them", status=409)
        if self.strokes and stroke["frame"] != self.stroke_frame:
            # Strokes belong to one frame per round (the reference's rule): never drop the others silently.
            if not stroke["replace"]:
                raise RequestError(f"{len(self.strokes)} stroke(s) on frame {self.stroke_frame} were not run; "
                                   f"press Run there first, or confirm to drop them", status=409)
            self.clear_strokes()
        self.stroke_frame = stroke["frame"]
        self.clock.stroke_started(seconds_ago=stroke["duration"])
        now = time.time()
        with self.lock:
            self.strokes.append({"path": stroke["path"], "object_id": stroke["object_id"],
                                 "start_time": now - stroke["duration"], "end_time": now})
            self.redo, self.cleared = [], []
            self.preview_stamp += 1
        self._changed()
        return self.preview_stamp

    def _strokes_changed(self) -> int:
        with self.lock:
            if not self.strokes:
                self.stroke_frame, self.preview = None, None
                self.version += 1
            self.preview_stamp += 1
        self._changed()
        return self.preview_stamp

    def undo_stroke(self) -> int:
        """Undo the last stroke; with none left, undo a Clear (all its strokes come back)."""
        self._check_idle()
        if not self.strokes and not self.cleared:
            raise RequestError("no stroke to undo in this round", status=409)
        with self.lock:
            if self.strokes:
                self.redo.append({"frame": self.stroke_frame, "stroke": self.strokes.pop()})
            else:
                self.strokes, self.stroke_frame, self.cleared = self.cleared, self.cleared_frame, []
        return self._strokes_changed()

    def redo_stroke(self) -> int:
        self._check_idle()
        if not self.redo:
            raise RequestError("no undone stroke to redo", status=409)
        with self.lock:
            undone = self.redo.pop()
            self.strokes.append(undone["stroke"])
            self.stroke_frame = undone["frame"]
        return self._strokes_changed()

    def clear_strokes(self) -> None:
        self._check_idle()
        with self.lock:
            if self.strokes:  # a Clear can be undone
                self.cleared, self.cleared_frame = self.strokes, self.stroke_frame
            self.strokes, self.stroke_frame, self.preview = [], None, None
            self.preview_stamp += 1
            self.version += 1
        self._changed()

    def scribbles(self) -> dict:
        """The strokes in davisinteractive's scribble format."""
        frames: List[List[dict]] = [[] for _ in range(self.num_frames)]
        if self.stroke_frame is not None:
            frames[self.stroke_frame] = list(self.strokes)
        return {"sequence": self.video.name, "annotated_frame": self.stroke_frame, "scribbles": frames}

    def _interaction(self) -> np.ndarray:
        frame = self.stroke_frame
        return scribble_channels(self.scribbles()["scribbles"][frame], self.video.n_objects,
                                 self.state.frame_labels(frame), first_round=self.state.round == 0)

    def preview_blocking(self, stamp: int) -> None:
        """Re-segment the stroked frame from its strokes (skipped when newer strokes superseded them)."""
        if stamp != self.preview_stamp or not self.strokes:
            return
        labels = self.state.preview_annotation(self._interaction(), self.stroke_frame)
        labels = upsample_labels(labels, *self.video.frames.shape[1:3])
        with self.lock:
            if stamp == self.preview_stamp:
                self.preview = labels
                self.version += 1

    # ------------------------------------------------------------------ rounds
    def select_frame(self) -> None:
        """The user chose where to annotate next (ends the finding step)."""
        if self.clock.start is not None:
            self.clock.end_finding()
            self._changed()

    def start_round(self) -> int:
        """Check a Run and mark the session busy; returns the number of frames the round will segment."""
        self._check_idle()
        if not self.strokes:
            raise RequestError("draw a scribble on the frame first, then press Run")
        if self.state.round >= MAX_ROUNDS:
            raise RequestError(f"{MAX_ROUNDS} rounds is the limit; press Satisfied", status=409)
        frame = self.stroke_frame
        total = len(set(propagation_order(self.state.annotated_frames + [frame], frame, self.num_frames,
                                          self.state.proportion)))
        self.clock.run_pressed()
        self.running, self.error, self.progress = True, None, (0, total)
        return total

    def _round(self) -> None:
        """One round on the stroked frame (model work); afterwards labels, recommendation and scores."""
        frame = self.stroke_frame
        interaction = self._interaction()

        def on_frame(_frame: int) -> None:
            done, total = self.progress
            self.progress = (done + 1, total)

        self.state.run_round(interaction, frame, on_frame=on_frame)
        labels = upsample_labels(self.state.labels(), *self.video.frames.shape[1:3])
        recommended = self.state.finish_round(self.guide)
        scores = object_scores(self.video.gt, labels, self.video.n_objects) if self.video.gt is not None else None
        with self.lock:
            self.rounds.append({"frame": frame, "strokes": list(self.strokes)})
            self.labels, self.recommended, self.scores = labels, recommended, scores
            if scores is not None:
                self.history.append({"round": self.state.round, "J": scores["mean_J"], "F": scores["mean_F"],
                                     "JF": scores["mean_JF"]})
            self.strokes, self.redo, self.cleared, self.stroke_frame, self.preview = [], [], [], None, None
            self.preview_stamp += 1
            self.version += 1

    def run_round_blocking(self) -> None:
        try:
            self._round()
            self.clock.masks_ready()
        except Exception as err:  # reported on the page; the session stays usable
            self.clock.run_failed()
            self.error = f"the round failed: {type(err).__name__}: {err}"
            raise
        finally:
            self.running = False
            self._changed()

    def restart(self) -> None:
        """Start the video over: no round, no stroke, the clock stopped (the reference's "Restart the video")."""
        self._check_idle()
        self._reset()
        self._changed()

    def check_finish(self) -> None:
        self._check_idle()
        if self.state.round == 0:
            raise RequestError("run at least one round before pressing Satisfied", status=409)
        if self.strokes:
            raise RequestError("there are strokes that were not run; press Run or clear them first", status=409)

    def final_scores_blocking(self) -> dict:
        """Per-object final J and F (ground truth needed) and the round times; ends the last finding step."""
        self.clock.end_finding()
        return {"scores": object_scores(self.video.gt, self.labels, self.video.n_objects),
                "times": self.clock.totals(), "n_rounds": self.state.round}

    # ------------------------------------------------------------------ persistence
    def record(self) -> dict:
        """The work as JSON-able data; the clock is kept as seconds since its start, so the time the
        server was down is not counted."""
        with self.lock:
            clock = self.clock
            elapsed = None if clock.start is None else self.time() - clock.start
            return {"version": RECORD_VERSION, "sid": self.sid, "sequence": self.video.name, "guide": self.guide,
                    "rounds": list(self.rounds), "strokes": list(self.strokes), "stroke_frame": self.stroke_frame,
                    "redo": list(self.redo), "cleared": list(self.cleared), "cleared_frame": self.cleared_frame,
                    "history": list(self.history), "recommended": self.recommended,
                    "clock": {"elapsed": elapsed, "scribble": list(clock.scribble), "operate": list(clock.operate),
                              "finding": list(clock.finding)}}

    def restore_blocking(self, record: dict) -> None:
        """Rebuild the session from `record()`: its rounds run again, then its strokes not yet run."""
        self.restoring = True
        try:
            total = sum(len(set(propagation_order([r["frame"] for r in record["rounds"][:i + 1]], r["frame"],
                                                  self.num_frames, self.state.proportion)))
                        for i, r in enumerate(record["rounds"]))
            self.progress = (0, total)
            for past in record["rounds"]:
                self.strokes, self.stroke_frame = list(past["strokes"]), past["frame"]
                self._round()
            history = record.get("history") or []
            with self.lock:
                self.history = history if len(history) == len(self.history) else self.history
                self.recommended = record.get("recommended", self.recommended)
                self.strokes, self.stroke_frame = list(record["strokes"]), record["stroke_frame"]
                self.redo = list(record.get("redo", []))
                self.cleared, self.cleared_frame = list(record.get("cleared", [])), record.get("cleared_frame")
                self.preview_stamp += 1
                clock = record["clock"]
                self.clock.scribble, self.clock.operate = list(clock["scribble"]), list(clock["operate"])
                self.clock.finding = list(clock["finding"])
                self.clock.start = None if clock["elapsed"] is None else self.time() - clock["elapsed"]
            if self.strokes:
                self.preview_blocking(self.preview_stamp)
        finally:
            self.restoring = False

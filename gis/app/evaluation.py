"""The real-world evaluation's bookkeeping: which sequences are left, the round timing and the CSV.

The CSV is the reference GUI's (`Davis_Interactive_Evaluator.write_in_csv`): one row per object with
`sequence, obj_id, N_rounds, final_J, final_F, scribble_time, operation_time, finding_time,
total_time`. Times are seconds since the first stroke on the sequence, recorded per round as

* scribble step: the user presses Run (scribbling of that round is over);
* operate step: the round's masks are ready (model time);
* finding step: the user has chosen the next frame to annotate (an RS4 candidate, "Annotate this
  frame", or simply the first stroke of the next round), or pressed Satisfied;

and summed as `scribble = sum(scribble_i - finding_{i-1})` (finding_0 = 0), `operation =
sum(operate_i - scribble_i)`, `finding = sum(finding_i - operate_i)`, `total = finding_last`.
"""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Set

import numpy as np

from common.evaluation.metrics import batched_f_measure, batched_jaccard

CSV_HEADER = ["sequence", "obj_id", "N_rounds", "final_J", "final_F", "scribble_time", "operation_time",
              "finding_time", "total_time"]


@dataclass
class RoundClock:
    """Time steps of one sequence, in seconds since its first stroke (`clock` is injectable for tests)."""
    clock: Callable[[], float] = time.monotonic
    start: Optional[float] = None
    scribble: List[float] = field(default_factory=list)
    operate: List[float] = field(default_factory=list)
    finding: List[float] = field(default_factory=list)

    def _now(self) -> float:
        assert self.start is not None, "the clock starts with the first stroke"
        return self.clock() - self.start

    def stroke_started(self, seconds_ago: float = 0.0) -> None:
        """A stroke began `seconds_ago`: starts the clock on the first one and ends a pending finding step."""
        if self.start is None:
            self.start = self.clock() - max(0.0, seconds_ago)
        self.end_finding()

    def run_pressed(self) -> None:
        self.scribble.append(self._now())

    def masks_ready(self) -> None:
        self.operate.append(self._now())

    def run_failed(self) -> None:
        """A round that did not produce masks is not a round: forget its scribble step."""
        if len(self.scribble) > len(self.operate):
            self.scribble.pop()

    def end_finding(self) -> None:
        """Record the finding step of the last round, once."""
        if len(self.finding) == len(self.operate) - 1:
            self.finding.append(self._now())

    @property
    def finding_pending(self) -> bool:
        return len(self.finding) == len(self.operate) - 1

    def totals(self) -> dict:
        """write_in_csv's sums over all rounds."""
        scribble, operate, finding = map(np.array, (self.scribble, self.operate, self.finding))
        before = np.concatenate([[0.0], finding[:-1]])
        return {"scribble_time": float(np.sum(scribble - before)), "operation_time": float(np.sum(operate - scribble)),
                "finding_time": float(np.sum(finding - operate)), "total_time": float(finding[-1])}


def object_scores(gt: np.ndarray, masks: np.ndarray, n_objects: int) -> dict:
    """Per-object J and F averaged over the frames (davisinteractive's batched metrics, as `common.evaluation.metrics`
    computes them), and their means."""
    j = batched_jaccard(gt, masks, average_over_objects=False, nb_objects=n_objects).mean(axis=0)
    f = batched_f_measure(gt, masks, average_over_objects=False, nb_objects=n_objects).mean(axis=0)
    return {"J": [float(v) for v in j], "F": [float(v) for v in f], "mean_J": float(j.mean()),
            "mean_F": float(f.mean()), "mean_JF": float((j.mean() + f.mean()) / 2)}


class ResultsFolder:
    """`<root>/<algorithm>_<timestamp>/result_<user>.csv`; resumes the newest such folder of the same
    algorithm that already has this user's CSV or unfinished work (`sessions_<user>/`), so sequences
    written there are skipped and the work comes back."""

    def __init__(self, root: Path, algorithm: str, user: str, fresh: bool = False):
        self.algorithm, self.user = algorithm, user
        # A folder with this user's CSV, or with work of theirs not finished yet (saved by the app's tabs).
        existing = sorted({p.parent for p in Path(root).glob(f"{algorithm}_*/result_{user}.csv")}
                          | {p.parent.parent for p in Path(root).glob(f"{algorithm}_*/sessions_{user}/*.json")})
        if existing and not fresh:
            self.csv_path = existing[-1] / f"result_{user}.csv"
        else:
            stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
            self.csv_path = Path(root) / f"{algorithm}_{stamp}" / f"result_{user}.csv"
        self.folder = self.csv_path.parent
        self.sessions_dir = self.folder / f"sessions_{user}"
        self.resumed = self.csv_path.is_file() or self.sessions_dir.is_dir()

    def done_sequences(self) -> Set[str]:
        if not self.csv_path.is_file():
            return set()
        with open(self.csv_path, newline="") as fp:
            return {row["sequence"] for row in csv.DictReader(fp)}

    def append(self, sequence: str, n_rounds: int, scores: dict, times: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        new = not self.csv_path.is_file()
        with open(self.csv_path, "a", newline="") as fp:
            writer = csv.writer(fp)
            if new:
                writer.writerow(CSV_HEADER)
            for obj, (j, f) in enumerate(zip(scores["J"], scores["F"]), start=1):
                writer.writerow([sequence, obj, n_rounds, j, f, times["scribble_time"], times["operation_time"],
                                 times["finding_time"], times["total_time"]])

    def summary(self) -> List[dict]:
        """Per sequence of the CSV: rounds, mean J and F over its objects and total time (the final screen)."""
        if not self.csv_path.is_file():
            return []
        with open(self.csv_path, newline="") as fp:
            rows = list(csv.DictReader(fp))
        out = []
        for name in sorted({r["sequence"] for r in rows}):
            mine = [r for r in rows if r["sequence"] == name]
            j = float(np.mean([float(r["final_J"]) for r in mine]))
            f = float(np.mean([float(r["final_F"]) for r in mine]))
            out.append({"sequence": name, "objects": len(mine), "rounds": int(mine[0]["N_rounds"]), "J": j, "F": f,
                        "JF": (j + f) / 2, "total_time": float(mine[0]["total_time"])})
        return out

    def masks_dir(self, sequence: str) -> Path:
        return self.folder / "masks" / sequence


def remaining(sequences: Sequence[str], done: Set[str]) -> List[str]:
    return [s for s in sorted(sequences) if s not in done]

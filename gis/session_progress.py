"""Resuming an interrupted DAVIS interactive session, sequence by sequence.

A davisinteractive session cannot be reopened, but in local mode its report is a table of rows
(sequence, scribble, interaction, object, frame, J, F, timing). Each time all samples of a sequence
are done, their rows are appended to `finished_report.csv` and the sequence to `progress.json`
(with the settings of the run). A rerun with the same settings puts those rows back into the new
session's report, runs only the remaining samples, and the summary (AUC, J&F@60 s, the curve) then
covers all of them, with the timings measured when each sequence ran.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pandas as pd

from common.data.output_folder import write_text_atomic

PROGRESS = "progress.json"
FINISHED_REPORT = "finished_report.csv"
SUMMARY_CSV = "summary_in_csv.csv"


class SessionProgress:
    """The finished sequences of one result folder (`<name>.partial` while the session runs)."""

    def __init__(self, out_dir: Path, settings: Dict[str, Any]):
        self.out_dir = Path(out_dir)
        self.settings = settings
        self.finished: List[str] = []

    # -- reading a previous run -----------------------------------------------------------------
    def resume(self) -> Optional[pd.DataFrame]:
        """The report rows of the sequences a previous run with the same settings finished (None when
        there is nothing to resume); `finished` lists those sequences afterwards."""
        path = self.out_dir / PROGRESS
        if not path.is_file():
            return None
        try:
            saved = json.loads(path.read_text())
        except ValueError:
            return None
        if saved.get("settings") != self.settings or not saved.get("finished"):
            return None
        self.finished = list(saved["finished"])
        rows = pd.read_csv(self.out_dir / FINISHED_REPORT, dtype={"sequence": str, "session_id": str})
        return rows[rows["sequence"].isin(self.finished)].reset_index(drop=True)

    def keep_finished_summary_rows(self, header: Sequence[str]) -> None:
        """Rewrite the per-object CSV with its header and the rows of the finished sequences only."""
        path = self.out_dir / SUMMARY_CSV
        rows: List[List[str]] = []
        if path.is_file():
            with open(path, newline="") as fp:
                rows = [r for r in list(csv.reader(fp))[1:] if r and r[0] in self.finished]
        with open(path, "w", newline="") as fp:
            writer = csv.writer(fp)
            writer.writerow(header)
            writer.writerows(rows)

    # -- recording this run ---------------------------------------------------------------------
    def start_fresh(self) -> None:
        self.finished = []
        (self.out_dir / FINISHED_REPORT).unlink(missing_ok=True)
        self._write()

    def mark_finished(self, sequence: str, report: pd.DataFrame) -> None:
        rows = report[report["sequence"] == sequence]
        path = self.out_dir / FINISHED_REPORT
        rows.to_csv(path, mode="a", header=not path.is_file(), index=False)
        self.finished.append(sequence)
        self._write()

    def _write(self) -> None:
        write_text_atomic(self.out_dir / PROGRESS, json.dumps({"settings": self.settings, "finished": self.finished},
                                                                indent=1))


def remaining_samples(samples: Sequence[Tuple[str, int]], finished: Sequence[str]) -> List[Tuple[str, int]]:
    done = set(finished)
    return [s for s in samples if s[0] not in done]

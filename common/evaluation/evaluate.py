"""DAVIS semi-supervised evaluation (J&F tables), the protocol of davis2017-evaluation, only faster.

    python -m common.evaluation.evaluate --davis ROOT --results DIR --set val --year 2017 [--workers N] [--csv-dir DIR]

``results/<sequence>/<frame>.png`` holds the label maps of a method (palette or grayscale PNGs,
object ids 1..N). The numbers, the two CSVs and the printed tables are those of the official
``evaluation_method.py --task semi-supervised`` (checked against ``shared/parity/metrics``):

* the first and the last frame of every sequence are not scored (their PNGs are not even read);
* void (255) in the ground truth becomes background; the objects of a sequence are ids
  1..max(GT of frame 0) -- an id missing from frame 0 below that maximum is still an object, one
  above it that enters later is ignored;
* ids the prediction never paints are padded with empty masks (J = F = 0 where the GT has them);
* a prediction id above the number of GT objects aborts the evaluation;
* global numbers average over all (sequence, object) pairs.
* DAVIS 2016 (``year=2016``): the 2017 tree read through ``ImageSets/2016``, ground truth
  binarised (ids 1..254 -> 1, void -> 0) and every non-zero predicted label counted as the object.

Where we differ from the official script, on purpose:

* a prediction id above the number of objects, a missing results folder or frame, an unexpected
  extra frame, a corrupt or multi-channel PNG and a size mismatch all raise one `UserError`
  naming the path; the CLI then exits non-zero and writes no CSV (the official script prints a
  line and exits 0 for the extra id, and crashes for the rest);
* CSVs are always recomputed (the official script silently re-reads CSVs it finds in the
  results folder) and written atomically (temporary file + rename), by default next to the
  results as the official script does, or into ``--csv-dir``.

Speed: per-frame scores are vectorised (`common.evaluation.metrics`) and sequences are scored by a pool of
``workers`` processes (default ``min(cpu_count, 8)``; ``workers=1`` runs in-process).
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from common.data.output_folder import write_temp
from common.data.palette import VOID_LABEL
from common.data.paths import PathLike
from common.evaluation import metrics
from common.evaluation.workers import default_workers, map_in_workers
from common.runtime.errors import UserError, on_interrupt, run_cli

GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
PER_SEQUENCE_COLUMNS = ("Sequence", "J-Mean", "F-Mean")


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ObjectScores:
    """Scores of one object of one sequence: a row of the per-sequence table."""

    name: str  # "<sequence>_<k>", as in the official tables
    sequence: str
    object_id: int
    j: np.ndarray  # float64 [T - 2] per scored frame (frames 1 .. T-2)
    f: np.ndarray
    stats: Dict[str, float]  # J-Mean, J-Recall, J-Decay, F-Mean, F-Recall, F-Decay

    @property
    def n_frames(self) -> int:
        return len(self.j)


@dataclass
class EvalResult:
    """What `evaluate` returns: the global row, one `ObjectScores` per (sequence, object)."""

    split: str
    year: int
    global_row: Dict[str, float]
    per_object: List[ObjectScores] = field(default_factory=list)

    def per_object_rows(self) -> List[Dict[str, Union[str, float]]]:
        """Rows of the per-sequence table with every statistic: {'Sequence': 'bear_1', 'J-Mean': ...}."""
        return [{"Sequence": o.name, **o.stats} for o in self.per_object]

    def format_table(self) -> str:
        """The two tables as the official script prints them (pandas ``to_string``, six decimals)."""
        global_text = _to_string(list(GLOBAL_COLUMNS), [[self.global_row[c] for c in GLOBAL_COLUMNS]])
        seq_text = _to_string(list(PER_SEQUENCE_COLUMNS),
                              [[o.name, o.stats["J-Mean"], o.stats["F-Mean"]] for o in self.per_object])
        return (f"--------------------------- Global results for {self.split} ---------------------------\n"
                f"{global_text}\n"
                f"\n---------- Per sequence results for {self.split} ----------\n"
                f"{seq_text}\n")

    def csv_texts(self) -> Tuple[str, str]:
        """(global, per-sequence) CSV contents exactly as the official script writes them."""
        global_csv = _to_csv(list(GLOBAL_COLUMNS), [[self.global_row[c] for c in GLOBAL_COLUMNS]])
        seq_csv = _to_csv(list(PER_SEQUENCE_COLUMNS),
                          [[o.name, o.stats["J-Mean"], o.stats["F-Mean"]] for o in self.per_object])
        return global_csv, seq_csv

    def csv_names(self) -> Tuple[str, str]:
        return f"global_results-{self.split}.csv", f"per-sequence_results-{self.split}.csv"

    def write_csvs(self, out_dir: PathLike) -> Tuple[Path, Path]:
        """Write ``global_results-<set>.csv`` and ``per-sequence_results-<set>.csv`` into `out_dir`.

        Both files are first written completely to temporary files in the same folder and then
        renamed into place, so a reader never sees a partial CSV and a failed write leaves any
        previous CSVs untouched.
        """
        out_dir = Path(out_dir)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create the CSV folder {out_dir}: {err.strerror}") from None
        paths = tuple(out_dir / name for name in self.csv_names())
        temps: List[Path] = []
        try:
            for path, text in zip(paths, self.csv_texts()):
                temps.append(write_temp(path, text))
            for temp, path in zip(temps, paths):
                os.replace(temp, path)
        except OSError as err:
            raise UserError(f"cannot write the CSVs into {out_dir}: {err.strerror or err}") from None
        finally:
            for temp in temps:
                temp.unlink(missing_ok=True)
        return paths  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# The protocol
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _SequenceJob:
    """Everything a worker needs to score one sequence (picklable, paths only)."""

    name: str
    gt_paths: Tuple[Path, ...]
    result_dir: Path
    binarize: bool  # DAVIS 2016
    bound_th: float


def evaluate(davis_root: PathLike, results_dir: PathLike, split: str = "val", year: int = 2017, *,
             workers: Optional[int] = None, bound_th: float = metrics.BOUND_TH,
             decay_uint8_quirk: bool = True, progress: bool = True) -> EvalResult:
    """Score `results_dir` against DAVIS `year`/`split` ground truth; see the module docstring.

    ``decay_uint8_quirk`` (default on, as the official code) keeps the Decay bin boundaries in uint8,
    which makes Decay NaN for sequences with 256 or more scored frames (not the case in DAVIS).
    """
    results_dir = Path(results_dir)
    sequences = _list_sequences(davis_root, split, year)
    if not results_dir.is_dir():
        raise UserError(f"results folder not found: {results_dir}; it should hold one folder of PNG masks per "
                        f"sequence (<results>/<sequence>/00000.png ...)")
    jobs = [_SequenceJob(name, tuple(gt_paths), results_dir / name, int(year) == 2016, bound_th)
            for name, gt_paths in sequences]
    scored = _run_jobs(jobs, default_workers() if workers is None else workers, progress)

    per_object: List[ObjectScores] = []
    for (name, _), (j, f) in zip(sequences, scored):
        for col in range(j.shape[1]):
            jm, jr, jd = metrics.mean_recall_decay(j[:, col], decay_uint8_quirk)
            fm, fr, fd = metrics.mean_recall_decay(f[:, col], decay_uint8_quirk)
            stats = {"J-Mean": jm, "J-Recall": jr, "J-Decay": jd, "F-Mean": fm, "F-Recall": fr, "F-Decay": fd}
            per_object.append(ObjectScores(f"{name}_{col + 1}", name, col + 1, j[:, col], f[:, col], stats))
    if not per_object:
        raise UserError(f"no object to score: the frame-0 ground truth of every sequence in {split} is empty")

    def average(key: str) -> float:
        return float(np.mean([o.stats[key] for o in per_object]))

    row = {key: average(key) for key in GLOBAL_COLUMNS[1:]}
    global_row = {"J&F-Mean": (row["J-Mean"] + row["F-Mean"]) / 2.0, **row}
    return EvalResult(split=split, year=int(year), global_row=global_row, per_object=per_object)


def _list_sequences(davis_root: PathLike, split: str, year: int) -> List[Tuple[str, List[Path]]]:
    """(name, GT PNG of every frame) per sequence, in the order of the ImageSets file.

    The layout is checked by `common.data.datasets.DAVIS`; the order is the file's own, because the
    official evaluation keeps it for its per-sequence table (the loader sorts names for inference).
    """
    from common.data.datasets import DAVIS

    dataset = DAVIS(davis_root, year=year, split=split)
    if split == "test-dev":
        raise UserError("DAVIS test-dev has no public ground truth beyond frame 0; submit test-dev results to the "
                        "DAVIS challenge server instead")
    list_path = Path(davis_root) / "ImageSets" / str(year) / f"{split}.txt"
    names: List[str] = []
    for line in list_path.read_text().splitlines():
        if line.strip() and line.strip() not in names:
            names.append(line.strip())
    out = []
    for name in names:
        video = dataset.video(name)
        assert video.gt_paths is not None  # train/val: checked by the loader
        if len(video.gt_paths) < 3:
            raise UserError(f"sequence {name} has {len(video.gt_paths)} frames in {video.gt_paths[0].parent}; the "
                            f"semi-supervised protocol skips the first and last frame, so it needs at least 3")
        out.append((name, list(video.gt_paths)))
    return out


def _run_jobs(jobs: Sequence[_SequenceJob], workers: int, progress: bool) -> List[Tuple[np.ndarray, np.ndarray]]:
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    return map_in_workers(score_sequence, jobs, workers, desc="J&F", unit="seq", progress=progress)


def score_sequence(job: _SequenceJob) -> Tuple[np.ndarray, np.ndarray]:
    """Per-frame (J, F), each float64 [T - 2, K], of one sequence under the semi-supervised protocol."""
    from common.data.palette import read_label_png

    scored = job.gt_paths[1:-1]
    gt0 = _ground_truth(read_label_png(job.gt_paths[0]), job.binarize)
    n_objects = int(gt0.max())
    gt = np.stack([_ground_truth(read_label_png(p), job.binarize) for p in scored])
    shape = gt0.shape
    if gt.shape[1:] != shape:
        raise UserError(f"ground truth of {job.name} changes size within the sequence ({job.gt_paths[0]})")

    pred_paths = _result_paths(job)
    pred = np.empty_like(gt)
    for i, path in enumerate(pred_paths):
        labels = read_label_png(path)
        if labels.shape != shape:
            raise UserError(f"result {path} is {labels.shape[1]}x{labels.shape[0]} but the ground truth is "
                            f"{shape[1]}x{shape[0]}; write masks at the dataset's resolution")
        if job.binarize:
            labels = (labels != 0).astype(np.uint8)
        pred[i] = labels
        if labels.max() > n_objects:
            raise UserError(
                f"result {path} contains object id {int(labels.max())} but sequence {job.name} has only {n_objects} "
                f"object(s) in its frame-0 ground truth {job.gt_paths[0]}; the official davis2017-evaluation "
                f"refuses such results too ('an index higher than the number of objects') and writes no CSV")
    return metrics.object_scores(gt, pred, range(1, n_objects + 1), job.bound_th)


def _ground_truth(labels: np.ndarray, binarize: bool) -> np.ndarray:
    """Void (255) -> background; DAVIS 2016: every object -> 1."""
    labels = np.array(labels, dtype=np.uint8)  # a copy: the caller's array stays as read
    labels[labels == VOID_LABEL] = 0
    return (labels != 0).astype(np.uint8) if binarize else labels


def _result_paths(job: _SequenceJob) -> List[Path]:
    """The result PNGs of the scored frames; a missing folder or frame or an extra frame is an error."""
    folder = job.result_dir
    if not folder.is_dir():
        raise UserError(f"results for sequence {job.name} not found: {folder} is missing; write one PNG per frame "
                        f"into <results>/{job.name}/")
    expected = [p.stem for p in job.gt_paths]
    present = {name[:-4] for name in os.listdir(folder) if name.endswith(".png") and not name.startswith(".")}
    extra = sorted(present - set(expected))
    if extra:
        raise UserError(f"wrong frame count in {folder}: {len(present)} PNGs for a sequence of {len(expected)} frames "
                        f"({expected[0]}.png .. {expected[-1]}.png); unexpected {folder / (extra[0] + '.png')}")
    missing = [name for name in expected[1:-1] if name not in present]
    if missing:
        raise UserError(f"result frame {folder / (missing[0] + '.png')} is missing ({len(missing)} of the "
                        f"{len(expected) - 2} scored frames of {job.name} are missing; every frame except the "
                        f"first and the last is scored)")
    return [folder / f"{name}.png" for name in expected[1:-1]]


# ---------------------------------------------------------------------------------------------
# Output formats of the official script (pandas to_csv / to_string, reproduced without pandas)
# ---------------------------------------------------------------------------------------------

def _to_csv(columns: List[str], rows: List[list]) -> str:
    """``DataFrame.to_csv(index=False, float_format='%.3f')``: NaN is an empty field."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(v) for v in row])
    return buffer.getvalue()


def _csv_cell(value) -> str:
    if isinstance(value, str):
        return value
    return "" if np.isnan(value) else "%.3f" % value


_NUMBER_WITH_DECIMAL = re.compile(r"^\s*[\+-]?[0-9]+\.[0-9]*$")


def _format_float_column(values: Sequence[float], digits: int = 6) -> List[str]:
    """pandas' float column formatting at display precision 6, without the index's leading space."""
    array = np.asarray(values, dtype=np.float64)

    def fmt(spec: str) -> List[str]:
        return ["NaN" if np.isnan(v) else format(float(v), spec) for v in array]

    texts = fmt(f".{digits}f")
    magnitudes = np.abs(array[~np.isnan(array)])
    too_long = max((len(t) for t in texts), default=0) > digits + 6
    has_small = bool(((magnitudes < 10 ** -digits) & (magnitudes > 0)).any())
    has_large = bool((magnitudes > 1e6).any())
    if has_small or (too_long and has_large):
        texts = fmt(f".{digits}e")
    # Trim trailing zeros equally from all numbers, keeping one digit after the point.
    while True:
        numbers = [t for t in texts if _NUMBER_WITH_DECIMAL.match(t)]
        if not numbers or not all(t.endswith("0") for t in numbers):
            break
        texts = [t[:-1] if _NUMBER_WITH_DECIMAL.match(t) else t for t in texts]
    return [t + "0" if _NUMBER_WITH_DECIMAL.match(t) and t.endswith(".") else t for t in texts]


def _to_string(columns: List[str], rows: List[list]) -> str:
    """``DataFrame.to_string(index=False)`` for string and float columns."""
    blocks = []
    for c, name in enumerate(columns):
        values = [row[c] for row in rows]
        numeric = not any(isinstance(v, str) for v in values)
        header = " " + name if numeric else name  # pandas leaves room for a sign above numbers
        cells = _format_float_column(values) if numeric else [str(v) for v in values]
        width = max([len(header)] + [len(s) for s in cells])
        blocks.append([header.rjust(width)] + [s.rjust(width) for s in cells])
    return "\n".join(" ".join(block[i] for block in blocks) for i in range(len(rows) + 1))


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m common.evaluation.evaluate",
        description="J&F of DAVIS semi-supervised results, as davis2017-evaluation computes them.")
    parser.add_argument("--davis", required=True, help="DAVIS root (JPEGImages/, Annotations/, ImageSets/)")
    parser.add_argument("--results", required=True, help="folder with <sequence>/<frame>.png label maps")
    parser.add_argument("--set", default="val", choices=("train", "val"), help="split to score (default val)")
    parser.add_argument("--year", type=int, default=2017, choices=(2016, 2017), help="DAVIS year (default 2017)")
    parser.add_argument("--workers", type=int, default=None,
                        help=f"processes scoring sequences in parallel (default min(cpu_count, 8) = "
                             f"{default_workers()}; 1 = in-process)")
    parser.add_argument("--csv-dir", default=None,
                        help="where to write the two CSVs (default: the results folder, like the official script)")
    args = parser.parse_args(argv)

    on_interrupt("nothing was written; a rerun scores every sequence again")
    print(f"Evaluating sequences for the semi-supervised task (DAVIS {args.year} {args.set})...")
    result = evaluate(args.davis, args.results, split=args.set, year=args.year, workers=args.workers)
    global_path, seq_path = result.write_csvs(args.csv_dir if args.csv_dir else args.results)
    print(f"Global results saved in {global_path}")
    print(f"Per-sequence results saved in {seq_path}")
    sys.stdout.write(result.format_table())
    return 0


if __name__ == "__main__":
    # Run the imported module, not __main__, so that worker processes unpickle common.evaluation.evaluate's jobs.
    from common.evaluation.evaluate import main as _main

    run_cli(_main)

"""How close are two result folders? Per sequence and object, the IoU between our masks and the authors'.

    python -m common.evaluation.agree --ours DIR --theirs DIR [--davis ROOT --set val --year 2017] [--csv-dir DIR]
        [--binary] [--worst N]

Both folders hold `<sequence>/<frame>.png` label maps. Only label indices count: palette colours and
PNG bit depth (4-bit or 8-bit palette, grayscale, copied palettes) do not. Per (sequence, object) the
IoU is pooled over the sequence's frames (sum of intersections / sum of unions), so a frame where
both sides leave the object out neither helps nor hurts. Per sequence: the share of pixels with the same
label and of frames that are bit-identical (same labels everywhere). The summary gives the mean IoU over
all (sequence, object) pairs, the share of identical frames and pixels, and the worst sequences.

`--binary` compares object/background only (every non-zero label is the object): DAVIS 2016, and
binary masks saved as 0/255 or 1-bit. It is on by itself with `--year 2016`. With `--davis`, both
folders are also scored with `common.evaluation.evaluate` and their J&F printed side by side.

The two folders must hold the same sequences and, per sequence, the same frame files; that is checked
before anything is read. The CSV (`agreement.csv`, one row per sequence and object) is written
atomically into `--csv-dir` (default: the `--ours` folder, as `common.evaluation.evaluate` does).
"""
from __future__ import annotations

import argparse
import csv
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from common.data.output_folder import write_text_atomic
from common.data.palette import read_label_png
from common.data.paths import PathLike
from common.runtime.errors import UserError, run_cli

CSV_NAME = "agreement.csv"
CSV_COLUMNS = ("sequence", "object", "frames", "iou", "identical_frames", "identical_pixels")


@dataclass(frozen=True)
class ObjectAgreement:
    object_id: int
    intersection: int   # pixels, summed over the frames
    union: int

    @property
    def iou(self) -> float:
        return self.intersection / self.union


@dataclass(frozen=True)
class SequenceAgreement:
    name: str
    frames: int
    identical_frames: int
    pixels: int
    identical_pixels: int
    objects: Tuple[ObjectAgreement, ...]

    @property
    def mean_iou(self) -> float:
        """Mean IoU over the sequence's objects; 1.0 when neither side paints any object."""
        return float(np.mean([o.iou for o in self.objects])) if self.objects else 1.0


@dataclass
class Agreement:
    ours: Path
    theirs: Path
    sequences: List[SequenceAgreement]
    jf: Dict[str, Tuple[float, float]] = field(default_factory=dict)  # 'J&F-Mean' -> (ours, theirs), in [0, 1]
    jf_per_sequence: Dict[str, Tuple[float, float]] = field(default_factory=dict)

    @property
    def objects(self) -> List[Tuple[str, ObjectAgreement]]:
        return [(s.name, o) for s in self.sequences for o in s.objects]

    @property
    def mean_iou(self) -> float:
        """Mean over all (sequence, object) pairs; 1.0 when neither side paints any object anywhere."""
        return float(np.mean([o.iou for _, o in self.objects])) if self.objects else 1.0

    @property
    def identical_frame_share(self) -> float:
        return sum(s.identical_frames for s in self.sequences) / sum(s.frames for s in self.sequences)

    @property
    def identical_pixel_share(self) -> float:
        return sum(s.identical_pixels for s in self.sequences) / sum(s.pixels for s in self.sequences)

    def worst(self, n: int) -> List[SequenceAgreement]:
        """The `n` sequences with the lowest mean IoU that are not bit-identical, worst first."""
        differing = [s for s in self.sequences if s.identical_frames < s.frames]
        return sorted(differing, key=lambda s: (s.mean_iou, s.name))[:n]

    def csv_text(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for s in self.sequences:
            for o in s.objects:
                writer.writerow([s.name, o.object_id, s.frames, f"{o.iou:.6f}", s.identical_frames,
                                 f"{s.identical_pixels / s.pixels:.6f}"])
        return buffer.getvalue()

    def format_table(self, worst: int = 5) -> str:
        with_jf = bool(self.jf_per_sequence)
        header = f"{'sequence':<24}{'objects':>8}{'IoU':>8}{'same px':>10}{'same frames':>13}"
        header += f"{'J&F ours':>10}{'J&F theirs':>12}" if with_jf else ""
        lines = [header]
        for s in self.sequences:
            line = (f"{s.name:<24}{len(s.objects):>8}{s.mean_iou:>8.4f}{100 * s.identical_pixels / s.pixels:>9.2f}%"
                    f"{f'{s.identical_frames}/{s.frames}':>13}")
            if with_jf:
                ours, theirs = self.jf_per_sequence.get(s.name, (float("nan"), float("nan")))
                line += f"{100 * ours:>10.1f}{100 * theirs:>12.1f}"
            lines.append(line)
        n_frames = sum(s.frames for s in self.sequences)
        n_same = sum(s.identical_frames for s in self.sequences)
        lines += ["", f"summary: {len(self.objects)} objects in {len(self.sequences)} sequences; "
                      f"mean IoU {self.mean_iou:.4f}; bit-identical frames {n_same}/{n_frames} "
                      f"({100 * self.identical_frame_share:.1f}%); identical pixels "
                      f"{100 * self.identical_pixel_share:.2f}%"]
        bad = self.worst(worst)
        lines.append("worst sequences: " + (", ".join(f"{s.name} (IoU {s.mean_iou:.4f}, "
                                                       f"{s.identical_frames}/{s.frames} frames identical)"
                                                       for s in bad) if bad else "none, every frame is identical"))
        for key, (ours, theirs) in self.jf.items():
            lines.append(f"{key}: ours {100 * ours:.1f}, theirs {100 * theirs:.1f} "
                         f"(ours - theirs {100 * (ours - theirs):+.1f})")
        return "\n".join(lines)

    def write_csv(self, out_dir: PathLike) -> Path:
        out_dir = Path(out_dir)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(out_dir / CSV_NAME, self.csv_text())
        except OSError as err:
            raise UserError(f"cannot write {CSV_NAME} into {out_dir}: {err.strerror or err}") from None
        return out_dir / CSV_NAME


# ----------------------------------------------------------------------------------------- pairing

def pair_frames(ours: Path, theirs: Path, only: Optional[Sequence[str]] = None
                ) -> List[Tuple[str, List[Tuple[Path, Path]]]]:
    """(sequence, [(our frame, their frame), ...]) for every sequence (of `only`, when given), after checking
    that both folders hold the same sequences and frame files; one UserError naming the first difference."""
    for folder, flag in ((ours, "--ours"), (theirs, "--theirs")):
        if not folder.is_dir():
            raise UserError(f"{flag} folder not found: {folder}; it should hold <sequence>/<frame>.png label maps")
    ours_seqs = _sequences(ours, "--ours")
    theirs_seqs = _sequences(theirs, "--theirs")
    if only is not None:  # just these sequences: each must be on both sides, any others are left alone
        for flag, names, folder in (("--ours", ours_seqs, ours), ("--theirs", theirs_seqs, theirs)):
            absent = sorted(set(only) - set(names))
            if absent:
                raise UserError(f"sequence {absent[0]} is not in {flag} ({folder}){_more(absent)}; both folders "
                                f"must hold every sequence of the set")
        ours_seqs = theirs_seqs = list(only)
    _same_names(ours_seqs, theirs_seqs, "sequence", ours, theirs)
    pairs = []
    for name in sorted(ours_seqs):
        ours_frames = _pngs(ours / name)
        theirs_frames = _pngs(theirs / name)
        _same_names(ours_frames, theirs_frames, f"frame of sequence {name}:", ours / name, theirs / name)
        if not ours_frames:
            raise UserError(f"sequence {name} holds no PNG masks in --ours ({ours / name}) nor in --theirs "
                            f"({theirs / name}); remove the empty folders or finish the run")
        pairs.append((name, [(ours / name / f, theirs / name / f) for f in sorted(ours_frames)]))
    return pairs


def _sequences(folder: Path, flag: str) -> List[str]:
    names = [p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))]
    if not names:
        raise UserError(f"{flag} folder {folder} holds no sequence folders; it should hold "
                        f"<sequence>/<frame>.png label maps")
    return names


def _pngs(folder: Path) -> List[str]:
    return [p.name for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file()]


def _same_names(ours: Sequence[str], theirs: Sequence[str], what: str, ours_dir: Path, theirs_dir: Path) -> None:
    only_ours = sorted(set(ours) - set(theirs))
    only_theirs = sorted(set(theirs) - set(ours))
    if only_theirs:
        raise UserError(f"{what} {only_theirs[0]} is in --theirs ({theirs_dir}) but not in --ours ({ours_dir})"
                        f"{_more(only_theirs)}; compare folders of the same set, and finish our run first")
    if only_ours:
        raise UserError(f"{what} {only_ours[0]} is in --ours ({ours_dir}) but not in --theirs ({theirs_dir})"
                        f"{_more(only_ours)}; compare folders of the same set")


def _more(names: Sequence[str]) -> str:
    return f" (and {len(names) - 1} more)" if len(names) > 1 else ""


# ----------------------------------------------------------------------------------------- comparison

def compare_sequence(name: str, frames: Sequence[Tuple[Path, Path]], *, binary: bool = False) -> SequenceAgreement:
    """Pool, over the frames of one sequence, the per-label intersections and unions and the equal pixels."""
    inter = np.zeros(256, dtype=np.int64)
    union = np.zeros(256, dtype=np.int64)
    identical_frames = pixels = identical_pixels = 0
    for ours_path, theirs_path in frames:
        a = read_label_png(ours_path)
        b = read_label_png(theirs_path)
        if a.shape != b.shape:
            raise UserError(f"{ours_path} is {a.shape[1]}x{a.shape[0]} but {theirs_path} is "
                            f"{b.shape[1]}x{b.shape[0]}; both must be at the same resolution")
        if binary:
            a = (a > 0).astype(np.uint8)
            b = (b > 0).astype(np.uint8)
        same = a == b
        n_same = int(same.sum())
        both = np.bincount(a[same], minlength=256)
        inter += both
        union += np.bincount(a.ravel(), minlength=256) + np.bincount(b.ravel(), minlength=256) - both
        identical_frames += n_same == a.size
        pixels += a.size
        identical_pixels += n_same
    objects = tuple(ObjectAgreement(k, int(inter[k]), int(union[k])) for k in range(1, 256) if union[k] > 0)
    return SequenceAgreement(name, len(frames), identical_frames, pixels, identical_pixels, objects)


def compare(ours: PathLike, theirs: PathLike, *, binary: bool = False, only: Optional[Sequence[str]] = None,
            progress: bool = False) -> Agreement:
    """The `Agreement` of two result folders (see the module docstring); `only`: just these sequences."""
    ours, theirs = Path(ours), Path(theirs)
    pairs = pair_frames(ours, theirs, only)
    if progress:
        from tqdm import tqdm
        pairs = tqdm(pairs, desc="comparing", unit="seq", file=sys.stderr)
    return Agreement(ours, theirs, [compare_sequence(name, frames, binary=binary) for name, frames in pairs])


def add_jf(agreement: Agreement, davis_root: PathLike, split: str, year: int) -> Agreement:
    """Score both folders with `common.evaluation.evaluate` and keep their J&F (global, and per sequence)."""
    from common.evaluation.evaluate import evaluate

    scores = [evaluate(davis_root, folder, split, year, progress=False)
              for folder in (agreement.ours, agreement.theirs)]
    for key in ("J&F-Mean", "J-Mean", "F-Mean"):
        agreement.jf[key] = (scores[0].global_row[key], scores[1].global_row[key])
    per_sequence = [_jf_per_sequence(result) for result in scores]
    agreement.jf_per_sequence = {name: (per_sequence[0][name], per_sequence[1].get(name, float("nan")))
                                 for name in per_sequence[0]}
    return agreement


def _jf_per_sequence(result) -> Dict[str, float]:
    """Mean over a sequence's objects of (J-Mean + F-Mean) / 2."""
    values: Dict[str, List[float]] = {}
    for o in result.per_object:
        values.setdefault(o.sequence, []).append((o.stats["J-Mean"] + o.stats["F-Mean"]) / 2)
    return {name: float(np.mean(v)) for name, v in values.items()}


# ----------------------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m common.evaluation.agree", description=__doc__.split("\n")[0])
    parser.add_argument("--ours", type=Path, required=True, help="our result folder (<sequence>/<frame>.png)")
    parser.add_argument("--theirs", type=Path, required=True, help="the authors' result folder, same layout")
    parser.add_argument("--davis", type=Path, default=None, help="DAVIS root: also score both folders (J&F)")
    parser.add_argument("--set", dest="split", default="val", help="DAVIS split for --davis (default: val)")
    parser.add_argument("--year", type=int, default=2017, choices=(2016, 2017), help="DAVIS year (default: 2017)")
    parser.add_argument("--binary", action="store_true", help="object vs background only (on with --year 2016)")
    parser.add_argument("--csv-dir", type=Path, default=None, help=f"where {CSV_NAME} goes (default: --ours)")
    parser.add_argument("--worst", type=int, default=5, help="how many of the worst sequences to name")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.davis is not None and not args.davis.is_dir():
        raise UserError(f"DAVIS root not found: {args.davis}")
    if args.davis is not None and args.split == "test-dev":
        raise UserError("DAVIS test-dev has no public ground truth to score; drop --davis to compare the masks only")
    agreement = compare(args.ours, args.theirs, binary=args.binary or args.year == 2016, progress=True)
    if args.davis is not None:
        add_jf(agreement, args.davis, args.split, args.year)
    csv_path = agreement.write_csv(args.csv_dir or args.ours)
    print(agreement.format_table(args.worst))
    print(f"per sequence and object: {csv_path}")
    return 0


if __name__ == "__main__":
    run_cli(main)

"""J&F parity with davis2017-evaluation and davisinteractive on `$PARITY_ROOT/metrics/<case>/`.

Every case folder is a DAVIS root with a `results/` folder and the official outputs in `expected/`;
each expected file has a checker below, and a file without one fails the case (a new kind of
expected output must get a checker, never be skipped).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import pytest

from common.data.palette import read_label_png
from common.evaluation import metrics
from common.evaluation.evaluate import EvalResult, evaluate
from common.runtime.errors import UserError
from tests.parity.harness import PARITY_ROOT, REPO_ROOT

METRICS_ROOT = PARITY_ROOT / "metrics"
CSV_TOLERANCE = 0.0005  # three printed decimals
FULL_TOLERANCE = 1e-12


def _case_dirs():
    if not METRICS_ROOT.is_dir():
        raise FileNotFoundError(f"metric fixtures not found at {METRICS_ROOT}; set $PARITY_ROOT")
    dirs = sorted(p for p in METRICS_ROOT.iterdir() if p.is_dir())
    if not dirs:
        raise FileNotFoundError(f"no case folders in {METRICS_ROOT}")
    return dirs


CASES = _case_dirs()


def _year(case: Path) -> int:
    return 2017 if (case / "ImageSets" / "2017" / "val.txt").is_file() else 2016


def _aborts(case: Path) -> bool:
    return bool(json.loads((case / "expected" / "official_full.json").read_text()).get("aborted", False))


_results: Dict[Path, EvalResult] = {}


def _evaluated(case: Path) -> EvalResult:
    if case not in _results:
        _results[case] = evaluate(case, case / "results", split="val", year=_year(case), workers=1, progress=False)
    return _results[case]


# ---------------------------------------------------------------------------------------------
# One checker per expected file.

def check_full_json(case: Path, expected_path: Path) -> None:
    expected = json.loads(expected_path.read_text())
    if expected.get("aborted"):
        with pytest.raises(UserError, match="higher than the number of objects"):
            _evaluated(case)
        assert expected["csv_written"] == []
        return
    result = _evaluated(case)
    assert [o.name for o in result.per_object] == expected["object_order"]
    for key, value in expected["global"].items():
        assert result.global_row[key] == pytest.approx(value, abs=FULL_TOLERANCE, rel=0), key
    for obj in result.per_object:
        want = expected["per_object"][obj.name]
        assert obj.n_frames == want["n_frames_evaluated"], obj.name
        for key, value in obj.stats.items():
            assert value == pytest.approx(want[key], abs=FULL_TOLERANCE, rel=0), f"{obj.name} {key}"


def _check_csv(case: Path, expected_path: Path, which: int) -> None:
    if _aborts(case):
        pytest.fail(f"{expected_path} exists but the case aborts; the official tool writes no CSV then")
    text = _evaluated(case).csv_texts()[which]
    expected = expected_path.read_text()
    ours_rows = [line.split(",") for line in text.splitlines()]
    want_rows = [line.split(",") for line in expected.splitlines()]
    assert len(ours_rows) == len(want_rows)
    assert ours_rows[0] == want_rows[0], "header"
    for ours, want in zip(ours_rows[1:], want_rows[1:]):
        assert len(ours) == len(want)
        for a, b in zip(ours, want):
            try:
                assert float(a) == pytest.approx(float(b), abs=CSV_TOLERANCE, rel=0), (ours, want)
            except ValueError:
                assert a == b  # the row name
    assert text == expected, "same values, but not byte-identical to the official CSV"


def check_global_csv(case: Path, expected_path: Path) -> None:
    _check_csv(case, expected_path, 0)


def check_per_sequence_csv(case: Path, expected_path: Path) -> None:
    _check_csv(case, expected_path, 1)


def check_stdout(case: Path, expected_path: Path) -> None:
    printed = expected_path.read_text()
    if _aborts(case):
        assert "index higher than the number of objects" in printed
        return  # covered by the JSON check and by test_abort_cli_writes_no_csv
    tables = printed[printed.index("--------------------------- Global results"):]
    assert _evaluated(case).format_table().rstrip("\n") == tables.rstrip("\n")


def check_per_frame(case: Path, expected_path: Path) -> None:
    expected = np.load(expected_path)
    result = _evaluated(case)
    keys = {f"{o.name}/{m}" for o in result.per_object for m in "JF"}
    assert keys == set(expected.files)
    for obj in result.per_object:
        # Ratios of integer pixel counts computed with the same operations: bit-identical.
        np.testing.assert_array_equal(obj.j, expected[f"{obj.name}/J"], err_msg=f"{obj.name} J")
        np.testing.assert_array_max_ulp(obj.f, expected[f"{obj.name}/F"], maxulp=1)


def _label_video(folder: Path) -> np.ndarray:
    return np.stack([read_label_png(p) for p in sorted(folder.glob("*.png"))]).astype(np.int64)


def check_davisinteractive(case: Path, expected_path: Path) -> None:
    expected = np.load(expected_path)
    meta = json.loads((case / "expected" / "davisinteractive_meta.json").read_text())
    assert {key.split("/")[0] for key in expected.files} == set(meta)
    for seq, info in meta.items():
        gt = _label_video(case / "Annotations" / "480p" / seq)
        pred = _label_video(case / "results" / seq)
        assert len(gt) == info["n_frames"]
        n = info["nb_objects"]
        ours = {
            "jaccard": metrics.batched_jaccard(gt, pred, average_over_objects=False, nb_objects=n),
            "f_measure": metrics.batched_f_measure(gt, pred, average_over_objects=False, nb_objects=n),
            "jaccard_inferred": metrics.batched_jaccard(gt, pred, average_over_objects=False),
            "f_measure_inferred": metrics.batched_f_measure(gt, pred, average_over_objects=False),
            "jaccard_avg": metrics.batched_jaccard(gt, pred, average_over_objects=True, nb_objects=n),
            "f_measure_avg": metrics.batched_f_measure(gt, pred, average_over_objects=True, nb_objects=n),
        }
        inferred = np.unique(gt[(gt > 0) & (gt < 255)])
        np.testing.assert_array_equal(inferred, expected[f"{seq}/inferred_ids"])
        assert inferred.tolist() == info["inferred_ids"]
        for key, value in ours.items():
            want = expected[f"{seq}/{key}"]
            assert value.shape == want.shape, f"{seq}/{key}"
            np.testing.assert_allclose(value, want, rtol=0, atol=FULL_TOLERANCE, err_msg=f"{seq}/{key}")


def check_davisinteractive_meta(case: Path, expected_path: Path) -> None:
    assert (case / "expected" / "davisinteractive.npz").is_file(), "meta without davisinteractive.npz"


CHECKERS: Dict[str, Callable[[Path, Path], None]] = {
    "official_full.json": check_full_json,
    "global_results-val.csv": check_global_csv,
    "per-sequence_results-val.csv": check_per_sequence_csv,
    "official_stdout.txt": check_stdout,
    "official_per_frame.npz": check_per_frame,
    "davisinteractive.npz": check_davisinteractive,
    "davisinteractive_meta.json": check_davisinteractive_meta,
}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_metric_case(case: Path) -> None:
    expected_files = sorted(p for p in (case / "expected").iterdir() if p.is_file())
    assert any(p.name == "official_full.json" for p in expected_files), f"{case} has no official_full.json"
    unknown = [p.name for p in expected_files if p.name not in CHECKERS]
    assert not unknown, f"expected files without a checker: {unknown}; add one to {__file__}"
    for path in expected_files:
        CHECKERS[path.name](case, path)


@pytest.mark.parametrize("case", [c for c in CASES if _aborts(c)], ids=lambda c: c.name)
def test_abort_cli_writes_no_csv(case: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "common.evaluation.evaluate", "--davis", str(case), "--results", str(case / "results"),
         "--year", str(_year(case)), "--workers", "1", "--csv-dir", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "higher than the number of objects" in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_davis2016_protocol_reproduces_binarised_case(tmp_path: Path) -> None:
    """`year=2016` on the multi-object tree = the official tool on the binarised tree."""
    source, binarised = METRICS_ROOT / "davis17", METRICS_ROOT / "davis16_binarised"
    if not (source.is_dir() and binarised.is_dir()):
        pytest.fail("needs the davis17 and davis16_binarised cases")
    for name in ("Annotations", "JPEGImages", "results"):
        (tmp_path / name).symlink_to(source / name)
    (tmp_path / "ImageSets" / "2016").mkdir(parents=True)
    (tmp_path / "ImageSets" / "2016" / "val.txt").write_text((source / "ImageSets" / "2017" / "val.txt").read_text())
    ours = evaluate(tmp_path, tmp_path / "results", split="val", year=2016, workers=1, progress=False)
    reference = _evaluated(binarised)
    assert ours.global_row == reference.global_row
    assert ours.per_object_rows() == reference.per_object_rows()

"""common.evaluation.evaluate end to end: CLI, CSVs, bad input, atomic writes, worker pool = in-process."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.data.palette import write_label_png
from common.data.synthetic import make_davis_sample
from common.evaluation import evaluate as evaluate_module
from common.evaluation.evaluate import EvalResult, ObjectScores, evaluate, main
from common.runtime.errors import UserError
from vos.bench_metrics import write_perturbed_results

REPO_ROOT = Path(__file__).resolve().parents[1]
N_FRAMES = 6


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """A tiny DAVIS tree (3 val sequences x 6 frames, 2 objects) with perturbed results."""
    base = tmp_path_factory.mktemp("eval")
    make_davis_sample(base / "DAVIS", seed=1, n_videos=3, n_frames=N_FRAMES, height=48, width=64, n_objects=2,
                      n_train=0, n_test_dev=0)
    write_perturbed_results(base / "DAVIS", base / "results", seed=1)
    return base


@pytest.fixture()
def copy(sample: Path, tmp_path: Path) -> Path:
    """A private copy of the sample that a test may break."""
    shutil.copytree(sample / "DAVIS", tmp_path / "DAVIS")
    shutil.copytree(sample / "results", tmp_path / "results")
    return tmp_path


@pytest.fixture(scope="module")
def reference(sample: Path) -> EvalResult:
    return evaluate(sample / "DAVIS", sample / "results", workers=1, progress=False)


def _first_sequence(root: Path) -> str:
    return (root / "DAVIS" / "ImageSets" / "2017" / "val.txt").read_text().split()[0]


def test_cli_end_to_end(sample: Path, reference: EvalResult, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "common.evaluation.evaluate", "--davis", str(sample / "DAVIS"), "--results",
         str(sample / "results"), "--set", "val", "--year", "2017", "--workers", "1", "--csv-dir", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert reference.format_table() in proc.stdout
    global_csv, seq_csv = reference.csv_texts()
    assert (tmp_path / "global_results-val.csv").read_text() == global_csv
    assert (tmp_path / "per-sequence_results-val.csv").read_text() == seq_csv
    assert sorted(p.name for p in tmp_path.iterdir()) == ["global_results-val.csv", "per-sequence_results-val.csv"]


def test_tables_have_official_shape(reference: EvalResult) -> None:
    global_csv, seq_csv = reference.csv_texts()
    assert global_csv.splitlines()[0] == "J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay"
    assert seq_csv.splitlines()[0] == "Sequence,J-Mean,F-Mean"
    assert len(seq_csv.splitlines()) == 1 + 3 * 2  # one row per (sequence, object)
    assert all(o.n_frames == N_FRAMES - 2 for o in reference.per_object)
    row = reference.global_row
    assert row["J&F-Mean"] == pytest.approx((row["J-Mean"] + row["F-Mean"]) / 2, abs=1e-15)
    assert 0.3 < row["J-Mean"] < 1.0 and 0.3 < row["F-Mean"] <= 1.0


def test_csvs_default_to_results_folder(copy: Path, reference: EvalResult) -> None:
    assert main(["--davis", str(copy / "DAVIS"), "--results", str(copy / "results"), "--workers", "1"]) == 0
    assert (copy / "results" / "global_results-val.csv").read_text() == reference.csv_texts()[0]


def test_workers_match_in_process(sample: Path, reference: EvalResult) -> None:
    pooled = evaluate(sample / "DAVIS", sample / "results", workers=2, progress=False)
    assert pooled.global_row == reference.global_row
    assert [o.name for o in pooled.per_object] == [o.name for o in reference.per_object]
    for a, b in zip(pooled.per_object, reference.per_object):
        np.testing.assert_array_equal(a.j, b.j)
        np.testing.assert_array_equal(a.f, b.f)
        assert a.stats == b.stats


def test_first_and_last_result_frames_are_not_needed(copy: Path, reference: EvalResult) -> None:
    for seq in (copy / "results").iterdir():
        (seq / "00000.png").unlink()
        (seq / f"{N_FRAMES - 1:05d}.png").unlink()
    assert evaluate(copy / "DAVIS", copy / "results", workers=1, progress=False).global_row == reference.global_row


def test_davis2016_binarises(sample: Path) -> None:
    result = evaluate(sample / "DAVIS", sample / "results", year=2016, workers=1, progress=False)
    assert [o.name for o in result.per_object] == [f"synth-val-{i:02d}_1" for i in range(3)]


# ---------------------------------------------------------------------------------------------
# Bad input: one UserError naming the path; through the CLI, exit status 2 and no CSV.

def _break(copy: Path, how: str) -> str:
    """Damage the copy; return the path (or text) the error message must name."""
    davis, results = copy / "DAVIS", copy / "results"
    seq = _first_sequence(copy)
    frame = results / seq / "00002.png"
    if how == "missing root":
        shutil.rmtree(davis)
        return str(davis)
    if how == "missing imagesets":
        path = davis / "ImageSets" / "2017" / "val.txt"
        path.unlink()
        return str(path)
    if how == "missing gt frame":
        path = davis / "Annotations" / "480p" / seq / "00003.png"
        path.unlink()
        return str(davis / "Annotations" / "480p" / seq)
    if how == "missing results folder":
        shutil.rmtree(results / seq)
        return str(results / seq)
    if how == "missing result frame":
        frame.unlink()
        return str(frame)
    if how == "extra result frame":
        extra = results / seq / "00042.png"
        shutil.copy(frame, extra)
        return str(extra)
    if how == "corrupt png":
        frame.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
        return str(frame)
    if how == "rgb mask":
        Image.new("RGB", (64, 48)).save(frame)
        return str(frame)
    if how == "wrong size":
        write_label_png(frame, np.zeros((24, 32), np.uint8))
        return str(frame)
    if how == "extra object id":
        labels = np.zeros((48, 64), np.uint8)
        labels[:4, :4] = 7
        write_label_png(frame, labels)
        return str(frame)
    raise AssertionError(how)


BAD_INPUTS = ["missing root", "missing imagesets", "missing gt frame", "missing results folder",
              "missing result frame", "extra result frame", "corrupt png", "rgb mask", "wrong size", "extra object id"]


@pytest.mark.parametrize("how", BAD_INPUTS)
def test_bad_input_is_one_clear_error(copy: Path, how: str) -> None:
    named = _break(copy, how)
    with pytest.raises(UserError) as err:
        evaluate(copy / "DAVIS", copy / "results", workers=1, progress=False)
    assert named in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_input_cli_exit_status_and_no_csv(copy: Path) -> None:
    named = _break(copy, "extra object id")
    csv_dir = copy / "csv"
    proc = subprocess.run(
        [sys.executable, "-m", "common.evaluation.evaluate", "--davis", str(copy / "DAVIS"), "--results", str(copy / "results"),
         "--workers", "2", "--csv-dir", str(csv_dir)],
        cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    last_line = proc.stderr.strip().splitlines()[-1]  # after the progress bar
    assert last_line.startswith("error: ") and named in last_line and "Traceback" not in proc.stderr
    assert not csv_dir.exists()
    assert not list((copy / "results").glob("*.csv"))


# ---------------------------------------------------------------------------------------------
# CSV writing

def _result(j_mean: float = 0.5) -> EvalResult:
    obj = ObjectScores("seq_1", "seq", 1, np.zeros(3), np.zeros(3),
                       {"J-Mean": j_mean, "J-Recall": 0.0, "J-Decay": float("nan"),
                        "F-Mean": 0.25, "F-Recall": 0.0, "F-Decay": 0.0})
    row = {"J&F-Mean": 0.375, "J-Mean": j_mean, "J-Recall": 0.0, "J-Decay": float("nan"), "F-Mean": 0.25,
           "F-Recall": 0.0, "F-Decay": -0.0001}
    return EvalResult(split="val", year=2017, global_row=row, per_object=[obj])


def test_csv_format_nan_and_negative_zero() -> None:
    global_csv, seq_csv = _result().csv_texts()
    # pandas' to_csv(float_format='%.3f'): NaN is an empty field, tiny negatives keep their sign.
    assert global_csv == "J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n0.375,0.500,0.000,,0.250,0.000,-0.000\n"
    assert seq_csv == "Sequence,J-Mean,F-Mean\nseq_1,0.500,0.250\n"


def test_failed_write_leaves_previous_csvs_intact(tmp_path: Path, monkeypatch) -> None:
    old_paths = _result(0.5).write_csvs(tmp_path)
    old_texts = [p.read_text() for p in old_paths]
    calls = []

    def failing_replace(src, dst):
        calls.append(dst)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(evaluate_module.os, "replace", failing_replace)
    with pytest.raises(UserError, match="No space left"):
        _result(0.75).write_csvs(tmp_path)
    assert calls  # the failure happened at the rename, after both temporary files were complete
    assert [p.read_text() for p in old_paths] == old_texts
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in old_paths)  # no temp files left


def test_failed_temp_write_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    def failing_texts(self):
        return ("partial", None)  # writing None fails after the first file was written

    monkeypatch.setattr(EvalResult, "csv_texts", failing_texts)
    with pytest.raises(TypeError):
        _result().write_csvs(tmp_path)
    assert list(tmp_path.iterdir()) == []

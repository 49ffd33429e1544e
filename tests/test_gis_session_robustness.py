"""GIS on the DAVIS interactive benchmark: bad frames are found before the session starts, a failed
session leaves no folder behind, and an interrupted one resumes after its finished sequences."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from common.data.synthetic import make_davis_sample
from common.runtime.errors import UserError, run_cli
from gis.ivos import GISSession

H, W = 64, 96
FOLDER = "GIS-RAmap[JF]_[RS4]"


@pytest.fixture
def davis(tmp_path: Path):
    from common.data.scribbles import write_robot_scribbles

    root = make_davis_sample(tmp_path / "DAVIS", seed=4, n_videos=2, n_frames=4, height=H, width=W, n_objects=2,
                             n_train=0, n_test_dev=0)
    names = (root / "ImageSets" / "2017" / "val.txt").read_text().split()
    for name in names:
        write_robot_scribbles(root, name)
    return root, names


def argv_for(root: Path, names, out: Path):
    return ["--davis", str(root), "--output", str(out), "--weights", "none", "--metric", "J_AND_F",
            "--guide", "RS4", "--sequences", *names, "--scribble-indices", "1", "--max-interactions", "1",
            "--max-time", "600", "--device", "cpu"]


def frame(root: Path, name: str, index: int) -> Path:
    return root / "JPEGImages" / "480p" / name / f"{index:05d}.jpg"


def test_missing_frame_is_one_error_before_any_work(davis, tmp_path, monkeypatch):
    root, names = davis
    frame(root, names[1], 2).unlink()
    monkeypatch.setattr("gis.model.load_model", lambda *a: pytest.fail("weights loaded before the check"))
    from gis.ivos_main_davis import main

    with pytest.raises(UserError, match=rf"{names[1]}/00002\.jpg not found \(1 of the 4 frames"):
        main(argv_for(root, names, tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_corrupt_frame_is_one_error_line_without_libjpeg_output(davis, tmp_path, capfd):
    root, names = davis
    path = frame(root, names[0], 3)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a truncated JPEG: OpenCV still returns an image
    from gis.ivos_main_davis import main

    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, argv_for(root, names, tmp_path / "out"))
    assert exit_info.value.code == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: frame {path} is corrupt (")
    assert not (tmp_path / "out").exists()


def test_a_failed_session_leaves_no_partial_folder(davis, tmp_path, monkeypatch):
    root, names = davis

    def broken_round(self, interaction, annotated_frame):
        raise RuntimeError("model failure")

    monkeypatch.setattr(GISSession, "run_round", broken_round)
    from gis.ivos_main_davis import main

    with pytest.raises(RuntimeError, match="model failure"):
        main(argv_for(root, names, tmp_path / "out"))
    assert list((tmp_path / "out").iterdir()) == []


def test_interrupted_session_resumes_after_its_finished_sequences(davis, tmp_path, monkeypatch, one_thread):
    root, names = davis
    out = tmp_path / "out"
    from gis.ivos_main_davis import main

    real_round = GISSession.run_round
    calls = []

    def interrupted_in_second_sequence(self, interaction, annotated_frame):
        calls.append(self.frames.paths[0].parent.name)
        if len(calls) == 2:  # the second sequence's round
            raise KeyboardInterrupt
        return real_round(self, interaction, annotated_frame)

    monkeypatch.setattr(GISSession, "run_round", interrupted_in_second_sequence)
    with pytest.raises(KeyboardInterrupt):
        main(argv_for(root, names, out))
    partial = out / f"{FOLDER}.partial"
    assert json.loads((partial / "progress.json").read_text())["finished"] == [names[0]]
    kept = pd.read_csv(partial / "finished_report.csv")
    assert set(kept["sequence"]) == {names[0]} and set(kept["interaction"]) == {1}

    calls.clear()
    monkeypatch.setattr(GISSession, "run_round",
                        lambda self, *a: calls.append(self.frames.paths[0].parent.name) or real_round(self, *a))
    assert main(argv_for(root, names, out)) == 0
    assert calls == [names[1]]  # only the unfinished sequence ran again
    folder = out / FOLDER
    assert folder.is_dir() and not partial.exists()
    report = pd.read_csv(next(folder.glob("result_*.csv")))
    assert len(report) == 2 * 1 * 4 * 2  # sequences x interactions x frames x objects
    first = report[report["sequence"] == names[0]].drop(columns=["Unnamed: 0", "session_id"])
    pd.testing.assert_frame_equal(first.reset_index(drop=True),
                                  kept.drop(columns=["session_id"]).reset_index(drop=True), check_dtype=False)
    with open(folder / "summary_in_csv.csv") as fp:
        rows = list(csv.reader(fp))
    assert [r[:3] for r in rows[1:]] == [[names[0], "1", "1"], [names[0], "2", "1"],
                                         [names[1], "1", "1"], [names[1], "2", "1"]]
    summary = json.loads(next(folder.glob("summary_*.json")).read_text())
    # Both sequences are in the curve: the mean over all of the report's rows (equal-length sequences).
    assert summary["metric_per_interaction"]["J_AND_F"] == pytest.approx([report["j_and_f"].mean()])
    assert summary["metric_per_interaction"]["J_AND_F"] == summary["curve"]["J_AND_F"][1:-1]

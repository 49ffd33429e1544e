"""GIS-RAmap end to end on tiny synthetic data: a real davisinteractive session and YouTube-IVOS."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from common.data.synthetic import make_davis_sample, make_ytvos_sample
from gis.ivos import pad_info, propagation_order, recommend_frames

H, W = 64, 96


def test_propagation_order_and_recommendation():
    assert pad_info(96, 160) == ((16, 16), (16, 16))
    assert pad_info(480, 854) == ((16, 16), (5, 5))
    assert propagation_order([3], 3, 8) == [3, 2, 1, 0, 3, 4, 5, 6, 7]
    assert propagation_order([3, 7], 7, 8) == [7, 6, 5, 4, 7]
    assert propagation_order([3, 7, 4], 4, 8) == [4, 4, 5, 6]
    assert propagation_order([50, 70, 90], 71, 100, 0.67) == list(range(71, 70, -1)) + list(range(71, 84))
    scores = np.array([0.15, 0.1, 0.2, 0.8, 0.3, 0.7, 0.6, 0.5, 0.4, 0.95, 0.99, 0.98, 0.97, 0.96, 0.94, 0.93,
                       0.92, 0.91, 0.05, 0.85])
    assert recommend_frames(scores, "RS1") == [18]
    # 20 frames: each pick excludes itself and the frame before it (so 0 is skipped after 1)
    assert recommend_frames(scores, "RS4") == [18, 1, 2, 4]
    assert recommend_frames(scores, "wo_RS") is None


def test_load_model_weights(tmp_path: Path, monkeypatch, capsys):
    """A checkpoint file (its path printed), None (the official DAVIS checkpoint) and `seeded` or its older
    spelling `none` (the seeded initialisation, with the notice that the numbers are not the paper's)."""
    import torch

    import gis.model
    from common.hub.checkpoints import load_state_dict
    from gis.checkpoints import OFFICIAL_WEIGHTS
    from gis.model import GISNet, load_model

    cpu = torch.device("cpu")
    seeded = load_model("seeded", cpu)
    assert isinstance(seeded, GISNet) and not seeded.training
    assert "seeded random initialisation" in capsys.readouterr().out
    load_model("none", cpu)
    assert "seeded random initialisation" in capsys.readouterr().out
    checkpoint = tmp_path / "gis.pth"
    torch.save(seeded.state_dict(), checkpoint)
    loaded = load_model(str(checkpoint), cpu)
    assert f"weights: {checkpoint}" in capsys.readouterr().out
    for key, value in seeded.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    requested = []
    monkeypatch.setattr(gis.model, "load_state_dict", lambda name: requested.append(name) or load_state_dict(checkpoint))
    load_model(None, cpu)
    assert requested == [OFFICIAL_WEIGHTS]


def test_published_table_is_keyed_by_the_result_folder_set():
    from gis.reproduce import DAVIS_SET, PUBLISHED

    assert DAVIS_SET == "davis17-val" and list(PUBLISHED) == [DAVIS_SET]
    assert PUBLISHED[DAVIS_SET][("J_AND_F", "RS4")] == (0.856, 0.866)


def test_davis_session_two_rounds(tmp_path: Path):
    from common.data.scribbles import write_robot_scribbles
    from gis.ivos_main_davis import main

    davis = make_davis_sample(tmp_path / "DAVIS", seed=3, n_videos=1, n_frames=5, height=H, width=W, n_objects=2)
    name = (davis / "ImageSets" / "2017" / "val.txt").read_text().split()[0]
    write_robot_scribbles(davis, name)
    out = tmp_path / "out"
    argv = ["--davis", str(davis), "--output", str(out), "--weights", "none", "--metric", "J_AND_F",
            "--guide", "RS4", "--sequences", name, "--scribble-indices", "1", "--max-interactions", "2",
            "--max-time", "600", "--device", "cpu", "--save-masks"]  # a generous time budget: CI CPUs can be busy
    assert main(argv) == 0

    folder = out / "GIS-RAmap[JF]_[RS4]"
    assert folder.is_dir() and not (out / "GIS-RAmap[JF]_[RS4].partial").exists()
    summary = json.loads(next(folder.glob("summary_*.json")).read_text())
    times, values = summary["curve"]["time"], summary["curve"]["J_AND_F"]
    assert len(times) == len(values) == 4  # start, 2 interactions, timeout
    assert times[0] == 0 and values[0] == 0 and times[-1] == pytest.approx(2 * 600)  # objects x max_time
    assert all(0 <= v <= 1 for v in values) and values[-1] == values[-2]
    assert summary["metric_at_threshold"]["threshold"] == 60
    assert 0 <= summary["auc"] <= 1
    report = next(folder.glob("result_*.csv"))
    assert len(report.read_text().splitlines()) == 1 + 2 * 5 * 2  # interactions x frames x objects
    with open(folder / "summary_in_csv.csv") as fp:
        rows = list(csv.reader(fp))
    assert rows[0] == ["sequence", "obj_idx", "scr_idx", "round-1", "round-2"]
    assert [r[:3] for r in rows[1:]] == [[name, "1", "1"], [name, "2", "1"]]
    assert list(folder.glob("summary_graph_*.png"))
    assert len(list((folder / "result_video" / f"{name}-scr01" / "round02").glob("*.png"))) == 5
    # An existing result folder is not overwritten silently.
    from common.runtime.errors import UserError

    with pytest.raises(UserError):
        main(argv)


def _youtube_train_layout(tmp_path: Path) -> Path:
    """The synthetic YouTube-VOS validation sample rearranged as YouTube-VOS *train* (full GT per frame)."""
    sample = make_ytvos_sample(tmp_path / "ytvos", seed=5, n_videos=1, n_frames=16, height=H, width=W, n_objects=2)
    root = tmp_path / "YouTubeVOS2019"
    shutil.copytree(sample / "valid" / "JPEGImages", root / "train" / "JPEGImages")
    shutil.copytree(sample / "valid_gt" / "Annotations", root / "train" / "Annotations")
    return root


def test_youtube_ivos(tmp_path: Path):
    from gis.ivos_main_youtube import main
    from gis.youtube_session import write_synthetic_points

    root = _youtube_train_layout(tmp_path)
    videos = sorted(p.name for p in (root / "train" / "JPEGImages").iterdir())
    points = write_synthetic_points(root, tmp_path / "points", videos, n_points=(5,))
    out = tmp_path / "out"
    argv = ["--youtube", str(root), "--output", str(out), "--weights", "none", "--points", "5",
            "--points-dir", str(points), "--short-side", str(H), "--device", "cpu"]
    assert main(argv) == 0

    folder = out / "GIS-RAmap[JF]_[wo_RS]"
    per_round = json.loads((folder / "iPoint05" / "summary.json").read_text())
    assert len(per_round) == 4 and all(0 <= v <= 1 for v in per_round)
    assert json.loads((folder / "summary_total.json").read_text()) == pytest.approx(per_round)
    with open(folder / "iPoint05" / "summary_in_csv.csv") as fp:
        rows = list(csv.reader(fp))
    assert rows[0] == ["sequence", "obj_idx", "round-1", "round-2", "round-3", "round-4"]
    objects = [r for r in rows[1:]]
    assert [r[0] for r in objects] == [v for v in videos for _ in range(2)]
    assert np.mean([[float(x) for x in r[2:]] for r in objects], axis=0) == pytest.approx(per_round)
    # Each video: the clicked frame, then 3 distinct robot frames (4 scored frames per video).
    progress = [json.loads(l) for l in (folder / "iPoint05" / "progress.jsonl").read_text().splitlines()]
    for rec in progress:
        assert len(rec["annotated_frames"]) == 4 and len(set(rec["annotated_frames"])) == 4
    # A rerun resumes from progress.jsonl and gives the same numbers.
    assert main(argv) == 0
    assert json.loads((folder / "iPoint05" / "summary.json").read_text()) == pytest.approx(per_round)


def test_davis_cli_names_what_the_data_is_missing(tmp_path: Path):
    """On `python -m common.data.synthetic` output (its own sequence list; tests/test_readme_commands.py runs the
    CLI on it): a listed sequence that is absent, or one without scribbles, is named before any work."""
    from common.data.synthetic import make_sample
    from common.runtime.errors import UserError
    from gis.ivos_main_davis import main

    davis = make_sample(tmp_path / "sample", n_videos=1, n_frames=3, height=H, width=W, coco_images=1)["davis"]
    assert (davis / "Scribbles" / "synth-val-00" / "001.json").is_file()
    common = ["--davis", str(davis), "--weights", "seeded", "--metric", "J", "--device", "cpu"]
    listing = davis / "ImageSets" / "2017" / "val.txt"
    listing.write_text(listing.read_text() + "bike-packing\n")
    with pytest.raises(UserError, match=r"sequence 'bike-packing' of the val subset is not in .*JPEGImages/480p"):
        main([*common, "--output", str(tmp_path / "absent")])
    listing.write_text("synth-val-00\n")
    shutil.rmtree(davis / "Scribbles" / "synth-val-00")
    with pytest.raises(UserError, match=r"no scribble files in .*Scribbles/synth-val-00.*common\.data\.synthetic"):
        main([*common, "--output", str(tmp_path / "no-scribbles")])
    assert not (tmp_path / "no-scribbles").exists() and not (tmp_path / "absent").exists()

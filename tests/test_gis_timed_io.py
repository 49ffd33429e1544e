"""What GIS's benchmark clock measures: davisinteractive times each interaction from `get_scribbles`
to `submit_masks`. As in the reference, each round decodes exactly the frames it propagates to inside
that window, and round 1 loads the ground truth there too."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import gis.davis_frames as davis_frames
from common.data.synthetic import make_davis_sample


def test_faithful_rounds_decode_their_frames_inside_the_timed_window(tmp_path: Path, monkeypatch, one_thread,
                                                                      capsys):
    from common.data.davisinteractive_compat import import_davisinteractive
    from common.data.scribbles import write_robot_scribbles
    from gis.ivos import GISSession
    from gis.ivos_main_davis import main

    import_davisinteractive()
    from davisinteractive.dataset import Davis
    from davisinteractive.session import DavisInteractiveSession

    root = make_davis_sample(tmp_path / "DAVIS", seed=6, n_videos=1, n_frames=5, height=64, width=96, n_objects=2,
                             n_train=0, n_test_dev=0)
    name = (root / "ImageSets" / "2017" / "val.txt").read_text().split()[0]
    write_robot_scribbles(root, name)

    events = []
    submitting = []  # the framework loads the ground truth itself to score a submission: not ours

    def recorded(label, real):
        def wrapper(*args, **kwargs):
            if not submitting:
                events.append(label if isinstance(label, str) else label(*args))
            return real(*args, **kwargs)
        return wrapper

    def submit(self, *args, **kwargs):
        events.append("submit")
        submitting.append(True)
        try:
            return real_submit(self, *args, **kwargs)
        finally:
            submitting.clear()

    real_submit = DavisInteractiveSession.submit_masks
    monkeypatch.setattr(DavisInteractiveSession, "get_scribbles",
                        recorded("get", DavisInteractiveSession.get_scribbles))
    monkeypatch.setattr(DavisInteractiveSession, "submit_masks", submit)
    monkeypatch.setattr(Davis, "load_annotations", recorded("gt", Davis.load_annotations))
    monkeypatch.setattr(davis_frames, "decode_frame",
                        recorded(lambda path, *a: int(path.stem), davis_frames.decode_frame))
    orders = []
    real_round = GISSession.run_round
    monkeypatch.setattr(GISSession, "run_round", lambda self, *a: orders.append(real_round(self, *a)) or orders[-1])

    argv = ["--davis", str(root), "--output", str(tmp_path / "out"), "--weights", "none", "--metric", "J_AND_F",
            "--guide", "RS4", "--sequences", name, "--scribble-indices", "1", "--max-interactions", "2",
            "--max-time", "600", "--device", "cpu"]
    assert main(argv) == 0

    session = events[events.index("get"):]  # before it: the up-front check of every frame
    windows, current = [], None
    for event in session:
        if event == "get":
            current = []
        elif event == "submit":
            windows.append(current)
            current = None
        else:
            assert current is not None, f"{event!r} happened outside an interaction's timed window"
            current.append(event)
    assert len(windows) == len(orders) == 2
    assert windows[0] == ["gt"] + orders[0]
    assert windows[1] == orders[1]  # only the frames round 2 propagates to, decoded in that round

    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    summary = json.loads(next((tmp_path / "out" / "GIS-RAmap[JF]_[RS4]").glob("summary_*.json")).read_text())
    assert printed[0]["per_interaction"] == summary["metric_per_interaction"]["J_AND_F"] == pytest.approx(
        summary["curve"]["J_AND_F"][1:-1])
    assert len(printed[0]["per_interaction"]) == 2

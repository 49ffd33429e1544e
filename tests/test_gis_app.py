"""The GIS-RAmap web app's API (`gis.app`) with Starlette's test client, on a tiny synthetic DAVIS."""
from __future__ import annotations

import csv
import json
import socket
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from common.data.datasets import DAVIS  # noqa: E402
from common.data.palette import read_label_png  # noqa: E402
from common.data.synthetic import make_davis_sample  # noqa: E402
from common.runtime.errors import UserError  # noqa: E402
from gis.app.__main__ import _davis_loader, main  # noqa: E402
from gis.app.evaluation import ResultsFolder, RoundClock  # noqa: E402
from gis.app.server import DavisSource, VideoSource, create_app  # noqa: E402
from gis.app.session import Model, Video  # noqa: E402
from gis.ivos import GISSession, scribble_channels  # noqa: E402
from gis.model import load_model  # noqa: E402

H, W, FRAMES = 64, 96, 4
STROKE = {"frame": 1, "object_id": 1, "path": [[0.2, 0.3], [0.5, 0.6]], "duration": 0.4}


@pytest.fixture(scope="module")
def net(one_thread):
    return load_model("seeded", torch.device("cpu"))


@pytest.fixture(scope="module")
def davis(tmp_path_factory) -> Path:
    return make_davis_sample(tmp_path_factory.mktemp("app") / "DAVIS", seed=1, n_videos=2, n_frames=FRAMES,
                             height=H, width=W, n_objects=2)


def _davis_client(net, davis: Path, results_root: Path, guide: str = "RS4") -> TestClient:
    dataset = DAVIS(davis, 2017, "val")
    results = ResultsFolder(results_root, f"GIS-RAmap_{guide}", "tester")
    source = DavisSource(dataset.names, _davis_loader(dataset), results, save_masks=True)
    return TestClient(create_app(Model(net), source, guide))


def _run_round(client: TestClient, sid: str) -> list:
    """Press Run and read the progress stream to its end; returns the parsed events."""
    assert client.post(f"/api/s/{sid}/run").status_code == 202
    events, name = [], None
    with client.stream("GET", f"/api/s/{sid}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    return events


def test_round_clock_follows_write_in_csv():
    ticks = iter([10.0, 12.0, 15.0, 16.0, 20.0, 21.0, 25.0])
    clock = RoundClock(clock=lambda: next(ticks))
    clock.stroke_started(seconds_ago=1.0)  # the clock starts when the first stroke began: 9
    clock.run_pressed()        # 3
    clock.masks_ready()        # 6
    clock.stroke_started()     # finding 7 (implicit: the user scribbles on the next frame)
    clock.stroke_started()     # no second finding step for the same round (reads no time)
    clock.run_pressed()        # 11
    clock.masks_ready()        # 12
    clock.end_finding()        # 16 (Satisfied)
    clock.end_finding()        # recorded once
    assert (clock.scribble, clock.operate, clock.finding) == ([3, 11], [6, 12], [7, 16])
    assert clock.totals() == {"scribble_time": 3 + 4, "operation_time": 3 + 1, "finding_time": 1 + 4, "total_time": 16}


@pytest.mark.parametrize("fast", [False, True], ids=["faithful", "fast"])
def test_preview_is_the_next_rounds_annotated_frame(net, davis, fast):
    """Each stroke's re-segmentation shows exactly what Run will give the annotated frame (round 1, no blending)."""
    from common.inference.fast import FastOptions
    from gis.fast import FastGIS

    frames = np.stack([np.asarray(DAVIS(davis).video("synth-val-00").load_frame(i)) for i in range(FRAMES)])
    engine = FastGIS(net, FastOptions(precision="fp32")) if fast else None
    state = GISSession(net, frames, 2, fast=engine)
    scribbles = [{"path": STROKE["path"], "object_id": 1}, {"path": [[0.7, 0.2], [0.9, 0.3]], "object_id": 2}]
    iact = scribble_channels(scribbles, 2, state.labels()[1], first_round=True)
    preview = state.preview_annotation(iact, 1)
    assert state.round == 0 and not state.annotated_frames  # nothing stored
    state.run_round(iact, 1)
    np.testing.assert_array_equal(preview, state.labels()[1])


def test_evaluation_round_trip_and_resume(net, davis, tmp_path):
    with _davis_client(net, davis, tmp_path) as client:
        assert client.get("/").status_code == 200
        assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
        for path in ("/static/index.html", "/static/..%2f__main__.py", "/static/%2e%2e/server.py", "/etc/passwd"):
            assert client.get(path).status_code == 404, path
        first = client.post("/api/session").json()
        info, sid = first["info"], first["info"]["sid"]
        assert (info["sequence"], info["num_frames"], info["n_objects"], info["has_gt"]) == ("synth-val-00", FRAMES, 2, True)
        assert first["colours"][1:] == ["#800000", "#008000"]
        assert client.get(f"/api/s/{sid}/frame/0.jpg").headers["content-type"] == "image/jpeg"
        assert client.get(f"/api/s/{sid}/frame/{FRAMES}.jpg").status_code == 404
        assert client.get("/api/s/nosuchsession/state").status_code == 404

        # Refusals: one clear message, 4xx, and the session stays usable.
        assert client.post(f"/api/s/{sid}/run").status_code == 400  # nothing drawn yet
        assert client.post(f"/api/s/{sid}/satisfied").status_code == 409  # no round yet
        bad = [b"{not json", json.dumps(dict(STROKE, frame=FRAMES)), json.dumps(dict(STROKE, object_id=3)),
               json.dumps(dict(STROKE, path=[[0.1, 1.5]])), json.dumps(dict(STROKE, path=[])),
               json.dumps(dict(STROKE, duration=-1)), json.dumps([1, 2])]
        for body in bad:
            response = client.post(f"/api/s/{sid}/stroke", content=body)
            assert response.status_code == 400 and response.json()["error"], body
        assert client.post(f"/api/s/{sid}/stroke", content=b"x" * (3 * 2 ** 20)).status_code == 413

        status = client.post(f"/api/s/{sid}/stroke", json=STROKE).json()
        assert status["strokes"] == 1 and status["stroke_frame"] == 1 and status["version"] > 0

        # A second Run while one is queued or running is refused: hold the model thread so it cannot finish.
        app = client.app.state.app
        gate = threading.Event()
        app.worker.submit(gate.wait, 30)
        assert client.post(f"/api/s/{sid}/run").status_code == 202
        refused = client.post(f"/api/s/{sid}/run")
        assert refused.status_code == 409 and "running" in refused.json()["error"]
        assert client.post(f"/api/s/{sid}/stroke", json=STROKE).status_code == 409
        gate.set()
        events = []
        with client.stream("GET", f"/api/s/{sid}/events") as stream:
            events = [json.loads(line[6:]) for line in stream.iter_lines() if line.startswith("data: ")]
        done = [e["progress"]["done"] for e in events]
        assert done == sorted(done) and done[-1] == FRAMES and not events[-1]["running"]
        final = events[-1]
        assert final["round"] == 1 and final["strokes"] == 0 and len(final["recommended"]) == 4
        assert set(final["scores"]) == {"J", "F", "mean_J", "mean_F", "mean_JF"}

        # Round 2 on a recommended frame, with a background stroke.
        frame = final["recommended"][0]
        assert client.post(f"/api/s/{sid}/select").status_code == 200
        client.post(f"/api/s/{sid}/stroke", json=dict(STROKE, frame=frame, object_id=0))
        events = _run_round(client, sid)
        assert events[-1][0] == "done" and events[-1][1]["round"] == 2
        result = client.post(f"/api/s/{sid}/satisfied").json()
        assert client.get(f"/api/s/{sid}/state").status_code == 404  # the tab moves on to the next sequence

        rows = list(csv.DictReader(open(result["csv"])))
        assert [r["sequence"] for r in rows] == ["synth-val-00"] * 2 and [r["obj_id"] for r in rows] == ["1", "2"]
        times = {k: float(rows[0][k]) for k in ("scribble_time", "operation_time", "finding_time", "total_time")}
        assert all(v > 0 for v in times.values()) and rows[0]["N_rounds"] == "2"
        assert times["scribble_time"] + times["operation_time"] + times["finding_time"] == pytest.approx(times["total_time"])
        masks = np.stack([read_label_png(p) for p in sorted(Path(result["csv"]).parent.glob("masks/synth-val-00/*.png"))])
        gt = DAVIS(davis).gt_masks("synth-val-00")
        from davisinteractive.metrics import batched_f_measure, batched_jaccard

        j = batched_jaccard(gt, masks, average_over_objects=False, nb_objects=2).mean(axis=0)
        f = batched_f_measure(gt, masks, average_over_objects=False, nb_objects=2).mean(axis=0)
        assert [float(r["final_J"]) for r in rows] == pytest.approx(j, abs=1e-12)
        assert [float(r["final_F"]) for r in rows] == pytest.approx(f, abs=1e-12)
        assert client.post("/api/session").json()["info"]["sequence"] == "synth-val-01"

    # A restart resumes the same CSV and skips the finished sequence.
    with _davis_client(net, davis, tmp_path) as client:
        assert client.post("/api/session").json()["info"]["sequence"] == "synth-val-01"
        assert len(list(tmp_path.glob("GIS-RAmap_RS4_*"))) == 1


def test_custom_video_export(net, davis, tmp_path):
    frames = np.stack([DAVIS(davis).video("synth-val-01").load_frame(i) for i in range(FRAMES)])
    source = VideoSource(Video("clip", frames, 1), tmp_path / "out")
    with TestClient(create_app(Model(net), source, "wo_RS")) as client:
        payload = client.post("/api/session").json()
        sid = payload["info"]["sid"]
        assert payload["mode"] == "video" and not payload["info"]["has_gt"]
        assert client.post(f"/api/s/{sid}/satisfied").status_code == 400  # Export is the custom video's end
        assert client.post(f"/api/s/{sid}/stroke", json=dict(STROKE, object_id=2)).status_code == 400  # 1 object
        client.post(f"/api/s/{sid}/stroke", json=STROKE)
        events = _run_round(client, sid)
        assert events[-1][1]["recommended"] is None and events[-1][1]["scores"] is None  # wo_RS, no ground truth
        exported = client.post(f"/api/s/{sid}/export").json()
        archive = client.get(exported["zip"])
        assert archive.headers["content-type"] == "application/zip"
        zip_path = tmp_path / "got.zip"
        zip_path.write_bytes(archive.content)
        names = zipfile.ZipFile(zip_path).namelist()
        assert sorted(names) == [f"masks/{i:05d}.png" for i in range(FRAMES)] + ["overlay.mp4"]
        assert (tmp_path / "out" / "clip" / "overlay.mp4").stat().st_size > 0


def test_closing_a_tab_mid_round_leaves_the_server_working(net, davis, tmp_path):
    frames = np.stack([DAVIS(davis).video("synth-val-01").load_frame(i) for i in range(FRAMES)])
    with TestClient(create_app(Model(net), VideoSource(Video("clip", frames, 1), tmp_path), "RS1")) as client:
        sid = client.post("/api/session").json()["info"]["sid"]
        client.post(f"/api/s/{sid}/stroke", json=STROKE)
        app = client.app.state.app
        gate = threading.Event()
        app.worker.submit(gate.wait, 30)
        assert client.post(f"/api/s/{sid}/run").status_code == 202
        assert client.post(f"/api/s/{sid}/close").status_code == 204  # the page's pagehide beacon
        gate.set()
        app.worker.submit(lambda: None).result(timeout=300)  # the orphaned round has finished
        assert client.get(f"/api/s/{sid}/state").status_code == 404
        other = client.post("/api/session").json()["info"]["sid"]
        assert client.post(f"/api/s/{other}/stroke", json=STROKE).status_code == 200


@pytest.mark.parametrize("argv, message", [
    (["--video", "missing.mp4"], "not found"),
    (["--video", "{file}"], "cannot read any frame"),
    (["--video", "{dir}", "--objects", "300"], "--objects must be 1..254"),
    (["--davis", "{dir}"], "DAVIS"),
    (["--davis", "{dir}", "--user", "../x"], "--user"),
])
def test_cli_rejects_bad_input_before_loading(tmp_path, argv, message):
    bad_video = tmp_path / "clip.mp4"
    bad_video.write_bytes(b"not a video")
    with socket.socket() as probe:  # a free port, so that only the input can be wrong
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [a.format(file=bad_video, dir=tmp_path) for a in argv] + ["--weights", "seeded", "--port", str(port)]
    with pytest.raises(UserError, match=message):
        main(argv)


def test_custom_video_loading(tmp_path):
    import cv2

    from gis.app.media import load_video

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 600, 800, 3), dtype=np.uint8)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:05d}.png"), frame[:, :, ::-1])
    name, loaded = load_video(folder)
    assert name == "frames" and loaded.shape == (3, 480, 640, 3)  # larger than 480p: shrunk to it
    writer = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 96))
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[:96, :160, ::-1]))
    writer.release()
    name, loaded = load_video(tmp_path / "clip.mp4")
    assert name == "clip" and loaded.shape == (3, 96, 160, 3)  # small videos keep their size
    cv2.imwrite(str(folder / "00003.png"), frames[0, :100, :100])
    with pytest.raises(UserError, match="one size"):
        load_video(folder)

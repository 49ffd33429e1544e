"""The GIS-RAmap web app's API (`gis.app`) with Starlette's test client, on a tiny synthetic DAVIS."""
from __future__ import annotations

import csv
import json
import logging
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


def _davis_client(net, davis: Path, results_root: Path, guide: str = "RS4", **options) -> TestClient:
    dataset = DAVIS(davis, 2017, "val")
    results = ResultsFolder(results_root, f"GIS-RAmap_{guide}", "tester")
    source = DavisSource(dataset.names, _davis_loader(dataset), results, save_masks=True)
    return TestClient(create_app(Model(net), source, guide, **options))


def _video_client(net, davis: Path, out: Path, guide: str = "RS1", fps: float = 24.0, **options) -> TestClient:
    frames = np.stack([DAVIS(davis).video("synth-val-01").load_frame(i) for i in range(FRAMES)])
    return TestClient(create_app(Model(net), VideoSource(Video("clip", frames, 1, fps=fps), out), guide, **options))


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


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
    import cv2

    with _video_client(net, davis, tmp_path / "out", guide="wo_RS", fps=10.0) as client:
        payload = client.post("/api/session").json()
        sid = payload["info"]["sid"]
        assert payload["mode"] == "video" and not payload["info"]["has_gt"]
        assert client.post(f"/api/s/{sid}/satisfied").status_code == 400  # Export is the custom video's end
        assert client.post(f"/api/s/{sid}/stroke", json=dict(STROKE, object_id=2)).status_code == 400  # 1 object
        client.post(f"/api/s/{sid}/stroke", json=STROKE)
        events = _run_round(client, sid)
        assert events[-1][1]["recommended"] is None and events[-1][1]["scores"] is None  # wo_RS, no ground truth
        exported = client.post(f"/api/s/{sid}/export").json()
        assert (exported["codec"], exported["fps"]) == ("h264", 10.0)
        assert client.get(exported["video"]).headers["content-type"] == "video/mp4"
        archive = client.get(exported["zip"])
        assert archive.headers["content-type"] == "application/zip"
        zip_path = tmp_path / "got.zip"
        zip_path.write_bytes(archive.content)
        names = zipfile.ZipFile(zip_path).namelist()
        assert sorted(names) == [f"masks/{i:05d}.png" for i in range(FRAMES)] + ["overlay.mp4"]
        # What browsers play: H.264, at the clip's own rate (not a fixed 24 fps), every frame.
        capture = cv2.VideoCapture(str(tmp_path / "out" / "clip" / "overlay.mp4"))
        fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
        assert fourcc.lower() in ("avc1", "h264") and capture.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)
        assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == FRAMES
        capture.release()


def test_closing_a_tab_mid_round_leaves_the_server_working(net, davis, tmp_path):
    with _video_client(net, davis, tmp_path) as client:
        sid = client.post("/api/session").json()["info"]["sid"]
        client.post(f"/api/s/{sid}/stroke", json=STROKE)
        app = client.app.state.app
        gate = threading.Event()
        app.worker.submit(gate.wait, 30)
        assert client.post(f"/api/s/{sid}/run").status_code == 202
        assert client.post(f"/api/s/{sid}/close").status_code == 204  # the page's pagehide beacon
        # A reload during the round gets the running round back (the page follows its progress again).
        assert client.post("/api/session", json={"resume": sid}).json()["status"]["running"]
        assert client.post(f"/api/s/{sid}/close").status_code == 204  # ... and that tab closes too
        gate.set()
        app.worker.submit(lambda: None).result(timeout=300)  # the round has finished, its tab gone
        # The next tab takes the closed tab's work over instead of starting again.
        other = client.post("/api/session").json()
        assert other["info"]["sid"] == sid and other["status"]["round"] == 1
        assert client.post(f"/api/s/{sid}/stroke", json=STROKE).status_code == 200


def test_work_survives_reload_and_server_restart(net, davis, tmp_path):
    """Defect 2: a reload (same tab id) and a server restart give the rounds, scores, strokes and clock back."""
    with _davis_client(net, davis, tmp_path) as client:
        sid = client.post("/api/session").json()["info"]["sid"]
        client.post(f"/api/s/{sid}/stroke", json=STROKE)
        _run_round(client, sid)
        client.post(f"/api/s/{sid}/select")
        client.post(f"/api/s/{sid}/stroke", json=dict(STROKE, frame=2, object_id=2))
        before = client.get(f"/api/s/{sid}/state").json()
        masks = [client.get(f"/api/s/{sid}/mask/{i}.png").content for i in range(FRAMES)]
        clock = client.app.state.app.sessions[sid].clock
        assert client.post(f"/api/s/{sid}/close").status_code == 204  # the reload's pagehide
        again = client.post("/api/session", json={"resume": sid}).json()
        assert again["info"]["sid"] == sid and again["status"] == before
        saved = json.loads((next(tmp_path.glob("GIS-RAmap_RS4_*/sessions_tester")) / f"{sid}.json").read_text())
        assert len(saved["rounds"]) == 1 and len(saved["strokes"]) == 1

    with _davis_client(net, davis, tmp_path) as client:  # the server restarted
        assert client.get(f"/api/s/{sid}/state").status_code == 404  # not loaded until the tab asks
        back = client.post("/api/session", json={"resume": sid}).json()
        status = back["status"]
        assert back["info"]["sid"] == sid and back["info"]["sequence"] == "synth-val-00"
        for key in ("round", "history", "strokes", "stroke_frame", "paths", "recommended", "finding", "scores"):
            assert status[key] == before[key], key
        restored = client.app.state.app.sessions[sid]
        assert (restored.clock.scribble, restored.clock.operate, restored.clock.finding) == (
            clock.scribble, clock.operate, clock.finding)
        # The same masks (the round run again on the same machine), the unrun stroke's preview included.
        assert [client.get(f"/api/s/{sid}/mask/{i}.png").content for i in range(FRAMES)] == masks
        client.post(f"/api/s/{sid}/clear")
        client.post(f"/api/s/{sid}/undo")  # the cleared stroke comes back and is run
        _run_round(client, sid)
        result = client.post(f"/api/s/{sid}/satisfied").json()
        assert result["n_rounds"] == 2 and not list(Path(result["csv"]).parent.glob("sessions_tester/*.json"))

        # Defect 10: the last sequence done, the final screen gets every sequence's scores.
        nxt = client.post("/api/session").json()["info"]["sid"]
        client.post(f"/api/s/{nxt}/stroke", json=STROKE)
        _run_round(client, nxt)
        client.post(f"/api/s/{nxt}/satisfied")
        final = client.post("/api/session").json()
        assert final["finished"] and [r["sequence"] for r in final["results"]] == ["synth-val-00", "synth-val-01"]
        rows = list(csv.DictReader(open(result["csv"])))
        assert final["results"][0]["J"] == pytest.approx(np.mean([float(r["final_J"]) for r in rows[:2]]))
        assert final["results"][0]["rounds"] == 2 and final["results"][1]["rounds"] == 1


def test_a_dead_tab_frees_its_sequence_after_the_timeout(net, davis, tmp_path):
    """Defect 1: a browser that died without pagehide keeps its sequence only for --tab-timeout seconds; the next
    tab then gets the sequence with the dead tab's strokes."""
    clock = FakeClock()
    with _davis_client(net, davis, tmp_path, tab_timeout=10, clock=clock) as client:
        a = client.post("/api/session").json()["info"]["sid"]
        client.post(f"/api/s/{a}/stroke", json=STROKE)
        b = client.post("/api/session").json()
        assert b["info"]["sequence"] == "synth-val-01" and b["heartbeat_s"] < 10
        waiting = client.post("/api/session").json()
        assert waiting["waiting"] and "10 s" in waiting["message"] and waiting["retry_after_s"] > 0
        clock.now += 6
        assert client.post(f"/api/s/{b['info']['sid']}/alive").status_code == 204  # b's heartbeat; a is silent
        clock.now += 6
        taken = client.post("/api/session").json()
        assert taken["info"]["sid"] == a and taken["status"]["strokes"] == 1  # a's work, not a fresh start
        assert client.post("/api/session").json()["waiting"]  # b is still alive


def test_a_full_server_refuses_a_new_tab_instead_of_evicting_one(net, davis, tmp_path):
    """Defect 7: beyond max_tabs live tabs the new one is told why; no tab's rounds are dropped."""
    clock = FakeClock()
    with _video_client(net, davis, tmp_path, tab_timeout=10, max_tabs=2, clock=clock) as client:
        first = client.post("/api/session").json()["info"]["sid"]
        client.post(f"/api/s/{first}/stroke", json=STROKE)
        _run_round(client, first)
        client.post("/api/session")
        refused = client.post("/api/session")
        assert refused.status_code == 503 and "2 tabs" in refused.json()["error"]
        assert client.get(f"/api/s/{first}/state").json()["round"] == 1
        clock.now += 11  # both tabs died: the next one gets the one with work, and room is made without loss
        taken = client.post("/api/session").json()
        assert taken["info"]["sid"] == first and taken["status"]["round"] == 1


def test_nested_json_is_a_400_without_a_traceback(net, davis, tmp_path, caplog):
    """Defect 6: json's recursive decoder on a deeply nested body is a bad request, not a 500."""
    with _video_client(net, davis, tmp_path) as client:
        sid = client.post("/api/session").json()["info"]["sid"]
        for body in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000):
            response = client.post(f"/api/s/{sid}/stroke", content=body)
            assert response.status_code == 400 and "nested" in response.json()["error"]
        assert client.post("/api/session", content=b"[" * 100_000).status_code == 400
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_strokes_undo_redo_and_another_frame(net, davis, tmp_path):
    """Defect 5: strokes not yet run are never dropped by drawing on another frame without a confirmation;
    undo and redo of strokes."""
    with _video_client(net, davis, tmp_path) as client:
        sid = client.post("/api/session").json()["info"]["sid"]
        client.post(f"/api/s/{sid}/stroke", json=STROKE)
        status = client.post(f"/api/s/{sid}/stroke", json=dict(STROKE, path=[[0.6, 0.6]])).json()
        assert status["strokes"] == 2 and status["redo"] == 0
        refused = client.post(f"/api/s/{sid}/stroke", json=dict(STROKE, frame=2))
        assert refused.status_code == 409 and "frame 1" in refused.json()["error"]
        assert client.get(f"/api/s/{sid}/state").json()["strokes"] == 2
        undone = client.post(f"/api/s/{sid}/undo").json()
        assert (undone["strokes"], undone["redo"], undone["paths"]) == (1, 1, [{"object_id": 1, "path": STROKE["path"]}])
        assert client.post(f"/api/s/{sid}/redo").json()["strokes"] == 2
        assert client.post(f"/api/s/{sid}/redo").status_code == 409
        replaced = client.post(f"/api/s/{sid}/stroke", json=dict(STROKE, frame=2, replace=True)).json()
        assert (replaced["strokes"], replaced["stroke_frame"]) == (1, 2)
        assert client.post(f"/api/s/{sid}/undo").json()["strokes"] == 0
        redone = client.post(f"/api/s/{sid}/redo").json()  # the last stroke back, on its own frame
        assert (redone["strokes"], redone["stroke_frame"]) == (1, 2)
        client.post(f"/api/s/{sid}/clear")
        assert client.post(f"/api/s/{sid}/undo").json()["strokes"] == 1  # a Clear is undone too
        client.post(f"/api/s/{sid}/undo")
        assert client.post(f"/api/s/{sid}/undo").status_code == 409
        assert client.post(f"/api/s/{sid}/restart").json()["round"] == 0


def test_working_size(net, davis, tmp_path):
    """--size: the model works on frames shrunk to the shorter side, the masks come back at the frame size."""
    import cv2

    with _video_client(net, davis, tmp_path, size=32) as client:
        payload = client.post("/api/session").json()
        sid, info = payload["info"]["sid"], payload["info"]
        assert (info["height"], info["width"], info["work_height"], info["work_width"]) == (H, W, 32, 48)
        session = client.app.state.app.sessions[sid]
        assert session.state.frames.shape[1:3] == (32, 48)
        client.post(f"/api/s/{sid}/stroke", json=STROKE)
        _run_round(client, sid)
        png = client.get(f"/api/s/{sid}/mask/1.png").content
        assert cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED).shape[:2] == (H, W)
        assert session.labels.shape == (FRAMES, H, W)
        outline = client.get(f"/api/s/{sid}/mask/1.png?outline=1").content
        assert outline != png


@pytest.mark.parametrize("argv, message", [
    (["--video", "missing.mp4"], "not found"),
    (["--video", "{file}"], "cannot read any frame"),
    (["--video", "{dir}", "--objects", "300"], "--objects must be 1..254"),
    (["--davis", "{dir}"], "DAVIS"),
    (["--davis", "{dir}", "--user", "../x"], "--user"),
    (["--video", "{dir}", "--size", "8"], "--size"),
    (["--video", "{dir}", "--tab-timeout", "0"], "--tab-timeout"),
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


def test_the_app_lets_waiting_cpu_threads_sleep():
    """The app sets OMP_WAIT_POLICY=PASSIVE before torch loads (spinning OpenMP threads doubled a CPU round
    whenever another process wanted a core); a policy set by the user is kept."""
    import os
    import subprocess
    import sys

    code = ("import os, sys\nfrom common.runtime.errors import UserError\nfrom gis.app.__main__ import main\n"
            "try:\n    main(['--video', 'x.mp4', '--objects', '0'])\nexcept UserError:\n    pass\n"
            "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    root = Path(__file__).resolve().parents[1]
    for given, expected in ((None, "PASSIVE False"), ("ACTIVE", "ACTIVE False")):
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
        if given is not None:
            env["OMP_WAIT_POLICY"] = given
        out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                             timeout=120, check=True).stdout
        assert out.strip() == expected


def test_bench_times_the_apps_round(capsys, one_thread):
    from gis.app.bench import main as bench

    assert bench(["--height", "64", "--width", "96", "--frames", "2", "--sizes", "full", "32", "--paths", "fast",
                  "--robot-rounds", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "| robot J&F (1 rounds) |" in out
    rows = [line.strip("| ").split(" | ") for line in out.splitlines() if line.startswith("| fast")]
    assert [r[1] for r in rows] == ["96×64 (full)", "48×32 (`--size 32`)"]
    assert all(0 <= float(r[6]) <= 1 for r in rows) and len(rows[0]) == 7
    with pytest.raises(UserError, match="--sizes"):
        bench(["--sizes", "tiny"])


def test_custom_video_loading(tmp_path):
    import cv2

    from gis.app.media import load_video

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 600, 800, 3), dtype=np.uint8)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:05d}.png"), frame[:, :, ::-1])
    name, loaded, fps = load_video(folder)
    assert name == "frames" and loaded.shape == (3, 480, 640, 3) and fps == 24.0  # shrunk to 480p; DAVIS's rate
    writer = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 96))
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[:96, :160, ::-1]))
    writer.release()
    name, loaded, fps = load_video(tmp_path / "clip.mp4")
    assert name == "clip" and loaded.shape == (3, 96, 160, 3) and fps == 10.0  # small videos keep their size
    cv2.imwrite(str(folder / "00003.png"), frames[0, :100, :100])
    with pytest.raises(UserError, match="one size"):
        load_video(folder)

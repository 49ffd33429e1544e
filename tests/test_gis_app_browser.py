"""The GIS-RAmap web app in a real headless Chromium (the distribution's package, driven by Playwright).

One evaluation sequence the way a person does it, with the ways people lose work on the way: strokes
drawn while the previous one is still being segmented, a reload after round 1, Ctrl+S, undo and redo,
an RS4 candidate picked with its key, Satisfied (confirmed); then a browser that dies without a word
and a phone that takes its sequence over after the tab timeout. The CSV row is checked against
davisinteractive's metrics on the saved masks, and any JavaScript console error fails the test. A
second test exports a custom video and plays its H.264 overlay.mp4 in the page; a third plays the video in
a loop and restarts it after a round.

One browser serves all three tests. Set GIS_APP_SCREENSHOTS=folder to keep the phone and desktop screenshots
(the README's docs/img/gis-app-*.png come from this test).
"""
from __future__ import annotations

import csv
import os
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
H, W, FRAMES = 64, 96, 4
ROUND_TIMEOUT_MS = 240_000  # a round on a busy 2-core CI machine
TAB_TIMEOUT_S = 4  # how long a dead tab keeps its sequence here (the app's --tab-timeout)
SCREENSHOTS = os.environ.get("GIS_APP_SCREENSHOTS")


def _browser_or_skip():
    """Playwright's sync API; skips only outside CI when Chromium is absent (in CI that is a failure)."""
    present = bool(shutil.which(CHROMIUM)) or Path(CHROMIUM).is_file()
    if os.environ.get("CI", "").lower() == "true":
        assert present, f"{CHROMIUM} is missing; .ci/run installs it (apt-get install chromium)"
    elif not present:
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    import playwright.sync_api  # a dependency of the test suite (make setup installs it)

    return playwright.sync_api


@pytest.fixture(scope="module")
def browser():
    sync_api = _browser_or_skip()
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def net(one_thread):
    from gis.model import load_model

    return load_model("seeded", torch.device("cpu"))


@pytest.fixture(scope="module")
def davis(tmp_path_factory):
    from common.data.synthetic import make_davis_sample

    return make_davis_sample(tmp_path_factory.mktemp("browser") / "DAVIS", seed=1, n_videos=2, n_frames=FRAMES,
                             height=H, width=W, n_objects=2)


@contextmanager
def serve(app):
    """`app` on a free port in a thread; yields its URL."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not uv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the app server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        uv.should_exit = True
        thread.join(timeout=30)


def _watch(page, errors: list) -> None:
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("response", lambda r: errors.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)


def _drag(page, points, button="left"):
    """Drag through `points` given as fractions of the drawing canvas."""
    box = page.locator("#strokes").bounding_box()
    xy = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in points]
    page.mouse.move(*xy[0])
    page.mouse.down(button=button)
    for x, y in xy[1:]:
        page.mouse.move(x, y, steps=4)
    page.mouse.up(button=button)


def _interior(mask: np.ndarray) -> list:
    """A short horizontal path through the middle of the object's pixels (fractions of the frame)."""
    ys, xs = np.nonzero(mask)
    y, x = np.median(ys), np.median(xs)
    row = xs[ys == int(y)] if (ys == int(y)).any() else xs
    x0, x1 = np.percentile(row, 30), np.percentile(row, 70)
    return [((x0 + 0.5) / mask.shape[1], (y + 0.5) / mask.shape[0]), ((x + 0.5) / mask.shape[1], (y + 0.5) / mask.shape[0]),
            ((x1 + 0.5) / mask.shape[1], (y + 0.5) / mask.shape[0])]


def _coloured_pixels(page) -> int:
    """Object pixels in the overlay image the page shows."""
    return page.evaluate("""() => {
        const img = document.getElementById('mask');
        const c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const ctx = c.getContext('2d');
        ctx.drawImage(img, 0, 0);
        const data = ctx.getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
        return n;
    }""")


def _wait_loaded(page):
    page.wait_for_function("document.getElementById('frame').complete && "
                           "document.getElementById('frame').naturalWidth > 0 && view.status !== null")


def _wait_strokes(page, n):
    page.wait_for_function(f"view.status.strokes === {n} && view.pending.length === 0", timeout=ROUND_TIMEOUT_MS)


def _wait_round(page, round_number):
    page.wait_for_function(f"document.querySelectorAll('#scores tbody tr').length === {round_number} && "
                           f"!view.status.running", timeout=ROUND_TIMEOUT_MS)
    assert page.eval_on_selector("#progress", "p => p.value === p.max && p.max > 0")


def test_evaluation_in_a_real_browser(browser, net, davis, tmp_path):
    from common.data.datasets import DAVIS
    from gis.app.__main__ import _davis_loader
    from gis.app.evaluation import ResultsFolder
    from gis.app.server import DavisSource, create_app
    from gis.app.session import Model

    dataset = DAVIS(davis, 2017, "val")
    results = ResultsFolder(tmp_path / "results", "GIS-RAmap_RS4", "browser")
    starlette = create_app(Model(net), DavisSource(dataset.names, _davis_loader(dataset), results, save_masks=True),
                           "RS4", tab_timeout=TAB_TIMEOUT_S)
    app = starlette.state.app
    goodbyes = []  # the sessions whose tab said goodbye (pagehide beacon), in order

    class Goodbyes(set):
        def add(self, sid):
            goodbyes.append(sid)
            super().add(sid)

    app.closed = Goodbyes()
    gt = DAVIS(davis).gt_masks("synth-val-00")
    errors, dialogs, requests = [], [], []

    with serve(starlette) as url:
        context = browser.new_context(viewport={"width": 1280, "height": 980})
        page = context.new_page()
        _watch(page, errors)
        page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(url)
        _wait_loaded(page)
        sid = page.evaluate("view.info.sid")
        assert "synth-val-00" in page.inner_text("#sequence") and "full size 96×64" in page.inner_text("#work-size")
        empty = _coloured_pixels(page)

        # Defect 4: a stroke drawn while the previous one is being segmented waits its turn; none is dropped.
        gate = threading.Event()
        app.worker.submit(gate.wait, 60)  # the model thread is busy: the first stroke's preview cannot finish
        page.keyboard.press("1")
        _drag(page, _interior(gt[0] == 1))
        _drag(page, _interior(gt[0] == 2))
        page.wait_for_function("view.pending.length === 2")
        gate.set()
        _wait_strokes(page, 2)
        page.click("#run")
        _wait_round(page, 1)
        page.wait_for_function("document.getElementById('mask').complete")
        assert _coloured_pixels(page) != empty, "the overlay did not change after the round"
        candidates = page.locator("#candidates button")
        assert 1 <= candidates.count() <= 4
        assert page.locator("#candidates-gt figure").count() == candidates.count()  # the ground-truth mosaic
        first = int(candidates.first.get_attribute("data-frame"))

        # Defect 2: a reload keeps the rounds, the score table and the RS4 candidates.
        page.reload()
        _wait_loaded(page)
        page.wait_for_function("document.querySelectorAll('#scores tbody tr').length === 1")
        assert "1 round done" in page.inner_text("#round") and "work is back" in page.inner_text("#message")
        page.locator("#candidates button").first.wait_for()
        assert goodbyes == [sid], "the reload's pagehide beacon did not reach the server"

        # Defect 3: shortcuts ignore held modifiers (Ctrl+S is the browser's, not Satisfied). The arrow key after
        # it is handled after anything Ctrl+S could have started, so waiting for it is enough.
        requests.clear()
        for combo in ("Control+s", "Control+r", "Control+c", "Meta+s", "Alt+s"):
            page.keyboard.press(combo)
        page.keyboard.press("ArrowRight")
        page.wait_for_function("document.getElementById('slider').value === '1'")
        assert dialogs == [] and not [r for r in requests if r.endswith(("/satisfied", "/run", "/clear"))]

        # Help panel, RS4 key A, undo and redo of a background stroke, round 2.
        page.keyboard.press("?")
        assert page.is_visible("#help") and "Ctrl" in page.inner_text("#help")
        page.keyboard.press("Escape")
        assert not page.is_visible("#help")
        page.keyboard.press("a")
        page.wait_for_function(f"document.getElementById('slider').value === '{first}'")
        _drag(page, [(0.04, 0.06), (0.2, 0.06), (0.2, 0.15)], button="right")
        _wait_strokes(page, 1)
        page.keyboard.press("Control+z")
        _wait_strokes(page, 0)
        page.wait_for_function("document.getElementById('run').disabled")
        page.keyboard.press("Control+Shift+z")
        _wait_strokes(page, 1)
        page.click("#run")
        _wait_round(page, 2)

        # Layout: on a large screen the frame grows past the old 960 px cap.
        page.set_viewport_size({"width": 2560, "height": 1440})
        assert page.locator("#stage").bounding_box()["width"] > 1200
        page.set_viewport_size({"width": 1920, "height": 1080})
        if SCREENSHOTS:
            page.screenshot(path=str(Path(SCREENSHOTS) / "gis-app-desktop.png"))

        page.click("#finish")
        page.wait_for_function("document.getElementById('sequence').textContent.includes('synth-val-01')",
                               timeout=ROUND_TIMEOUT_MS)
        assert len(dialogs) == 1 and "Satisfied" in dialogs[0]  # Satisfied asks first
        assert "Saved synth-val-00" in page.inner_text("#message")

        # Defect 1: the browser dies (no pagehide beacon, no heartbeat) with a stroke drawn on synth-val-01 ...
        _drag(page, _interior(DAVIS(davis).gt_masks("synth-val-01")[0] == 1))
        _wait_strokes(page, 1)
        goodbyes.clear()
        sid = page.evaluate("view.info.sid")
        page.evaluate("navigator.sendBeacon = () => true")
        context.close()

        # ... and a phone opened meanwhile gets that sequence, with the stroke, once the tab timeout has passed.
        phone = browser.new_context(viewport={"width": 375, "height": 667}, is_mobile=True, has_touch=True)
        page = phone.new_page()
        _watch(page, errors)
        page.goto(url)
        page.wait_for_function("document.getElementById('sequence').textContent.includes('synth-val-01')",
                               timeout=(TAB_TIMEOUT_S + 60) * 1000)
        _wait_loaded(page)
        _wait_strokes(page, 1)
        assert page.evaluate("view.info.sid") == sid and goodbyes == []  # taken over by the timeout, no goodbye

        # Defect 9: on the phone, Run is on screen and nothing is wider than the screen.
        run = page.locator("#run").bounding_box()
        assert run["y"] >= 0 and run["y"] + run["height"] <= 667 and run["x"] + run["width"] <= 375, run
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        if SCREENSHOTS:
            page.screenshot(path=str(Path(SCREENSHOTS) / "gis-app-phone.png"))
        phone.close()
    assert errors == []

    rows = list(csv.DictReader(open(results.csv_path)))
    assert [(r["sequence"], r["obj_id"], r["N_rounds"]) for r in rows] == [("synth-val-00", "1", "2"),
                                                                          ("synth-val-00", "2", "2")]
    from davisinteractive.metrics import batched_f_measure, batched_jaccard

    from common.data.palette import read_label_png

    masks = np.stack([read_label_png(p) for p in sorted(results.masks_dir("synth-val-00").glob("*.png"))])
    j = batched_jaccard(gt, masks, average_over_objects=False, nb_objects=2).mean(axis=0)
    f = batched_f_measure(gt, masks, average_over_objects=False, nb_objects=2).mean(axis=0)
    assert [float(r["final_J"]) for r in rows] == pytest.approx(j, abs=1e-12)
    assert [float(r["final_F"]) for r in rows] == pytest.approx(f, abs=1e-12)
    times = {k: float(rows[0][k]) for k in ("scribble_time", "operation_time", "finding_time", "total_time")}
    assert all(v > 0 for v in times.values())
    assert times["scribble_time"] + times["operation_time"] + times["finding_time"] == pytest.approx(times["total_time"])
    assert all(float(r["total_time"]) == times["total_time"] for r in rows)


def test_custom_video_export_plays_in_the_browser(browser, net, davis, tmp_path):
    """Defect 8: the exported overlay.mp4 is H.264, which Chromium plays, at the clip's own frame rate."""
    from common.data.datasets import DAVIS
    from gis.app.server import VideoSource, create_app
    from gis.app.session import Model, Video

    frames = np.stack([DAVIS(davis).video("synth-val-01").load_frame(i) for i in range(FRAMES)])
    starlette = create_app(Model(net), VideoSource(Video("clip", frames, 1, fps=10.0), tmp_path / "out"), "wo_RS")
    errors = []
    with serve(starlette) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        _watch(page, errors)
        page.goto(url)
        _wait_loaded(page)
        assert page.evaluate("""document.createElement('video').canPlayType('video/mp4; codecs="avc1.42E01E"')""") \
            in ("probably", "maybe")
        _drag(page, _interior(DAVIS(davis).gt_masks("synth-val-01")[1] == 1))
        _wait_strokes(page, 1)
        page.keyboard.press("r")
        page.wait_for_function("view.status.round === 1 && !view.status.running", timeout=ROUND_TIMEOUT_MS)
        page.keyboard.press("s")  # Export
        page.wait_for_selector("#export-video:not([hidden])", timeout=ROUND_TIMEOUT_MS)
        assert "H.264, 10 fps" in page.inner_text("#message")
        played = page.evaluate("""async () => {
            const v = document.getElementById('export-video');
            if (v.readyState < 1) await new Promise((ok, fail) => { v.onloadedmetadata = ok; v.onerror = fail; });
            const shown = new Promise((ok) => v.requestVideoFrameCallback(ok));
            await v.play();
            await shown;
            v.pause();
            const c = document.createElement('canvas');
            c.width = v.videoWidth; c.height = v.videoHeight;
            const ctx = c.getContext('2d');
            ctx.drawImage(v, 0, 0);
            const data = ctx.getImageData(0, 0, c.width, c.height).data;
            let sum = 0;
            for (let i = 0; i < data.length; i += 4) sum += data[i] + data[i + 1] + data[i + 2];
            return {width: v.videoWidth, height: v.videoHeight, duration: v.duration, mean: sum / (data.length / 4) / 3};
        }""")
        page.close()
    assert (played["width"], played["height"]) == (W, H)
    assert played["duration"] == pytest.approx(FRAMES / 10.0, abs=0.05)  # 10 fps, not 24
    mean = frames.mean()
    assert abs(played["mean"] - mean) < 0.25 * mean + 10, (played, mean)  # a real frame, not black
    assert errors == []


def _shown_frames(page) -> list:
    """The frame numbers the page has shown since `_record_shown_frames` (its `#frame-number` text)."""
    return page.evaluate("window.shownFrames")


def _record_shown_frames(page) -> None:
    page.evaluate("""() => {
        window.shownFrames = [];
        const number = document.getElementById('frame-number');
        new MutationObserver(() => window.shownFrames.push(Number(number.textContent.split(' / ')[0])))
            .observe(number, {childList: true, characterData: true, subtree: true});
    }""")


def test_play_loops_and_restart_starts_over(browser, net, davis, tmp_path):
    """Play (button, then P to pause) steps through the frames at the video's rate and starts again at the
    first after the last; Restart the video (confirmed) drops the round and the strokes and shows the first
    frame without masks, as the reference GUI, which builds the window anew."""
    from common.data.datasets import DAVIS
    from gis.app.__main__ import _davis_loader
    from gis.app.evaluation import ResultsFolder
    from gis.app.server import DavisSource, create_app
    from gis.app.session import Model

    dataset = DAVIS(davis, 2017, "val")
    results = ResultsFolder(tmp_path / "results", "GIS-RAmap_RS1", "player")
    starlette = create_app(Model(net), DavisSource(dataset.names, _davis_loader(dataset), results), "RS1")
    gt = DAVIS(davis).gt_masks("synth-val-00")
    errors, dialogs = [], []
    with serve(starlette) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        _watch(page, errors)
        page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))
        page.goto(url)
        _wait_loaded(page)
        empty = _coloured_pixels(page)
        assert page.inner_text("#frame-number") == f"0 / {FRAMES - 1}"

        _record_shown_frames(page)
        page.click("#play")
        assert page.inner_text("#play") == "Pause"
        # Two passes through the video: every frame in order, then the first again.
        page.wait_for_function(f"window.shownFrames.length >= {2 * FRAMES + 1}", timeout=60_000)
        page.keyboard.press("p")
        page.wait_for_function("view.player === null")
        assert page.inner_text("#play") == "Play"
        shown = _shown_frames(page)
        assert shown[:2 * FRAMES + 1] == [(i + 1) % FRAMES for i in range(2 * FRAMES + 1)], shown
        page.wait_for_function("(() => { const f = document.getElementById('frame'); return f.complete && "
                               "f.src.endsWith(`frame/${view.frame}.jpg`); })()")

        # A round, then another frame: Restart goes back to the first frame, with no round and no mask.
        page.locator("#slider").fill("0")
        page.wait_for_function("document.getElementById('frame-number').textContent.startsWith('0 /')")
        page.keyboard.press("1")
        _drag(page, _interior(gt[0] == 1))
        _wait_strokes(page, 1)
        page.click("#run")
        _wait_round(page, 1)
        page.wait_for_function("document.getElementById('mask').complete")
        assert _coloured_pixels(page) != empty
        page.locator("#slider").fill("2")
        page.wait_for_function("document.getElementById('frame-number').textContent.startsWith('2 /')")
        page.click("#play")  # Restart while the video plays also stops the playback
        page.wait_for_function("view.player !== null")
        page.click("#restart")
        page.wait_for_function("document.getElementById('round').textContent === '0 rounds done' && "
                               "document.getElementById('slider').value === '0'", timeout=60_000)
        assert len(dialogs) == 1 and "Start this video over" in dialogs[0]
        assert page.evaluate("view.player") is None and page.inner_text("#play") == "Play"
        assert page.inner_text("#frame-number") == f"0 / {FRAMES - 1}"
        page.wait_for_function("(() => { const f = document.getElementById('frame'), m = document.getElementById('mask');"
                               " return f.complete && f.src.endsWith('frame/0.jpg') && m.complete && "
                               "m.src.includes('mask/0.png'); })()")
        assert _coloured_pixels(page) == empty
        assert page.locator("#scores tbody tr").count() == 0 and page.evaluate("view.status.strokes") == 0
        assert page.is_disabled("#restart") and page.is_disabled("#finish")
        page.close()
    assert errors == []

"""The GIS-RAmap web app in a real headless Chromium (the distribution's package, driven by Playwright).

One evaluation sequence the way a person does it: a positive scribble for object 1, Run, an RS4
candidate, a background scribble, Run, Satisfied; then the CSV row is checked against
davisinteractive's metrics on the saved masks. Any JavaScript console error fails the test.
Set GIS_APP_SCREENSHOT=path.png to keep a screenshot (the README's comes from this test).
"""
from __future__ import annotations

import csv
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
H, W, FRAMES = 64, 96, 4
ROUND_TIMEOUT_MS = 240_000  # a round on a busy 2-core CI machine


def _browser_or_skip():
    """Playwright's sync API; skips only outside CI when Chromium is absent (in CI that is a failure)."""
    present = bool(shutil.which(CHROMIUM)) or Path(CHROMIUM).is_file()
    if os.environ.get("CI", "").lower() == "true":
        assert present, f"{CHROMIUM} is missing; .ci/run installs it (apt-get install chromium)"
    elif not present:
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    import playwright.sync_api  # a dependency of the test suite (make setup installs it)

    return playwright.sync_api


@pytest.fixture
def sync_api():
    return _browser_or_skip()


@pytest.fixture
def server(sync_api, tmp_path, one_thread):
    import uvicorn

    from common.data.datasets import DAVIS
    from common.data.synthetic import make_davis_sample
    from gis.app.__main__ import _davis_loader
    from gis.app.evaluation import ResultsFolder
    from gis.app.server import DavisSource, create_app
    from gis.app.session import Model
    from gis.model import load_model

    davis = make_davis_sample(tmp_path / "DAVIS", seed=1, n_videos=2, n_frames=FRAMES, height=H, width=W, n_objects=2)
    dataset = DAVIS(davis, 2017, "val")
    results = ResultsFolder(tmp_path / "results", "GIS-RAmap_RS4", "browser")
    app = create_app(Model(load_model("seeded", torch.device("cpu"))),
                     DavisSource(dataset.names, _davis_loader(dataset), results, save_masks=True), "RS4")
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
    yield f"http://127.0.0.1:{port}/", davis, results
    uv.should_exit = True
    thread.join(timeout=30)


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


def _wait_round(page, round_number):
    page.wait_for_function(f"document.querySelectorAll('#scores tbody tr').length === {round_number}",
                           timeout=ROUND_TIMEOUT_MS)
    assert page.eval_on_selector("#progress", "p => p.value === p.max && p.max > 0")


def test_evaluation_in_a_real_browser(sync_api, server):
    url, davis, results = server
    from common.data.datasets import DAVIS

    gt = DAVIS(davis).gt_masks("synth-val-00")
    errors = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 980})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_function("document.getElementById('frame').complete && "
                               "document.getElementById('frame').naturalWidth > 0")
        assert "synth-val-00" in page.inner_text("#sequence")
        empty = _coloured_pixels(page)

        # Round 1: a positive scribble for object 1 on frame 0; the stroke re-segments the frame at once.
        page.keyboard.press("1")
        _drag(page, _interior(gt[0] == 1))
        page.wait_for_function("!document.getElementById('run').disabled")
        page.click("#run")
        _wait_round(page, 1)
        page.wait_for_function("document.getElementById('mask').complete")
        assert _coloured_pixels(page) != empty, "the overlay did not change after the round"

        # RS4: pick a candidate, then a background scribble there (right button) and round 2.
        candidates = page.locator("#candidates button")
        candidates.first.wait_for()
        assert 1 <= candidates.count() <= 4
        frame = int(candidates.first.get_attribute("data-frame"))
        candidates.first.click()
        page.wait_for_function(f"document.getElementById('slider').value === '{frame}'")
        _drag(page, [(0.04, 0.06), (0.2, 0.06), (0.2, 0.15)], button="right")
        page.wait_for_function("!document.getElementById('run').disabled")
        page.click("#run")
        _wait_round(page, 2)
        if os.environ.get("GIS_APP_SCREENSHOT"):
            page.screenshot(path=os.environ["GIS_APP_SCREENSHOT"])

        page.click("#finish")
        page.wait_for_function("document.getElementById('sequence').textContent.includes('synth-val-01')",
                               timeout=ROUND_TIMEOUT_MS)
        assert "Saved synth-val-00" in page.inner_text("#message")
        browser.close()
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

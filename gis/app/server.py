"""The web app: one static page and a small JSON API over `TabSession`s.

Requests never name a file: the page, its script and style sheet come from a fixed table, frames
and masks from the loaded video in memory, the export zip from the path the server wrote. All model
work runs on one worker thread (the network is shared by the tabs), never on the event loop; a
round reports its progress frame by frame as Server-Sent Events.
"""
from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from common.data.palette import DAVIS_PALETTE, write_label_png
from common.runtime.errors import UserError
from gis.app.evaluation import ResultsFolder, remaining
from gis.app.media import export_video_results, jpeg_bytes, mask_png_bytes
from gis.app.session import Model, RequestError, TabSession, Video

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_FILES = {"app.js": "text/javascript", "app.css": "text/css"}
MAX_BODY_BYTES = 2 * 2 ** 20  # a stroke of MAX_POINTS points is well below this
MAX_TABS = 4  # the least recently used idle tab is dropped beyond this (each holds a video's maps)
PROGRESS_INTERVAL_S = 0.1

log = logging.getLogger("gis.app")


class DavisSource:
    """The real-world evaluation: DAVIS 2017 val sequences in sorted order, skipping those in the CSV."""

    mode = "davis"

    def __init__(self, sequences: List[str], load: Callable[[str], Video], results: ResultsFolder,
                 save_masks: bool = False):
        self.sequences, self.load, self.results, self.save_masks = sorted(sequences), load, results, save_masks

    def next_video(self, held: List[str]) -> Optional[str]:
        left = [s for s in remaining(self.sequences, self.results.done_sequences()) if s not in held]
        return left[0] if left else None

    def finish(self, session: TabSession) -> dict:
        """Satisfied: append the per-object CSV rows (and save the masks); runs on the worker thread."""
        result = session.final_scores_blocking()
        name = session.video.name
        self.results.append(name, result["n_rounds"], result["scores"], result["times"])
        if self.save_masks:
            for index, labels in enumerate(session.labels):
                write_label_png(self.results.masks_dir(name) / f"{index:05d}.png", labels)
        return dict(result, csv=str(self.results.csv_path))


class VideoSource:
    """A custom video without ground truth; exports go to `<output>/<video name>/`."""

    mode = "video"

    def __init__(self, video: Video, output: Path):
        self.video, self.output = video, output
        self.exports: Dict[str, Path] = {}

    def export(self, session: TabSession) -> Path:
        path = export_video_results(self.output / session.video.name, session.video.frames, session.labels)
        self.exports[session.sid] = path
        return path


def _json_error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class App:
    def __init__(self, model: Model, source, guide: str):
        self.model, self.source, self.guide = model, source, guide
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gis-model")
        self.sessions: Dict[str, TabSession] = {}
        self.tasks: set = set()  # running rounds, referenced until done
        self.loading: set = set()  # DAVIS sequences being loaded for a new tab

    # ------------------------------------------------------------------ helpers
    async def on_worker(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.worker, fn, *args)

    def session(self, request: Request) -> TabSession:
        session = self.sessions.get(request.path_params["sid"])
        if session is None:
            raise RequestError("this tab's session has ended (the server restarted or the tab was replaced); "
                               "reload the page", status=404)
        session.last_used = time.monotonic()
        return session

    def frame_index(self, request: Request, session: TabSession) -> int:
        index = request.path_params["index"]
        if not 0 <= index < session.num_frames:
            raise RequestError(f"frame {index} is outside 0..{session.num_frames - 1}", status=404)
        return index

    @staticmethod
    async def body(request: Request) -> object:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
            raise RequestError(f"request body larger than {MAX_BODY_BYTES} bytes", status=413)
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY_BYTES:
                raise RequestError(f"request body larger than {MAX_BODY_BYTES} bytes", status=413)
        try:
            return json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise RequestError("the request body must be JSON") from None

    def _make_room(self) -> None:
        idle = sorted((s for s in self.sessions.values() if not s.running), key=lambda s: s.last_used)
        while len(self.sessions) >= MAX_TABS and idle:
            self.sessions.pop(idle.pop(0).sid)

    def _payload(self, session: TabSession) -> dict:
        colours = ["#%02x%02x%02x" % tuple(int(c) for c in DAVIS_PALETTE[i]) for i in range(session.video.n_objects + 1)]
        return {"mode": self.source.mode, "info": session.info(), "status": session.status(), "colours": colours}

    # ------------------------------------------------------------------ pages
    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            raise RequestError(f"no static file {name!r}", status=404)
        return FileResponse(STATIC_DIR / name, media_type=STATIC_FILES[name])

    # ------------------------------------------------------------------ API
    async def new_session(self, request: Request) -> Response:
        self._make_room()
        if isinstance(self.source, DavisSource):
            held = [s.video.name for s in self.sessions.values()] + list(self.loading)
            name = self.source.next_video(held)
            if name is None:
                done = not remaining(self.source.sequences, self.source.results.done_sequences())
                message = (f"All {len(self.source.sequences)} sequences are evaluated; the results are in "
                           f"{self.source.results.csv_path}." if done else
                           "The remaining sequences are open in other tabs.")
                return JSONResponse({"mode": "davis", "finished": True, "message": message})
            self.loading.add(name)  # reserved while it loads, so that two tabs never get the same sequence
            try:
                video = await asyncio.get_running_loop().run_in_executor(None, self.source.load, name)
            finally:
                self.loading.discard(name)
        else:
            video = self.source.video
        session = TabSession(secrets.token_urlsafe(12), video, self.model, self.guide)
        self.sessions[session.sid] = session
        return JSONResponse(self._payload(session))

    async def state(self, request: Request) -> Response:
        return JSONResponse(self.session(request).status())

    async def frame(self, request: Request) -> Response:
        session = self.session(request)
        rgb = session.video.frames[self.frame_index(request, session)]
        return Response(jpeg_bytes(rgb), media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    async def mask(self, request: Request) -> Response:
        session = self.session(request)
        labels = session.frame_labels(self.frame_index(request, session))
        return Response(mask_png_bytes(labels), media_type="image/png", headers={"Cache-Control": "no-store"})

    async def gt(self, request: Request) -> Response:
        session = self.session(request)
        if session.video.gt is None:
            raise RequestError("this video has no ground truth", status=404)
        labels = session.video.gt[self.frame_index(request, session)]
        return Response(mask_png_bytes(np.where(labels == 255, 0, labels).astype(np.uint8)), media_type="image/png",
                        headers={"Cache-Control": "max-age=3600"})

    async def stroke(self, request: Request) -> Response:
        session = self.session(request)
        stamp = session.add_stroke(await self.body(request))
        await self.on_worker(session.preview_blocking, stamp)
        return JSONResponse(session.status())

    async def clear(self, request: Request) -> Response:
        session = self.session(request)
        session.clear_strokes()
        return JSONResponse(session.status())

    async def select(self, request: Request) -> Response:
        session = self.session(request)
        session.select_frame()
        return JSONResponse(session.status())

    async def run(self, request: Request) -> Response:
        session = self.session(request)
        total = session.start_round()
        task = asyncio.ensure_future(self.on_worker(session.run_round_blocking))
        self.tasks.add(task)
        task.add_done_callback(self._round_done)
        return JSONResponse({"started": True, "total": total}, status_code=202)

    def _round_done(self, task: asyncio.Future) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            err = task.exception()
            log.error("round failed: %s: %s", type(err).__name__, err)

    async def events(self, request: Request) -> Response:
        session = self.session(request)

        async def stream():
            last = None
            while True:
                status = session.status()
                if not session.running:
                    yield f"event: done\ndata: {json.dumps(status)}\n\n"
                    return
                if status["progress"] != last:
                    last = status["progress"]
                    yield f"event: progress\ndata: {json.dumps(status)}\n\n"
                if await request.is_disconnected():
                    return
                await asyncio.sleep(PROGRESS_INTERVAL_S)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    async def satisfied(self, request: Request) -> Response:
        session = self.session(request)
        if not isinstance(self.source, DavisSource):
            raise RequestError("Satisfied ends a DAVIS evaluation sequence; use Export for a custom video")
        session.check_finish()
        session.running = True  # no stroke or Run while the rows are written
        try:
            result = await self.on_worker(self.source.finish, session)
        finally:
            session.running = False
        self.sessions.pop(session.sid, None)
        return JSONResponse(result)

    async def export(self, request: Request) -> Response:
        session = self.session(request)
        if not isinstance(self.source, VideoSource):
            raise RequestError("export is for custom videos; the evaluation writes its CSV on Satisfied")
        session.check_finish()
        path = await self.on_worker(self.source.export, session)
        return JSONResponse({"folder": str(path.parent), "zip": f"/api/s/{session.sid}/export.zip"})

    async def export_zip(self, request: Request) -> Response:
        session = self.session(request)
        path = getattr(self.source, "exports", {}).get(session.sid)
        if path is None:
            raise RequestError("nothing exported yet; press Export first", status=404)
        return FileResponse(path, media_type="application/zip", filename=path.name)

    async def close(self, request: Request) -> Response:
        """The tab went away: forget its session (a running round finishes on its own and is dropped)."""
        self.sessions.pop(request.path_params["sid"], None)
        return Response(status_code=204)


def create_app(model: Model, source, guide: str) -> Starlette:
    app = App(model, source, guide)
    s = "/api/s/{sid:str}"
    routes = [
        Route("/", app.index),
        Route("/static/{name:str}", app.static),
        Route("/api/session", app.new_session, methods=["POST"]),
        Route(f"{s}/state", app.state),
        Route(s + "/frame/{index:int}.jpg", app.frame),
        Route(s + "/mask/{index:int}.png", app.mask),
        Route(s + "/gt/{index:int}.png", app.gt),
        Route(f"{s}/stroke", app.stroke, methods=["POST"]),
        Route(f"{s}/clear", app.clear, methods=["POST"]),
        Route(f"{s}/select", app.select, methods=["POST"]),
        Route(f"{s}/run", app.run, methods=["POST"]),
        Route(f"{s}/events", app.events),
        Route(f"{s}/satisfied", app.satisfied, methods=["POST"]),
        Route(f"{s}/export", app.export, methods=["POST"]),
        Route(f"{s}/export.zip", app.export_zip),
        Route(f"{s}/close", app.close, methods=["POST"]),
    ]

    async def request_error(request: Request, err: RequestError) -> Response:
        return _json_error(str(err), err.status)

    async def http_error(request: Request, err: HTTPException) -> Response:
        return _json_error(err.detail, err.status_code)

    async def user_error(request: Request, err: UserError) -> Response:  # e.g. an unreadable frame on disk
        return _json_error(str(err), 422)

    async def internal_error(request: Request, err: Exception) -> Response:
        log.error("%s %s failed: %s: %s", request.method, request.url.path, type(err).__name__, err)
        return _json_error(f"internal error: {type(err).__name__}: {err}", 500)

    handlers = {RequestError: request_error, UserError: user_error, HTTPException: http_error,
                Exception: internal_error}
    starlette = Starlette(routes=routes, exception_handlers=handlers)
    starlette.state.app = app
    return starlette

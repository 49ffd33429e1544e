"""The web app: one static page and a small JSON API over `TabSession`s.

Requests never name a file: the page, its script and style sheet come from a fixed table, frames
and masks from the loaded video in memory, the export zip from the path the server wrote. All model
work runs on one worker thread (the network is shared by the tabs), never on the event loop; a
round reports its progress frame by frame as Server-Sent Events.

No work is dropped: every change of a session is saved (`store`), a reloaded tab gets its session back
(the page keeps its id in sessionStorage), a tab not heard of for `tab_timeout` seconds (a dead browser)
frees its sequence and the next tab takes it over with its work, after a server restart the saved
sessions are rebuilt, and beyond `max_tabs` live tabs a new one is refused with a message.
"""
from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

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
from gis.app.store import SID, SessionStore
from gis.options import TAB_TIMEOUT_S

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_FILES = {"app.js": "text/javascript", "app.css": "text/css"}
MAX_BODY_BYTES = 2 * 2 ** 20  # a stroke of MAX_POINTS points is well below this
MAX_TABS = 4  # sessions held in memory at once (each holds a video's maps); more tabs are refused, never evicted
PROGRESS_INTERVAL_S = 0.1

log = logging.getLogger("gis.app")


class DavisSource:
    """The real-world evaluation: DAVIS 2017 val sequences in sorted order, skipping those in the CSV."""

    mode = "davis"

    def __init__(self, sequences: List[str], load: Callable[[str], Video], results: ResultsFolder,
                 save_masks: bool = False):
        self.sequences, self.load, self.results, self.save_masks = sorted(sequences), load, results, save_masks
        self.store = SessionStore(results.sessions_dir)

    def next_video(self, held: List[str]) -> Optional[str]:
        left = [s for s in remaining(self.sequences, self.results.done_sequences()) if s not in held]
        return left[0] if left else None

    def keeps(self, record: dict) -> bool:
        """A saved session still to be finished."""
        return record.get("sequence") in remaining(self.sequences, self.results.done_sequences())

    def finish(self, session: TabSession) -> dict:
        """Satisfied: append the per-object CSV rows (and save the masks); runs on the worker thread."""
        result = session.final_scores_blocking()
        name = session.video.name
        self.results.append(name, result["n_rounds"], result["scores"], result["times"])
        if self.save_masks:
            for index, labels in enumerate(session.labels):
                write_label_png(self.results.masks_dir(name) / f"{index:05d}.png", labels)
        self.store.delete(session.sid)
        return dict(result, csv=str(self.results.csv_path))


class VideoSource:
    """A custom video without ground truth; exports go to `<output>/<video name>/`, the work of its tabs to
    `<output>/<video name>.sessions/`."""

    mode = "video"

    def __init__(self, video: Video, output: Path):
        self.video, self.output = video, output
        self.exports: Dict[str, Path] = {}
        self.store = SessionStore(Path(output) / f"{video.name}.sessions")

    def load(self, name: str) -> Video:
        return self.video

    def keeps(self, record: dict) -> bool:
        return record.get("sequence") == self.video.name

    def export(self, session: TabSession) -> Tuple[Path, str]:
        path, codec = export_video_results(self.output / session.video.name, session.video.frames, session.labels,
                                           fps=session.video.fps)
        self.exports[session.sid] = path
        return path, codec


def _json_error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class App:
    def __init__(self, model: Model, source, guide: str, *, size: Optional[int] = None,
                 tab_timeout: float = TAB_TIMEOUT_S, max_tabs: int = MAX_TABS, clock: Callable[[], float] = time.monotonic):
        self.model, self.source, self.guide, self.size = model, source, guide, size
        self.tab_timeout, self.max_tabs, self.clock = tab_timeout, max_tabs, clock
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gis-model")
        self.sessions: Dict[str, TabSession] = {}
        self.closed: set = set()  # sessions whose tab said goodbye (pagehide): their sequence is free at once
        self.tasks: set = set()  # running rounds, referenced until done
        self.assigning = asyncio.Lock()  # one new tab at a time gets a sequence
        # Work saved by an earlier run of the server (or unloaded to make room), rebuilt when a tab asks for it.
        self.saved: Dict[str, dict] = {sid: r for sid, r in source.store.load_all().items() if source.keeps(r)}

    # ------------------------------------------------------------------ helpers
    async def on_worker(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.worker, fn, *args)

    def session(self, request: Request) -> TabSession:
        sid = request.path_params["sid"]
        session = self.sessions.get(sid)
        if session is None:
            raise RequestError("this tab's session is not loaded (the server restarted or the sequence was "
                               "finished); reload the page: saved work comes back", status=404)
        self.seen(session)
        return session

    def seen(self, session: TabSession) -> None:
        session.last_seen = self.clock()
        self.closed.discard(session.sid)

    def live(self, session: TabSession) -> bool:
        """Still in use by a tab (a running round keeps it too)."""
        if session.running or session.restoring:
            return True
        return session.sid not in self.closed and self.clock() - session.last_seen < self.tab_timeout

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
        except RecursionError:  # json's recursive decoder on a deeply nested body
            raise RequestError("the request body is nested too deeply") from None

    def _save(self, session: TabSession) -> None:
        try:
            self.source.store.save(session)
        except OSError as err:  # the page keeps working; the person is told on the server's console
            log.error("could not save the work of session %s: %s", session.sid, err)

    def _make_room(self) -> None:
        """Unload idle sessions (their work is saved and comes back on demand); refuse when all are live."""
        for session in sorted(self.sessions.values(), key=lambda s: s.last_seen):
            if len(self.sessions) < self.max_tabs:
                return
            if not self.live(session):
                self.sessions.pop(session.sid)
                if session.has_work:
                    self.saved[session.sid] = session.record()
                else:
                    self.source.store.delete(session.sid)
        if len(self.sessions) >= self.max_tabs:
            raise RequestError(f"{self.max_tabs} tabs are already working on this server (each holds a video in "
                               f"memory); close one, or wait: a tab that is not heard of for {self.tab_timeout:g} s "
                               f"frees its place", status=503)

    def _new(self, sid: str, video: Video) -> TabSession:
        session = TabSession(sid, video, self.model, self.guide, size=self.size, clock=self.clock,
                             on_change=self._save)
        self.sessions[sid] = session
        return session

    async def _restore(self, record: dict) -> TabSession:
        self._make_room()
        video = await asyncio.get_running_loop().run_in_executor(None, self.source.load, record["sequence"])
        session = self._new(record["sid"], video)
        self.saved.pop(record["sid"], None)
        await self.on_worker(session.restore_blocking, record)
        log.info("restored session %s (%s, %d rounds)", session.sid, video.name, session.state.round)
        return session

    def _payload(self, session: TabSession) -> dict:
        colours = ["#%02x%02x%02x" % tuple(int(c) for c in DAVIS_PALETTE[i]) for i in range(session.video.n_objects + 1)]
        return {"mode": self.source.mode, "info": session.info(), "status": session.status(), "colours": colours,
                "heartbeat_s": max(0.2, min(30.0, self.tab_timeout / 4)), "tab_timeout_s": self.tab_timeout}

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
        """A tab opens: its own session again (`{"resume": sid}` after a reload or a restart), else a session
        left by a dead tab, else a new one."""
        body = await self.body(request)
        resume = body.get("resume") if isinstance(body, dict) else None
        async with self.assigning:
            session = None
            if isinstance(resume, str) and SID.fullmatch(resume):
                session = self.sessions.get(resume)
                if session is None and resume in self.saved:
                    session = await self._restore(self.saved[resume])
            if session is None:
                session = await self._take_over_or_new()
            if isinstance(session, Response):
                return session
            self.seen(session)
        return JSONResponse(self._payload(session))

    async def _take_over_or_new(self):
        left_by_dead = sorted((s for s in self.sessions.values() if not self.live(s)), key=lambda s: -s.last_seen)
        if isinstance(self.source, DavisSource):
            held = [s.video.name for s in self.sessions.values() if self.live(s)]
            name = self.source.next_video(held)
            if name is None:
                return self._nothing_left()
            for session in left_by_dead:
                if session.video.name == name:
                    return session
            saved = [r for r in self.saved.values() if r["sequence"] == name]
        else:
            name = self.source.video.name
            for session in left_by_dead:
                if session.has_work:
                    return session
            saved = list(self.saved.values())
        if saved:
            return await self._restore(saved[-1])
        self._make_room()
        video = await asyncio.get_running_loop().run_in_executor(None, self.source.load, name)
        return self._new(secrets.token_urlsafe(12), video)

    def _nothing_left(self) -> Response:
        results = self.source.results
        if not remaining(self.source.sequences, results.done_sequences()):
            message = (f"All {len(self.source.sequences)} sequences are evaluated; the results are in "
                       f"{results.csv_path}.")
            return JSONResponse({"mode": "davis", "finished": True, "message": message, "results": results.summary()})
        message = (f"The remaining sequences are open in other tabs. A tab that is closed frees its sequence at once; "
                   f"one whose browser died frees it after {self.tab_timeout:g} s. This page tries again by itself.")
        return JSONResponse({"mode": "davis", "finished": False, "waiting": True, "message": message,
                             "retry_after_s": max(0.5, min(10.0, self.tab_timeout / 4))})

    async def alive(self, request: Request) -> Response:
        """The tab's heartbeat (a beacon: a session that has just ended is no error)."""
        session = self.sessions.get(request.path_params["sid"])
        if session is not None:
            self.seen(session)
        return Response(status_code=204)

    async def state(self, request: Request) -> Response:
        return JSONResponse(self.session(request).status())

    async def frame(self, request: Request) -> Response:
        session = self.session(request)
        rgb = session.video.frames[self.frame_index(request, session)]
        return Response(jpeg_bytes(rgb), media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    async def mask(self, request: Request) -> Response:
        session = self.session(request)
        labels = session.frame_labels(self.frame_index(request, session))
        outline = request.query_params.get("outline") == "1"
        return Response(mask_png_bytes(labels, outline=outline), media_type="image/png",
                        headers={"Cache-Control": "no-store"})

    async def gt(self, request: Request) -> Response:
        session = self.session(request)
        if session.video.gt is None:
            raise RequestError("this video has no ground truth", status=404)
        labels = session.video.gt[self.frame_index(request, session)]
        outline = request.query_params.get("outline") == "1"
        return Response(mask_png_bytes(np.where(labels == 255, 0, labels).astype(np.uint8), outline=outline),
                        media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    async def stroke(self, request: Request) -> Response:
        session = self.session(request)
        stamp = session.add_stroke(await self.body(request))
        await self.on_worker(session.preview_blocking, stamp)
        return JSONResponse(session.status())

    async def undo(self, request: Request) -> Response:
        session = self.session(request)
        await self.on_worker(session.preview_blocking, session.undo_stroke())
        return JSONResponse(session.status())

    async def redo(self, request: Request) -> Response:
        session = self.session(request)
        await self.on_worker(session.preview_blocking, session.redo_stroke())
        return JSONResponse(session.status())

    async def clear(self, request: Request) -> Response:
        session = self.session(request)
        session.clear_strokes()
        return JSONResponse(session.status())

    async def select(self, request: Request) -> Response:
        session = self.session(request)
        session.select_frame()
        return JSONResponse(session.status())

    async def restart(self, request: Request) -> Response:
        session = self.session(request)
        session.restart()
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
                self.seen(session)  # a tab watching its round is alive
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
        path, codec = await self.on_worker(self.source.export, session)
        return JSONResponse({"folder": str(path.parent), "zip": f"/api/s/{session.sid}/export.zip",
                             "video": f"/api/s/{session.sid}/overlay.mp4", "codec": codec, "fps": session.video.fps})

    def _exported(self, session: TabSession) -> Path:
        path = getattr(self.source, "exports", {}).get(session.sid)
        if path is None:
            raise RequestError("nothing exported yet; press Export first", status=404)
        return path

    async def export_zip(self, request: Request) -> Response:
        path = self._exported(self.session(request))
        return FileResponse(path, media_type="application/zip", filename=path.name)

    async def export_video(self, request: Request) -> Response:
        path = self._exported(self.session(request)).parent / "overlay.mp4"
        return FileResponse(path, media_type="video/mp4")

    async def close(self, request: Request) -> Response:
        """The tab went away (or is reloading): its sequence is free at once; its work stays, for the same tab
        after a reload or for the next tab that takes the sequence."""
        sid = request.path_params["sid"]
        if sid in self.sessions:
            self.closed.add(sid)
        return Response(status_code=204)


def create_app(model: Model, source, guide: str, **options) -> Starlette:
    """The Starlette app; `options` are `App`'s (size, tab_timeout, max_tabs, clock)."""
    app = App(model, source, guide, **options)
    s = "/api/s/{sid:str}"
    routes = [
        Route("/", app.index),
        Route("/static/{name:str}", app.static),
        Route("/api/session", app.new_session, methods=["POST"]),
        Route(f"{s}/state", app.state),
        Route(f"{s}/alive", app.alive, methods=["POST"]),
        Route(s + "/frame/{index:int}.jpg", app.frame),
        Route(s + "/mask/{index:int}.png", app.mask),
        Route(s + "/gt/{index:int}.png", app.gt),
        Route(f"{s}/stroke", app.stroke, methods=["POST"]),
        Route(f"{s}/clear", app.clear, methods=["POST"]),
        Route(f"{s}/undo", app.undo, methods=["POST"]),
        Route(f"{s}/redo", app.redo, methods=["POST"]),
        Route(f"{s}/restart", app.restart, methods=["POST"]),
        Route(f"{s}/select", app.select, methods=["POST"]),
        Route(f"{s}/run", app.run, methods=["POST"]),
        Route(f"{s}/events", app.events),
        Route(f"{s}/satisfied", app.satisfied, methods=["POST"]),
        Route(f"{s}/export", app.export, methods=["POST"]),
        Route(f"{s}/export.zip", app.export_zip),
        Route(f"{s}/overlay.mp4", app.export_video),
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

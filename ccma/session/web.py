"""``ccma session serve``: the labelling page and its HTTP API (FastAPI, served by uvicorn).

Routes (every one needs the token when the server has one: ``X-CCMA-Token`` header,
``token`` query parameter, or the cookie that the page sets)::

    GET  /                 the page (static/index.html; static/ holds its script and style)
    GET  /api/state        classes, progress, the worker's status, the rounds' chart data
    GET  /api/batch        the images this client holds (claimed for ``hold_s`` seconds) and
                           the ones it answered in the current round
    POST /api/answer       {client, row, kind, label}: 409 when another annotator has it
    GET  /thumb/{row}      a JPEG thumbnail, made once and kept in SESSION/thumbs/
    GET  /image/{row}      the image file itself

Images are found by row id in the session's own list, never by a path from the request;
nothing accepts a file, and a request body over ``MAX_BODY`` bytes is refused. When the
last open image of a round is answered, a worker thread trains the student and queues the
next round; the page keeps working meanwhile and shows the worker's status.
"""

from __future__ import annotations

import hmac
import os
import re
import socket
import threading
import traceback
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel

from ..errors import CCMAError
from .engine import Session
from .store import Conflict

STATIC = Path(__file__).parent / "static"
MAX_BODY = 16384
THUMB_SIZE = 192
LOOPBACK = ("127.0.0.1", "localhost", "::1")
COOKIE = "ccma_token"
CLIENT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Worker:
    """Queues the next round in a background thread whenever the current one is answered."""

    def __init__(self, session: Session, after=None):
        self.session, self.after = session, after
        self.status, self.message = "idle", ""
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="ccma-session-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self.kick()

    def kick(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        warm = False
        while not self._stop:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            self.status, self.message = "busy", "training the student and choosing the next batch"
            try:
                while self.session.advance():
                    pass
                self.status, self.message = "idle", ""
                if self.after is not None:
                    self.after()
                if not warm:
                    self.session.warm_up()
                    warm = True
            except Exception as exc:  # shown on the page; the labels given so far are all kept
                traceback.print_exc()
                self.status, self.message = "error", f"{type(exc).__name__}: {exc}"


def thumbnail(session: Session, row: int) -> Path:
    """The thumbnail of ``row`` (made on first use, written atomically, then reused)."""
    out = session.dir / "thumbs" / f"{row}.jpg"
    if not out.exists():
        source = image_path(session, row)
        out.parent.mkdir(exist_ok=True)
        tmp = out.with_name(f".{row}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with Image.open(source) as im:
                im = im.convert("RGB")
                im.thumbnail((THUMB_SIZE, THUMB_SIZE))
                im.save(tmp, "JPEG", quality=85)
        except OSError:  # moved or damaged since init
            tmp.unlink(missing_ok=True)
            raise HTTPException(404, f"image {row} ({source}) cannot be read") from None
        os.replace(tmp, out)
    return out


def _prefetch(session: Session) -> None:
    """Thumbnails of the open images, made before anyone asks for them."""
    for item in session.store.open_items():
        try:
            thumbnail(session, item.row_id)
        except HTTPException:
            pass  # that image's request will say it cannot be read


def image_path(session: Session, row: int) -> Path:
    rel = session.store.image_path(row) if row >= 0 else None
    if rel is None:
        raise HTTPException(404, f"no image {row}")
    return Path(session.meta["images_root"]) / rel


class AnswerIn(BaseModel):
    client: str
    row: int
    kind: str
    label: int | None = None


def create_app(session: Session, token: str | None = None, hold_s: float = 600.0,
               page_size: int = 48, worker: Worker | None = None) -> FastAPI:
    """The app for ``session``; ``worker`` (started by the caller) queues rounds."""
    app = FastAPI(title="ccma session", docs_url=None, redoc_url=None, openapi_url=None)
    names = session.data.classnames

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if token is not None:
            given = (request.headers.get("x-ccma-token") or request.query_params.get("token")
                     or request.cookies.get(COOKIE) or "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"detail": "a valid token is needed (?token=... or X-CCMA-Token)"}, 401)
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            return JSONResponse({"detail": "request body too large; this server accepts no uploads"}, 413)
        return await call_next(request)

    def client_of(client: str) -> str:
        if not CLIENT_RE.match(client):
            raise HTTPException(400, "client: letters, digits, '-' and '_' only, at most 64")
        return client

    @app.get("/")
    def index():
        page = FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})
        if token is not None:  # the page's style sheet and script then come with the cookie
            page.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return page

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/state")
    def state():
        store = session.store
        answers = store.answers()
        last = store.last_round()
        current = store.round_items(last) if last else []
        rounds = [{"round": r["round"], "n_train": r["n_train"], "n_calibration": r["n_calibration"],
                   "heldout_accuracy": r["heldout_accuracy"], "overlap": r["diagnostics"].get("overlap"),
                   "disagreement": r["diagnostics"].get("top1_disagreement"), "fallback": r["fallback"]}
                  for r in store.rounds()]
        return {"classes": names, "n_images": len(session.data.teacher), "n_answered": len(answers),
                "round": last, "batch_total": len(current),
                "batch_answered": sum(i.row_id in answers for i in current),
                "status": worker.status if worker else "idle", "message": worker.message if worker else "",
                "rounds": rounds}

    @app.get("/api/batch")
    def batch(client: str):
        client = client_of(client)
        store = session.store
        held = store.claim(client, page_size, hold_s)
        answers = store.answers()
        last = store.last_round()
        mine = [i.row_id for i in store.round_items(last) if i.row_id in answers
                and answers[i.row_id].annotator == client] if last else []
        items = {i.row_id: i for i in store.round_items(last)} if last else {}
        items.update({i.row_id: i for i in store.open_items() if i.row_id in held})
        out = []
        for row in dict.fromkeys([*mine, *held]):  # one card per image, answered ones first
            item, a = items[row], answers.get(row)
            out.append({"row": row, "round": item.round, "teacher_set": item.teacher_set,
                        "student_set": item.student_set,
                        "answer": None if a is None else {"kind": a.kind, "label": a.label}})
        out.sort(key=lambda x: (x["round"], items[x["row"]].position))
        return {"round": last, "items": out}

    @app.post("/api/answer")
    def answer(body: AnswerIn):
        client = client_of(body.client)
        try:
            session.answer(body.row, body.kind, body.label, client, source="web",
                           require_queued=True, hold_s=hold_s)
        except Conflict as exc:
            raise HTTPException(409, str(exc)) from None
        except CCMAError as exc:
            raise HTTPException(400, str(exc)) from None
        if worker is not None and not session.store.open_items():
            worker.kick()
        return {"ok": True}

    @app.get("/thumb/{row}")
    def thumb(row: int):
        return FileResponse(thumbnail(session, row), media_type="image/jpeg",
                            headers={"Cache-Control": "private, max-age=86400"})

    @app.get("/image/{row}")
    def image(row: int):
        return FileResponse(image_path(session, row), headers={"Cache-Control": "private, max-age=86400"})

    return app


def serve(session: Session, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
          hold_s: float = 600.0, page_size: int = 48, log=print) -> None:
    """Serve ``session`` until interrupted. Port 0 lets the system choose; the URL is logged."""
    import uvicorn

    if host not in LOOPBACK and not token:
        raise CCMAError(f"--host {host}: serving beyond this machine needs --token")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)  # connections wait in the backlog from now on, before uvicorn is up
    except OSError as exc:
        raise CCMAError(f"--port {port}: cannot listen on {host} ({exc.strerror})") from None
    worker = Worker(session, after=lambda: _prefetch(session))
    app = create_app(session, token, hold_s, page_size, worker)
    worker.start()
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    log(f"serving http://{shown}:{bound}/" + (f"?token={token}" if token else ""))
    try:
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    finally:
        worker.stop()
        sock.close()

"""The web face: a Starlette app served by uvicorn on its own thread, beside the camera loops.

Nothing here is in the frame path: the camera loops hand references to :class:`LiveHub` and
go on; requests read health counters, the hub, or run ``/predict`` through the daemon's own
shared models (their locks are all a camera can wait on, for one face's inference).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from edgeemo import __version__
from edgeemo.analyzer import FaceModels
from edgeemo.config import HTTPConfig
from edgeemo.errors import EdgeemoError
from edgeemo.health import Health
from edgeemo.web.hub import LiveHub
from edgeemo.web.images import BadImage, check_type, decode, image_bytes
from edgeemo.web.metrics import Metrics

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
PUBLIC = ("/", "/webcam", "/favicon.ico")  # pages and their files hold no data: no token
DRAIN_MAX = 64 * 2**20  # an over-limit body is read and dropped up to this, so its sender sees 413
KEEPALIVE_S = 15.0  # an SSE comment this often keeps proxies and dead-client detection honest
BODY_TIMEOUT_S = 20.0  # a /predict body must arrive within this (slow senders hold a slot)
MAX_UPLOADS = 16  # /predict bodies arriving at once; more: 429
MAX_CONNECTIONS = 128  # open connections and streams; more: uvicorn answers 503


class WebError(EdgeemoError):
    prefix = "http: "


@dataclass
class WebContext:
    cfg: HTTPConfig
    health: Health
    hub: LiveHub
    models: FaceModels
    token: str | None


class Guard:
    """Who may ask. With a token, every request but the static pages needs ``Authorization:
    Bearer <token>`` (the pages ask for it and send it with their own requests). Without one
    (loopback only), the Host must be a loopback name too: otherwise a web page the appliance's
    own browser visits could read the API through DNS rebinding."""

    LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = self._problem(scope)
            if problem is not None:
                status, message = problem
                headers = {"WWW-Authenticate": 'Bearer realm="edgeemo"'} if status == 401 else None
                await JSONResponse({"error": message}, status, headers=headers)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _problem(self, scope: Scope) -> tuple[int, str] | None:
        headers = scope["headers"]
        if self.token is None:
            host = next((v for k, v in headers if k == b"host"), b"").decode("latin-1").strip().lower()
            name = host[1 : host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
            if name not in self.LOOPBACK_HOSTS:
                return (
                    403,
                    f"Host {host[:80]!r} is not allowed: without a token the web face answers loopback only",
                )
            return None
        path = scope.get("path", "")
        if path in PUBLIC or path.startswith("/static/"):
            return None
        auth = [v for k, v in headers if k == b"authorization"]
        scheme, _, given = auth[0].strip().partition(b" ") if len(auth) == 1 else (b"", b"", b"")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
            return 401, "a bearer token is required: send Authorization: Bearer <token>"
        return None


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status, headers=headers or None)


class Api:
    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        self.metrics = Metrics(ctx.health, ctx.hub)
        # /predict requests whose body is arriving, and those analysed or waiting (event loop only).
        self._uploading = self._queued = 0
        self._slots: asyncio.Semaphore | None = None
        self._snapshots: dict[str, tuple[int, bytes]] = {}  # camera → (frame seq, JPEG)
        self.stopping = False

    # -- health and metrics ----------------------------------------------------------------
    async def health(self, _: Request) -> Response:
        body = {**self.ctx.health.summary(), "version": __version__}
        return JSONResponse(body, 503 if body["stuck"] else 200)

    async def metrics_text(self, _: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # -- /predict --------------------------------------------------------------------------
    async def predict(self, request: Request) -> Response:
        t0 = time.perf_counter()
        try:
            code, response = await self._predict(request)
        except ClientDisconnect:  # the client left mid-upload: nobody to answer
            code, response = 499, Response(status_code=400)
        except Exception:  # ours, not the client's: say so, keep serving
            log.exception("http: /predict failed on an image it had accepted")
            code, response = 500, _error(500, "the analysis failed; the daemon's log has the details")
        if code == 200:
            self.metrics.predict_seconds.observe(time.perf_counter() - t0)
        self.metrics.requests.labels(str(code)).inc()
        return response

    async def _predict(self, request: Request) -> tuple[int, Response]:
        cfg = self.ctx.cfg
        if self.stopping:
            return 503, _error(503, "edgeemo is stopping", **{"Retry-After": "5"})
        content_type = request.headers.get("content-type", "")
        # Uploads and analyses are bounded apart: slow senders cannot hold the analysis queue.
        if self._uploading >= MAX_UPLOADS or self._queued >= cfg.predict_workers + cfg.predict_queue:
            busy = f"busy: {self._queued} images queued, {self._uploading} arriving; try again"
            return 429, _error(429, busy, **{"Retry-After": "1"})
        try:
            check_type(content_type)
            self._uploading += 1
            try:
                body = await asyncio.wait_for(
                    self._body(request, int(cfg.max_body_mb * 2**20)), BODY_TIMEOUT_S
                )
            finally:
                self._uploading -= 1
            if self._queued >= cfg.predict_workers + cfg.predict_queue:
                busy = f"busy: {self._queued} images are being analysed; try again"
                return 429, _error(429, busy, **{"Retry-After": "1"})
            self._queued += 1
            try:
                if self._slots is None:
                    self._slots = asyncio.Semaphore(cfg.predict_workers)
                async with self._slots:
                    result = await run_in_threadpool(self._analyse, content_type, body)
            finally:
                self._queued -= 1
        except BadImage as e:
            return e.status, _error(e.status, str(e))
        except asyncio.TimeoutError:
            return 408, _error(408, f"the body did not arrive within {BODY_TIMEOUT_S:g} s")
        return 200, JSONResponse(result)

    @staticmethod
    async def _body(request: Request, limit: int) -> bytes:
        too_big = BadImage(413, f"the body is over the limit of {limit / 2**20:g} MB (http.max_body_mb)")
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > DRAIN_MAX:
            raise too_big  # not worth reading: the client may see the connection close instead
        chunks: list[bytes] | None = [] if not length.isdigit() or int(length) <= limit else None
        n = 0
        async for chunk in request.stream():
            n += len(chunk)
            if chunks is not None and n > limit:
                chunks = None  # over: read on, discarding, so the client is still listening for the 413
            if chunks is None and n > DRAIN_MAX:
                break
            if chunks is not None:
                chunks.append(chunk)
        if chunks is None:
            raise too_big
        return b"".join(chunks)

    def _analyse(self, content_type: str, body: bytes) -> dict:
        """On a worker thread: the JSON and base64 too, so a big body never blocks the loop."""
        image, scale = decode(image_bytes(content_type, body), int(self.ctx.cfg.max_image_mpx * 1e6))
        t0 = time.perf_counter()
        faces = [
            {
                "box": [round(v * scale) for v in f["box"]],
                "score": f["score"],
                "emotion": f["emotion"],
                "probabilities": f["scores"],
            }
            for f in self.ctx.models.analyse_image(image)
        ]
        ms = (time.perf_counter() - t0) * 1000
        # The older service's contract: the top level is the largest face's reading.
        largest = max(faces, key=lambda f: f["box"][2] * f["box"][3], default=None)
        return {
            "emotion": largest["emotion"] if largest else None,
            "probabilities": largest["probabilities"] if largest else None,
            "faces": faces,
            "width": round(image.shape[1] * scale),
            "height": round(image.shape[0] * scale),
            "ms": round(ms, 1),
        }

    # -- cameras and events ----------------------------------------------------------------
    def _camera(self, request: Request) -> str:
        name = request.path_params["name"]
        if name not in self.ctx.hub.cameras:
            raise HTTPException(404, f"no camera named {name!r}")
        return name

    async def cameras(self, _: Request) -> Response:
        stats = self.ctx.health.summary()["cameras"]
        hub = self.ctx.hub
        return JSONResponse(
            {
                "snapshots": hub.keep_frames,
                "cameras": {name: {**stats.get(name, {}), **hub.camera_json(name)} for name in hub.cameras},
            }
        )

    async def camera(self, request: Request) -> Response:
        name = self._camera(request)
        stats = self.ctx.health.summary()["cameras"].get(name, {})
        return JSONResponse({**stats, **self.ctx.hub.camera_json(name)})

    async def snapshot(self, request: Request) -> Response:
        name = self._camera(request)
        if not self.ctx.hub.keep_frames:
            return _error(403, "snapshots are off: http.snapshots: true keeps each camera's latest frame")
        frame, faces, seq = self.ctx.hub.snapshot(name)
        if frame is None:
            return _error(404, f"camera {name} has no frame yet (offline or starting)")
        cached = self._snapshots.get(name)
        if cached is None or cached[0] != seq:
            cached = (seq, await run_in_threadpool(annotated_jpeg, frame, faces))
            self._snapshots[name] = cached
        return Response(cached[1], media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def recent_events(self, request: Request) -> Response:
        return JSONResponse({"events": self.ctx.hub.recent_events(request.query_params.get("camera"))})

    async def events(self, request: Request) -> Response:
        hub = self.ctx.hub

        last_id = request.headers.get("last-event-id", "")
        missed = [e for e in hub.recent_events() if last_id.isdigit() and e["seq"] > int(last_id)]

        async def stream() -> Any:
            sub = hub.subscribe()
            try:
                yield "retry: 3000\n\n"
                for item in missed:  # a client coming back (Last-Event-ID): what it missed, if still kept
                    yield f"id: {item['seq']}\ndata: {json.dumps(item, separators=(',', ':'))}\n\n"
                idle = 0.0
                while not self.stopping:
                    try:
                        item = await asyncio.wait_for(sub.queue.get(), 1.0)
                    except asyncio.TimeoutError:
                        idle += 1.0
                        if idle >= KEEPALIVE_S:
                            idle = 0.0
                            yield ": keep-alive\n\n"
                        continue
                    idle = 0.0
                    yield f"id: {item['seq']}\ndata: {json.dumps(item, separators=(',', ':'))}\n\n"
            finally:
                hub.unsubscribe(sub)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    # -- pages -----------------------------------------------------------------------------
    async def page_index(self, _: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def page_webcam(self, _: Request) -> Response:
        return FileResponse(STATIC / "webcam.html")


def annotated_jpeg(frame: np.ndarray, faces: list[dict]) -> bytes:
    img = frame.copy()  # the camera's frame is shared with its loop: draw on our own copy
    scale = max(1.0, img.shape[1] / 960)
    for f in faces:
        x, y, w, h = f["box"]
        color = (80, 200, 80) if f["emotion"] else (160, 160, 160)
        cv2.rectangle(img, (x, y), (x + w, y + h), color, max(2, int(2 * scale)))
        label = f"{f['emotion']} {f['confidence']:.2f}" if f["emotion"] else "face"
        cv2.putText(
            img, label, (x, max(0, y - int(6 * scale))), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, color,
            max(1, int(2 * scale)), cv2.LINE_AA,
        )  # fmt: skip
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def make_app(ctx: WebContext) -> tuple[ASGIApp, Api]:
    api = Api(ctx)

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, exc.detail)

    app = Starlette(
        routes=[
            Route("/", api.page_index),
            Route("/webcam", api.page_webcam),
            Route("/health", api.health),
            Route("/metrics", api.metrics_text),
            Route("/predict", api.predict, methods=["POST"]),
            Route("/api/cameras", api.cameras),
            Route("/api/cameras/{name}", api.camera),
            Route("/api/cameras/{name}/latest.jpg", api.snapshot),
            Route("/api/events", api.events),
            Route("/api/events/recent", api.recent_events),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        exception_handlers={HTTPException: http_error},
    )
    return Guard(app, ctx.token), api


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, made here so a taken port stops the daemon before any camera opens."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(64)
    except OSError as e:
        raise WebError(
            f"cannot listen on {host}:{port}: {e.strerror or e}; another service may hold the port "
            "(set http.port or --http HOST:PORT)"
        ) from None
    sock.setblocking(False)
    return sock


class _OncePerMinute(logging.Filter):
    """The same message at most once a minute (a client flood can make asyncio log one per
    refused connection), and a task cancelled by a stop is not an error."""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError):
            return False
        key, now = f"{record.name}:{record.msg}", time.monotonic()
        if now - self._last.get(key, -60.0) < 60.0:
            return False
        self._last[key] = now
        return True


def quiet_flooding_loggers() -> None:
    for name in ("asyncio", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _OncePerMinute) for f in logger.filters):
            logger.addFilter(_OncePerMinute())


def raise_fd_limit() -> None:
    """Each HTTP client holds a file descriptor; systemd's default soft limit is 1024 of a far
    higher hard one. Raise the soft limit to the hard one (allowed to any process)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class WebServer:
    """uvicorn on a thread of its own, stopped with the daemon."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        self.app, self.api = make_app(ctx)
        self.sock = bind(ctx.cfg.host, ctx.cfg.port)
        self.port: int = self.sock.getsockname()[1]
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)  # our own line says it all
        quiet_flooding_loggers()
        raise_fd_limit()
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,  # no request lines in the journal; /metrics counts them
            lifespan="off",
            ws="none",
            http="h11",
            loop="asyncio",
            timeout_graceful_shutdown=2,
            server_header=False,
            limit_concurrency=MAX_CONNECTIONS,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._serve, name="http", daemon=True)

    @property
    def url(self) -> str:
        host = self.ctx.cfg.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"

    def _serve(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except Exception:  # the web face must never take the cameras down with it
            log.exception("http: the web server stopped; cameras and MQTT go on without it")

    def start(self) -> None:
        self.thread.start()
        guard = "bearer token required" if self.ctx.token else "no token (loopback only)"
        snaps = "snapshots on" if self.ctx.cfg.snapshots else "snapshots off"
        log.info("http: web face on %s (%s, %s)", self.url, guard, snaps)

    def stop(self) -> None:
        self.api.stopping = True
        self.server.should_exit = True
        self.thread.join(timeout=5.0)
        self.sock.close()

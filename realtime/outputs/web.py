"""The web view (``--serve``): a page with the live annotated video, detections, metrics.

A sink like the others: the run hands it each processed frame (:meth:`WebView.write`),
which only keeps a reference to the newest one and, when someone watches, wakes
the server. The server (aiohttp, in its own thread and event loop) does all the
work: it encodes the newest frame to JPEG once, on demand, shared by every viewer,
and streams it as Motion-JPEG (``multipart/x-mixed-replace``, which every browser
shows in an ``<img>``). A viewer that reads slowly or not at all only waits on
its own socket and skips to the newest frame when it catches up; the pipeline
never waits on a socket, and while nobody watches nothing is encoded.

With several sources (``tiles``, a :class:`realtime.outputs.tiles.TileHolder` the sources'
writers fill) the video is their mosaic, composed only when a viewer asks for a frame.

Routes: ``/`` the page, ``/stream`` the video (Motion-JPEG), ``/frame?after=N`` the
newest frame's JPEG once it is newer than frame N (a long poll: what the page uses, one
frame in flight per viewer, so no frame ever waits in a socket behind another; headers
``X-Camloc-Seq`` and ``X-Camloc-Arrival``, the frame's arrival in wall-clock ms, which
the ``/stream`` parts carry too), ``/api/detections`` the newest
frame's JSONL record plus fps and provider (several sources: ``sources``, the newest
record of each), ``POST /api/control`` the window's
keys (heatmap, boxes, next, prev; JSON from the page's own origin only, see
:func:`realtime.outputs.webguard.why_not_same_origin`), ``/metrics`` Prometheus text.
Connections are bounded and slow requests closed (:mod:`realtime.outputs.webguard`).
With a token (``--token`` or ``CAMLOC_TOKEN``) every route needs it, as ``?token=``, an
``Authorization: Bearer`` header or the cookie the page sets.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hmac
import json
import logging
import threading
from pathlib import Path
from typing import Any, Self

from aiohttp import web

from realtime.model.draw import RenderOptions
from realtime.outputs.latency import rings_of
from realtime.outputs.prom import Metrics, run_counters
from realtime.outputs.serve import LOOPBACK as _LOOPBACK
from realtime.outputs.serve import ServeError, listen_urls, local_ips
from realtime.outputs.sinks import Sink, record
from realtime.outputs.webframes import FrameRoutes
from realtime.outputs.webguard import (
    ConnectionGuard,
    GuardedSite,
    Throttle,
    default_limits,
    why_not_same_origin,
)

__all__ = ["ACTIONS", "WebView"]

log = logging.getLogger(__name__)

ACTIONS = ("heatmap", "boxes", "next", "prev")
PAGE = Path(__file__).with_name("web_page.html")
_COOKIE = "camloc_token"
_LOOPBACKS = ("localhost", "::1")  # and 127.*
_WAKE_S = 0.5        # stream handlers look up at least this often (to notice shutdown)
_KEEPALIVE_S = 15.0  # an idle kept-alive connection (or its next request's headers): closed
_BODY_S = 10.0       # a request body that takes longer: 408
_MAX_BODY = 16 * 1024  # the controls' bodies are tiny


def _given_token(request: web.Request) -> str:
    auth = request.headers.get("Authorization", "")
    bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    return (request.query.get("token") or bearer or request.headers.get("X-Camloc-Token")
            or request.cookies.get(_COOKIE) or "")


class WebView(FrameRoutes, Sink):
    """Serve the live view of a run on ``host``:``port`` (port 0: any free port).

    ``options`` are the render options the pipeline draws with (the page's
    controls change them, as the window's keys do); ``topk`` the classes per
    frame. :meth:`start` binds (a :class:`ServeError` if it cannot), :meth:`attach`
    gives it the run for fps and counters, :meth:`write` feeds it frames: a
    :class:`~realtime.outputs.sinks.Sink` of the pipeline, fed from the render thread. With
    ``tiles`` (several sources) it shows their mosaic instead, and is not fed itself.
    """

    stage = "web"
    needs_image = True
    own_latency = True  # measured when a frame is sent to a viewer, not when it is handed over

    def __init__(self, host: str = _LOOPBACK, port: int = 8080, token: str | None = None, *,
                 options: RenderOptions | None = None, topk: int = 1, quality: int = 80,
                 tiles: Any = None, max_connections: int | None = None,
                 per_client: int | None = None, header_timeout: float = 10.0) -> None:
        self.host, self.port, self.token = host, port, token or None
        total, each = default_limits()
        self.throttle = Throttle()  # socket trouble: one line per kind every 10 s
        self.guard = ConnectionGuard(max_connections or total, per_client or each,
                                     header_timeout, self.throttle)
        self.options = options or RenderOptions()
        self.topk, self.quality = topk, quality
        self.tiles = tiles  # realtime.outputs.tiles.TileHolder: several sources, one mosaic
        if tiles is not None:
            tiles.on_put = self._notify
        self.urls: list[str] = []
        self.viewers = 0     # open video streams
        self.encoded = 0     # JPEGs encoded (stays 0 while nobody watches)
        self.control_refused = 0  # control requests not from the page (cross-origin, not JSON)
        self._run: Any = None
        self._metrics = Metrics(self._counters, lambda: self.viewers, self._latencies)
        self._lock = threading.Lock()
        self._latest: Any = None  # newest Processed item
        self._seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._new_frame: asyncio.Event | None = None
        self._closing = False
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._encoder = concurrent.futures.ThreadPoolExecutor(1, "camloc-jpeg")
        self._encode_lock: asyncio.Lock | None = None
        # (sequence number, JPEG, the frame's arrival: time.monotonic(); a mosaic's newest)
        self._jpeg_cache: tuple[int, bytes, float] = (0, b"", 0.0)

    # -- the run's side (any thread; never blocks) -------------------------------------
    def attach(self, run: Any) -> None:
        """The pipeline whose fps, provider and counters the page and /metrics show."""
        self._run = run

    def write(self, item: Any) -> None:
        """Take one processed frame (``realtime.pipeline.runner.Processed``); its image must not
        be drawn on afterwards. Keeps a reference; wakes the streams if anyone watches."""
        with self._lock:
            self._latest = item
            self._seq += 1
        self._metrics.observe(item.times)
        self._notify()

    def _notify(self) -> None:
        """A new frame: wake the streams if anyone watches (else nothing)."""
        loop = self._loop
        if self.viewers and loop is not None and not self._closing:
            with contextlib.suppress(RuntimeError):  # loop closed meanwhile
                loop.call_soon_threadsafe(self._wake)

    def _counters(self) -> dict[str, Any]:
        return run_counters(self._run) if self._run is not None else {}

    def _latencies(self) -> dict[tuple[str, str], Any]:
        """Each output's latency ring by (source, output): one source's outputs and the
        run's shared ones under source "", each source's own under its name when there are
        several; this view's own (sent) as ("", "web")."""
        run = self._run
        feeds = getattr(run, "feeds", ())
        rings = {("", k): r for k, r in rings_of(getattr(run, "sinks", ())).items()}
        for f in feeds:
            for k, r in rings_of(f.sinks).items():
                rings.setdefault((f.name if len(feeds) > 1 else "", k), r)
        if self.latency.count:
            rings[("", "web")] = self.latency
        return rings

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> Self:
        """Bind and serve in a background thread; return once listening."""
        self._thread = threading.Thread(target=self._serve, name="camloc-web", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            self._thread.join()
            self._encoder.shutdown()
            exc = self._start_error
            raise ServeError(f"--serve {self.host}:{self.port}: cannot listen: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
        return self

    def close(self) -> None:
        """Stop serving: streams end, the thread is joined."""
        self._closing = True
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._stop.set)  # type: ignore[union-attr]
            thread.join(10.0)
        self._encoder.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Self:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(self.throttle.loop_handler)  # no traceback storms
        try:
            loop.run_until_complete(self._startup())
        except (OSError, ValueError, UnicodeError) as exc:
            self._start_error = exc
            self._ready.set()
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            loop.close()
            return
        self._loop = loop
        self._ready.set()
        try:
            loop.run_until_complete(self._stop.wait())  # type: ignore[union-attr]
        finally:
            self._closing = True
            loop.run_until_complete(self._shutdown())
            loop.close()

    async def _shutdown(self) -> None:
        await self._runner.cleanup()  # type: ignore[union-attr]
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in rest:  # streams still stuck on a stalled socket
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    async def _startup(self) -> None:
        self._stop, self._new_frame = asyncio.Event(), asyncio.Event()
        self._encode_lock = asyncio.Lock()
        app = web.Application(middlewares=[self._errors, self._auth],
                              client_max_size=_MAX_BODY)
        app.add_routes([web.get("/", self._page), web.get("/stream", self._stream),
                        web.get("/frame", self._frame),
                        web.get("/api/detections", self._detections),
                        web.post("/api/control", self._control),
                        web.get("/metrics", self._metrics_text)])
        from realtime.outputs.events.webroutes import add_event_routes  # docs/EVENTS.md

        add_event_routes(app, self)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=1.0, keepalive_timeout=_KEEPALIVE_S,
                                     lingering_time=2.0)
        await self._runner.setup()
        await GuardedSite(self._runner, self.host, self.port, self.guard).start()
        port = self._runner.addresses[0][1]
        self.port = port
        self.urls = listen_urls(self.host, port, local_ips())

    # -- the server's side (its event loop) ----------------------------------------------
    def _wake(self) -> None:
        event, self._new_frame = self._new_frame, asyncio.Event()
        event.set()  # type: ignore[union-attr]

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """A handler's unexpected failure: a 500 and one throttled line, no traceback."""
        try:
            return await handler(request)
        except (web.HTTPException, asyncio.CancelledError, ConnectionError):
            raise
        except Exception as exc:  # noqa: BLE001 - one line; -vv users debug with the log
            self.throttle(("error", request.path, type(exc).__name__), logging.ERROR,
                          f"web view: {request.method} {request.path[:100]!r} failed: "
                          f"{type(exc).__name__}: {str(exc)[:200]}")
            raise web.HTTPInternalServerError(text="camloc: internal error\n") from None

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.token is not None and not hmac.compare_digest(
                _given_token(request).encode(), self.token.encode()):
            raise web.HTTPUnauthorized(
                text="camloc: this view needs its token: ?token=... or "
                     "Authorization: Bearer ...\n",
                headers={"WWW-Authenticate": 'Bearer realm="camloc"'})
        return await handler(request)

    async def _page(self, request: web.Request) -> web.Response:
        resp = web.Response(text=PAGE.read_text(encoding="utf-8"), content_type="text/html",
                            headers={"Cache-Control": "no-store"})
        if self.token is not None and request.query.get("token"):
            resp.set_cookie(_COOKIE, self.token, httponly=True, samesite="Strict")
        return resp

    async def _detections(self, request: web.Request) -> web.Response:
        with self._lock:
            item = self._latest
        body: dict[str, Any] = {"frame": None, "source": None, "time_ms": None,
                                "detections": []}
        if self.tiles is not None:
            body = {"sources": self.tiles.records()}
        elif item is not None:
            body = record(item.frame, item.result)
        c = self._counters()
        o = self.options
        body.update(fps=round(float(c.get("fps", 0.0)), 2), provider=c.get("provider", ""),
                    processed=c.get("frames_processed", 0),
                    dropped=c.get("frames_dropped", 0), viewers=self.viewers,
                    latency_ms={f"{src}/{out}" if src else out: r.percentiles(0.5)
                                for (src, out), r in self._latencies().items()},
                    running=not self._closing,
                    options={"heatmap": o.heatmap, "boxes": o.boxes, "index": o.index,
                             "topk": self.topk})
        return web.json_response(body, headers={"Cache-Control": "no-store"},
                                 dumps=_dumps)

    async def _control(self, request: web.Request) -> web.Response:
        why = why_not_same_origin(request.headers, self.host.startswith("127.")
                                  or self.host in _LOOPBACKS)
        if why is not None:
            self.control_refused += 1
            self.throttle("cross-origin", logging.WARNING,
                          f"web view: refused a control request from {request.remote}: {why}")
            status = web.HTTPUnsupportedMediaType if why.startswith("expects") \
                else web.HTTPForbidden
            raise status(text=f"camloc: the controls take JSON from this page only: {why}\n")
        try:
            body = await asyncio.wait_for(request.read(), _BODY_S)
            action = json.loads(body).get("action")
        except TimeoutError:
            raise web.HTTPRequestTimeout(text="camloc: request body too slow\n") from None
        except (ValueError, AttributeError, RecursionError):  # not JSON, not an object, deep
            raise web.HTTPBadRequest(text='expected JSON {"action": ...}\n') from None
        if action not in ACTIONS:
            raise web.HTTPBadRequest(text=f"action must be one of {', '.join(ACTIONS)}\n")
        self.options.apply(action, self.topk)
        o = self.options
        return web.json_response({"heatmap": o.heatmap, "boxes": o.boxes, "index": o.index,
                                  "topk": self.topk})

    async def _metrics_text(self, request: web.Request) -> web.Response:
        body, ctype = self._metrics.render()
        return web.Response(body=body, headers={"Content-Type": ctype})


def _dumps(obj: Any) -> str:
    from realtime.outputs.sinks import json_default

    return json.dumps(obj, default=json_default)

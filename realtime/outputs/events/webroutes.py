"""Events in the web view: ``/api/events``, ``/events/<id>.jpg``, ``/events/<id>.mp4``,
and their counters in ``/metrics``.

The routes are added to the web view's aiohttp application when it starts
(:func:`add_event_routes`, called from realtime.outputs.web) and answer from the
:class:`~realtime.outputs.events.board.EventBoard` that :func:`attach_board` gives
the view once the events sinks exist (before that: no events). They sit behind the
same token check as every other route.

``/api/events?source=S&label=L&after=T&before=T&limit=N``: recent events, newest
first (``label`` also takes a class id; ``after``/``before`` compare the start time,
Unix seconds), each the newest record of the event (its end record once ended).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

__all__ = ["EventsCollector", "add_event_routes", "attach_board"]

_VIEW: web.AppKey[Any] = web.AppKey("camloc_view", object)
_ID = re.compile(r"^[0-9]+\.[0-9]+-[a-z0-9]+$")


def attach_board(view: Any, board: Any) -> None:
    """Give the web view ``view`` the run's event board: routes answer from it, /metrics
    counts its events and deliveries, messages carry the view's URLs."""
    view.events_board = board
    urls = list(getattr(view, "urls", None) or [])
    if urls:  # what another machine can reach, when the view listens beyond loopback
        away = [u for u in urls if "//127." not in u and "//localhost" not in u
                and "//[::1]" not in u]
        board.base_url = (away or urls)[0].rstrip("/")
    metrics = getattr(view, "_metrics", None)
    if metrics is not None:
        metrics.registry.register(EventsCollector(board))


class EventsCollector(Collector):
    """``camloc_events_total{source,label}``, ``camloc_event_messages_total{target,
    outcome}`` and ``camloc_event_files_skipped_total{kind}``, read at scrape time."""

    def __init__(self, board: Any) -> None:
        self.board = board

    def collect(self) -> Iterator[Any]:
        b = self.board
        ev = CounterMetricFamily("camloc_events", "Events started, per source and class",
                                 labels=["source", "label"])
        for (source, label), n in sorted(b.counts.items()):
            ev.add_metric([source, label], float(n))
        yield ev
        msg = CounterMetricFamily("camloc_event_messages",
                                  "Event messages per target: delivered, dropped, retried",
                                  labels=["target", "outcome"])
        for t in b.targets:
            name = f"{t.kind}:{t.name}"
            for outcome in ("delivered", "dropped", "retries"):
                msg.add_metric([name, outcome], float(getattr(t, outcome)))
        yield msg
        sk = CounterMetricFamily("camloc_event_files_skipped",
                                 "Snapshots and clips not written (disk nearly full), frames "
                                 "the clip encoder skipped (behind)", labels=["kind"])
        for kind in ("snapshot", "clip", "clip_frame"):
            sk.add_metric([kind], float(b.skipped[kind]))
        yield sk


def _board(request: web.Request) -> Any:
    return getattr(request.app[_VIEW], "events_board", None)


def _number(request: web.Request, key: str) -> float | None:
    raw = request.query.get(key)
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{key} must be a number (Unix seconds)\n") from None


async def _api_events(request: web.Request) -> web.Response:
    board = _board(request)
    limit = _number(request, "limit")
    events = [] if board is None else board.recent(
        request.query.get("source") or None, request.query.get("label") or None,
        _number(request, "after"), _number(request, "before"),
        max(1, min(1000, int(limit))) if limit is not None else 50)
    return web.json_response({"events": events}, headers={"Cache-Control": "no-store"})


async def _event_file(request: web.Request) -> web.StreamResponse:
    event_id, suffix = request.match_info["id"], "." + request.match_info["ext"]
    board = _board(request)
    path = None if board is None or not _ID.match(event_id) else board.file(event_id, suffix)
    if path is None:
        raise web.HTTPNotFound(text=f"no {suffix[1:]} for event {event_id}\n")
    return web.FileResponse(path, headers={
        "Content-Type": "image/jpeg" if suffix == ".jpg" else "video/mp4",
        "Cache-Control": "private, max-age=3600"})


_PANEL = Path(__file__).with_name("panel.js")


async def _panel(request: web.Request) -> web.Response:
    return web.Response(text=_PANEL.read_text(encoding="utf-8"),
                        content_type="application/javascript",
                        headers={"Cache-Control": "no-store"})


def add_event_routes(app: web.Application, view: Any) -> None:
    """Add the events routes to ``app``, answering from ``view.events_board``."""
    app[_VIEW] = view
    app.add_routes([web.get("/api/events", _api_events), web.get("/events.js", _panel),
                    web.get(r"/events/{id}.{ext:(jpg|mp4)}", _event_file)])

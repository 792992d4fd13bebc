"""The events options of ``python -m realtime`` and the sinks they make.

:func:`add_event_arguments` declares the flags on a parser; :func:`check_event_args`
checks them before anything is opened (a user error: one line, status 2);
:func:`event_sinks` makes the events sink of one source, sharing one board and one
set of delivery targets between every source of the run (and with the web view,
when one runs). Imports here stay cheap: paho-mqtt and PyAV load only when used.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import threading
from pathlib import Path
from typing import Any

from realtime.errors import UsageError

__all__ = ["add_event_arguments", "check_event_args", "event_sinks", "parse_mqtt"]

log = logging.getLogger(__name__)


def add_event_arguments(p: argparse.ArgumentParser) -> None:
    """The ``--events`` flags (docs/EVENTS.md)."""
    g = p.add_argument_group("events (docs/EVENTS.md)")
    a = g.add_argument
    a("--events", default=None, metavar="DIR",
      help="write events here: events.jsonl, a snapshot and a clip per event")
    a("--event-classes", default=None, metavar="C,...",
      help="classes that make events, labels or ids (default: every class)")
    a("--event-min-score", type=float, default=0.2, metavar="S",
      help="least score of a class to count as present (default: %(default)s)")
    a("--event-min-duration", type=float, default=0.5, metavar="S",
      help="seconds a class must be present to start an event (default: %(default)s)")
    a("--event-end-gap", type=float, default=2.0, metavar="S",
      help="seconds of absence that end an event (default: %(default)s)")
    a("--event-zone", action="append", default=[], metavar="ZONE",
      help="NAME:x1,y1,x2,y2,x3,y3,...: a named polygon in frame pixels; with zones, only "
           "what is inside one counts (repeatable)")
    a("--event-zone-test", choices=("box", "peak"), default="box", metavar="T",
      help="inside a zone means: a box's centre (box) or the CAM's peak (peak) "
           "(default: %(default)s)")
    a("--event-pre", type=float, default=5.0, metavar="S",
      help="seconds of clip before an event's start (default: %(default)s)")
    a("--event-post", type=float, default=5.0, metavar="S",
      help="seconds of clip after an event's end (default: %(default)s)")
    a("--event-max-clip", type=float, default=120.0, metavar="S",
      help="longest clip kept in memory and written (default: %(default)s)")
    a("--event-clip-size", type=int, default=640, metavar="N",
      help="clips' longer side in pixels, 0: the frame's (default: %(default)s)")
    a("--no-event-clips", action="store_true", help="events without clips")
    a("--mqtt", default=None, metavar="HOST:PORT",
      help="publish events to this MQTT broker (port 1883 by default); log in with "
           "$CAMLOC_MQTT_USERNAME and $CAMLOC_MQTT_PASSWORD")
    a("--mqtt-prefix", default="camloc", metavar="P",
      help="topics <P>/<source>/events and <P>/available (default: %(default)s)")
    a("--webhook", action="append", default=[], metavar="URL",
      help="POST each event message here as JSON (repeatable); $CAMLOC_WEBHOOK_TOKEN "
           "is sent as a Bearer token")
    a("--event-retry", type=float, default=60.0, metavar="S",
      help="seconds a message is retried before it is dropped (default: %(default)s)")


def parse_mqtt(text: str) -> tuple[str, int]:
    """``HOST[:PORT]`` -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, "1883"
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--mqtt {text}: expected HOST or HOST:PORT")
    return host, int(port)


def _needs_events(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "events", None))


def check_event_args(args: argparse.Namespace) -> Any:
    """Check the events flags; the :class:`~realtime.outputs.events.rules.Rules` (None
    without ``--events``). Raises UsageError with one line."""
    from realtime.outputs.events.rules import Rules, parse_zone

    if not _needs_events(args):
        if args.mqtt or args.webhook:
            raise UsageError("--mqtt and --webhook send events: add --events DIR")
        return None
    folder = Path(args.events)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--events {args.events}: not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".camloc-write-test-"):
            pass  # a name of its own: several sources check the same folder at once
    except OSError as exc:
        raise UsageError(f"--events {args.events}: cannot write: {exc.strerror or exc}"
                         ) from None
    if args.event_pre < 0 or args.event_post < 0 or args.event_max_clip <= 0 \
            or args.event_clip_size < 0:
        raise UsageError("--event-pre, --event-post and --event-clip-size must be >= 0, "
                         "--event-max-clip > 0")
    if args.mqtt:
        parse_mqtt(args.mqtt)
        try:
            import paho.mqtt  # noqa: F401
        except ImportError:
            raise UsageError("--mqtt needs paho-mqtt: pip install paho-mqtt") from None
    for url in args.webhook:
        import urllib.parse

        from realtime.outputs.events.deliver import redact

        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"--webhook {redact(url)}: give an http:// or https:// URL")
    classes = None
    if args.event_classes:
        names = [c.strip() for c in args.event_classes.split(",") if c.strip()]
        classes = frozenset(int(c) if c.isdigit() else c for c in names)
    try:
        return Rules(classes, args.event_min_score, args.event_min_duration,
                     args.event_end_gap, tuple(parse_zone(z) for z in args.event_zone),
                     args.event_zone_test)
    except ValueError as exc:
        raise UsageError(f"events: {exc}") from None


class _Shared:
    """The board and delivery targets of one run, closed with its last events sink."""

    def __init__(self, args: argparse.Namespace, web: Any) -> None:
        from realtime.outputs.events.board import EventBoard
        from realtime.outputs.events.deliver import MqttTarget, WebhookTarget

        self.board = EventBoard()
        self.targets: list[Any] = []
        if args.mqtt:
            host, port = parse_mqtt(args.mqtt)
            self.targets.append(MqttTarget(host, port, args.mqtt_prefix,
                                           retry_s=args.event_retry))
        for url in args.webhook:
            try:
                self.targets.append(WebhookTarget(url, retry_s=args.event_retry))
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        self.board.targets = self.targets
        self.sinks = 0
        self._lock = threading.Lock()
        if web is not None:
            from realtime.outputs.events.webroutes import attach_board

            attach_board(web, self.board)

    def release(self) -> None:
        with self._lock:
            self.sinks -= 1
            last = self.sinks == 0
        if last:
            for t in self.targets:
                t.close()


def event_sinks(args: argparse.Namespace, source_name: str, fps: float,
                size: tuple[int, int] | None = None, web: Any = None) -> list[Any]:
    """The events sink of one source (a list: empty without ``--events``). Call once per
    source; the sources of a run share the board, the MQTT connection and the webhooks.
    ``size`` is not needed (clips take the first frame's) and kept for symmetry."""
    rules = check_event_args(args)
    if rules is None:
        return []
    from realtime.outputs.events.sink import EventsSink

    shared = getattr(args, "_camloc_events", None)
    if shared is None:
        shared = _Shared(args, web)
        args._camloc_events = shared
    with shared._lock:
        shared.sinks += 1
    try:
        return [EventsSink(args.events, source_name, fps, rules, board=shared.board,
                           targets=shared.targets, prefix=args.mqtt_prefix,
                           pre=args.event_pre, post=args.event_post,
                           max_clip=args.event_max_clip, clips=not args.no_event_clips,
                           clip_size=args.event_clip_size,
                           on_close=shared.release)]
    except BaseException:
        shared.release()
        raise

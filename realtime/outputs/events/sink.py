"""The events output: a pipeline sink per source that turns frames into events.

On the render thread :meth:`EventsSink.write` only runs the rules (a few
comparisons per class) and hands the frame's annotated image to a worker thread
through a bounded queue; it never waits: when the worker falls behind, frames for
the clip are skipped (counted) rather than slowing the frames. The worker encodes
each frame once into the clip ring (realtime.outputs.events.clips), writes
snapshots, clips and ``events.jsonl`` lines (realtime.outputs.events.store), and
hands messages to the delivery targets (realtime.outputs.events.deliver), which
have their own threads and queues.

An event's start line and ``new`` message go out as soon as it is confirmed
(``min_duration`` after its first frame); its end line and ``end`` message once its
clip is complete, ``post`` seconds after its last frame (``end_gap`` if longer), so
whoever gets the ``end`` message can fetch the clip at once.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from realtime.outputs.events.board import EventBoard
from realtime.outputs.events.clips import LIVE_SUFFIX, LiveClip, PacketRing, write_clip
from realtime.outputs.events.record import Event, message, new_id
from realtime.outputs.events.rules import Rules, Track, Tracker, sightings
from realtime.outputs.events.store import EventLog, has_room
from realtime.outputs.sinks import Sink

__all__ = ["EventsSink", "topic_for"]

log = logging.getLogger(__name__)

_FRAMES_QUEUED = 16          # frames waiting for the clip encoder at most
_RESERVE = 64 * 1024 * 1024  # clips and snapshots stop when less than this stays free
_BOX = (0, 255, 255)         # the event's box on its snapshot (yellow, BGR)


def topic_for(prefix: str, source: str) -> str:
    """``<prefix>/<source>/events`` with MQTT's special characters in the name replaced."""
    safe = "".join("_" if c in "/+#" or ord(c) < 32 else c for c in source) or "source"
    return f"{prefix}/{safe}/events"


def snapshot_image(image: np.ndarray, rec: dict[str, Any]) -> np.ndarray:
    """A copy of ``image`` with the event's box and label drawn on it."""
    out = image.copy()
    box = rec.get("box") or []
    if len(box) == 4:
        x1, y1, x2, y2 = box
        cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), _BOX, 2)
        text = f"{rec['label']} {rec['max_score']:.2f}"
        cv2.putText(out, text, (x1 + 3, max(14, y1 - 5)), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    _BOX, 1, cv2.LINE_AA)
    return out


class EventsSink(Sink):
    """Events of one source (``name``) into ``folder``; see the module's docstring.

    ``rules`` decide what is an event; ``pre``/``post`` seconds of clip around it
    (``clips=False``: none); ``board`` (shared by the sources of a run) feeds the web
    view and /metrics; ``targets`` get each message (MQTT, webhooks).
    """

    stage = "events"
    needs_image = True

    def __init__(self, folder: str | os.PathLike[str], name: str, fps: float,
                 rules: Rules | None = None, *, board: EventBoard | None = None,
                 targets: list[Any] | tuple[Any, ...] = (), prefix: str = "camloc",
                 pre: float = 5.0, post: float = 5.0, max_clip: float = 120.0,
                 clips: bool = True, clip_size: int = 640, reserve: int = _RESERVE,
                 on_close: Any = None) -> None:
        if pre < 0 or post < 0 or max_clip <= 0:
            raise ValueError("pre and post must be >= 0 seconds, max_clip > 0")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.name, self.fps = name, float(fps) if fps and fps > 0 else 25.0
        self.rules = rules or Rules()
        self.board = board if board is not None else EventBoard()
        self.targets, self.topic = list(targets), topic_for(prefix, name)
        self.pre, self.post, self.max_clip = pre, post, max_clip
        self.clips, self.clip_size, self.reserve = clips, clip_size, reserve
        self.on_close = on_close  # called once closed (the run's shared delivery counts sinks)
        self.tracker = Tracker(self.rules)
        self.log = EventLog(self.folder)
        self.started = self.ended = 0
        self.updated = 0   # update messages (a better snapshot or a new zone)
        self.frames_skipped = 0      # frames the clip encoder never got (worker behind)
        self.clips_written = self.clips_skipped = self.snapshots_skipped = 0
        self.errors = 0
        self.worker_cpu_s = 0.0      # CPU time of the events thread (the bench's cost figure)
        self._best: dict[int, np.ndarray] = {}  # class id -> image of its best frame
        self._cv = threading.Condition()
        self._ops: collections.deque[tuple[Any, ...]] = collections.deque()
        self._frames_queued = 0
        self._closed = False
        self._ring: PacketRing | None = None
        self._waiting: list[dict[str, Any]] = []  # ended events waiting for their post-roll
        self._open: dict[str, float] = {}        # id -> start (s) of events still open
        self._live: dict[str, LiveClip] = {}     # id -> its clip written as it happens
        self._now = 0.0
        for rec in self.log.recover(name):
            self.board.update(rec, self.folder)
            self._send("end", rec, None)
        self._thread = threading.Thread(target=self._work, name="camloc-events", daemon=True)
        self._thread.start()

    # -- the render thread ---------------------------------------------------------------
    def write(self, item: Any) -> None:
        """Run the rules on one processed frame; queue what the worker must do."""
        frame, image = item.frame, item.image if item.image is not None else item.frame.image
        t, wall = frame.time_ms / 1e3, time.time()
        changes = self.tracker.update(frame.index, t, wall, sightings(item.result, self.rules))
        for tr in self.tracker.tracks.values():
            if tr.best_frame == frame.index:
                self._best[tr.class_id] = image  # drawn once, never drawn on again
        with self._cv:
            for kind, tr in changes:
                self._ops.append((kind, self._record(kind, tr), self._best.get(tr.class_id)))
                if kind == "end":
                    self._best.pop(tr.class_id, None)
            if self.clips:
                if self._frames_queued < _FRAMES_QUEUED:
                    self._ops.append(("frame", image, t))
                    self._frames_queued += 1
                else:
                    self.frames_skipped += 1
                    self.board.skipped["clip_frame"] += 1
            self._cv.notify()

    def _record(self, kind: str, tr: Track) -> dict[str, Any]:
        if tr.event is None:
            tr.event = Event(new_id(tr.first_wall), self.name, tr.class_id, tr.label,
                             list(tr.zones), tr.first_wall, tr.first_t * 1e3, tr.first_frame,
                             tr.best_score, list(tr.best_box), tr.best_frame)
            self.started += 1
        ev = tr.event
        ev.zones, ev.max_score, ev.box, ev.best_frame = (list(tr.zones), tr.best_score,
                                                         list(tr.best_box), tr.best_frame)
        if kind == "end":
            ev.end_time, ev.end_ms, ev.end_frame = tr.last_wall, tr.last_t * 1e3, tr.last_frame
            self.ended += 1
        elif kind == "update":
            self.updated += 1
        return {"type": kind, **ev.to_dict()}

    def close(self) -> None:
        """End open events at their last frame, finish clips, lines and messages."""
        if self._closed:
            return
        with self._cv:
            for kind, tr in self.tracker.finish():
                rec = self._record(kind, tr)
                rec["ended_by"] = "stream end"
                self._ops.append((kind, rec, self._best.pop(tr.class_id, None)))
            self._closed = True
            self._cv.notify()
        self._thread.join()
        self.log.close()
        if self.on_close is not None:
            self.on_close()

    # -- the worker ----------------------------------------------------------------------
    def _work(self) -> None:
        try:
            self._loop()
        finally:
            self.worker_cpu_s = time.thread_time()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._ops and not self._closed:
                    self._cv.wait()
                if not self._ops:
                    break
                op = self._ops.popleft()
                if op[0] == "frame":
                    self._frames_queued -= 1
            try:
                getattr(self, f"_do_{op[0]}")(*op[1:])
            except Exception:  # noqa: BLE001 - the worker must outlive one bad event
                self.errors += 1
                log.exception("events %s: %s failed", self.name, op[0])
        if self._ring is not None:
            self._ring.close()
        for rec in list(self._waiting):  # the stream ended inside their post-roll
            self._finish(rec)
        for live in self._live.values():  # never ended (a bug): left for the next start
            live.close(keep=True)
        if self._ring is not None:
            self._ring.discard()

    def _do_frame(self, image: np.ndarray, t: float) -> None:
        if self._ring is None:
            self._ring = PacketRing(self.fps, self.pre + self.rules.min_duration + 1.0
                                    + self.max_clip, self.clip_size)
        self._now = t
        before = self._ring.kept
        self._ring.encode(image, t)
        if self._live:
            self._feed_live(self._ring.since(before))
        for rec in [r for r in self._waiting if t >= r["end_ms"] / 1e3 + self.post]:
            self._finish(rec)
        starts = [s - self.pre for s in self._open.values()]
        starts += [r["start_ms"] / 1e3 - self.pre for r in self._waiting]
        self._ring.trim(min([*starts, t - self.pre - self.rules.min_duration - 1.0]))

    def _do_start(self, rec: dict[str, Any], best: np.ndarray | None) -> None:
        self._open[rec["id"]] = rec["start_ms"] / 1e3
        rec["snapshot"] = self._snapshot(rec, best)
        self._start_live(rec)
        self._line(rec)
        self._send("new", rec, None)

    def _start_live(self, rec: dict[str, Any]) -> None:
        """Begin the event's live clip (pre-roll so far), before its start line: a run
        killed after that line leaves the clip its next start salvages."""
        ring = self._ring
        if not self.clips or ring is None or ring.stream is None:
            return
        packets = ring.cut(rec["start_ms"] / 1e3 - self.pre, self._now)
        if not packets or not has_room(self.folder, sum(len(p.data) for p in packets)
                                       + 65536, self.reserve):
            return
        try:
            self._live[rec["id"]] = LiveClip(self.folder / f"{rec['id']}{LIVE_SUFFIX}", packets,
                                             ring, self.pre + self.max_clip + self.post)
        except Exception as exc:  # noqa: BLE001 - the event goes on without it
            log.warning("events %s: live clip of %s not started: %s", self.name, rec["id"], exc)

    def _feed_live(self, packets: list[Any]) -> None:
        """New packets into every live clip; one the disk refuses is dropped (deleted)."""
        room = not any(p.key for p in packets) or has_room(self.folder, 1 << 20, self.reserve)
        for eid, live in list(self._live.items()):
            try:
                if not room:
                    raise OSError("disk nearly full")
                for p in packets:
                    live.add(p)
            except Exception as exc:  # noqa: BLE001 - the ordinary clip is still cut at the end
                log.warning("events %s: live clip of %s stopped: %s", self.name, eid, exc)
                self._live.pop(eid).close()

    def _do_update(self, rec: dict[str, Any], best: np.ndarray | None) -> None:
        """A better snapshot or a new zone: the snapshot replaced (atomically, same name),
        the record on the board, an ``update`` message; no events.jsonl line (start/end)."""
        rec["snapshot"] = self._snapshot(rec, best)
        before = self.board.get(rec["id"])
        self.board.update(rec, self.folder)
        self._send("update", rec, before)

    def _do_end(self, rec: dict[str, Any], best: np.ndarray | None) -> None:
        self._open.pop(rec["id"], None)
        rec["snapshot"] = self._snapshot(rec, best)
        rec["_before"] = self.board.get(rec["id"])  # its start record, as last sent
        if self.clips and self.post > 0 and not self._closed:
            self._waiting.append(rec)
        else:
            self._finish(rec)

    def _finish(self, rec: dict[str, Any]) -> None:
        """Cut the clip of an ended event, then its end line and message."""
        if rec in self._waiting:
            self._waiting.remove(rec)
        before = rec.pop("_before", None)
        rec["clip"] = self._clip(rec) if self.clips else None
        live = self._live.pop(rec["id"], None)
        if live is not None:  # the whole clip is written (or refused): no longer needed
            live.close()
        self._line(rec)
        self._send("end", rec, before)

    def _line(self, rec: dict[str, Any]) -> None:
        try:
            self.log.append(rec)
        except OSError as exc:
            self.errors += 1
            log.error("events %s: cannot write %s: %s", self.name, self.log.path,
                      exc.strerror or exc)
        self.board.update(rec, self.folder)

    def _send(self, kind: str, rec: dict[str, Any], before: dict[str, Any] | None) -> None:
        if not self.targets:
            return
        payload = message(kind, {k: v for k, v in rec.items() if k != "type"}, before,
                          self.board.base_url)
        for target in self.targets:
            target.put(self.topic, payload)

    def _snapshot(self, rec: dict[str, Any], image: np.ndarray | None) -> str | None:
        if image is None:
            return rec.get("snapshot")
        ok, buf = cv2.imencode(".jpg", snapshot_image(image, rec), [cv2.IMWRITE_JPEG_QUALITY, 85])
        name = f"{rec['id']}.jpg"
        if not ok or not has_room(self.folder, len(buf), self.reserve):
            self.snapshots_skipped += 1
            self.board.skipped["snapshot"] += 1
            log.warning("events %s: snapshot of %s skipped (disk nearly full)", self.name,
                        rec["id"])
            return rec.get("snapshot")
        tmp = self.folder / (name + ".part")
        try:
            tmp.write_bytes(buf.tobytes())
            os.replace(tmp, self.folder / name)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            self.snapshots_skipped += 1
            log.warning("events %s: snapshot %s not written: %s", self.name, name,
                        exc.strerror or exc)
            return rec.get("snapshot")
        return name

    def _clip(self, rec: dict[str, Any]) -> str | None:
        ring = self._ring
        if ring is None or ring.stream is None:
            return None
        packets = ring.cut(rec["start_ms"] / 1e3 - self.pre, rec["end_ms"] / 1e3 + self.post)
        need = sum(len(p.data) for p in packets) + 65536
        name = f"{rec['id']}.mp4"
        if not packets or not has_room(self.folder, need, self.reserve):
            self.clips_skipped += 1
            self.board.skipped["clip"] += 1
            log.warning("events %s: clip of %s skipped (%s)", self.name, rec["id"],
                        "disk nearly full" if packets else "no frames")
            return None
        try:
            write_clip(self.folder / name, packets, ring)
        except Exception as exc:  # noqa: BLE001 - FFmpeg's errors too: the end line goes on
            self.clips_skipped += 1
            self.board.skipped["clip"] += 1
            log.warning("events %s: clip %s not written: %s", self.name, name, exc)
            return None
        self.clips_written += 1
        return name

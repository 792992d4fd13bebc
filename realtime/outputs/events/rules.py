"""When an event starts and ends: a small state machine per class, fed one frame at a time.

Pure: no threads, files or clocks of its own (times come with each frame), so the
same rules run for one source or many (one :class:`Tracker` per source).

A class is *present* in a frame when it is among the frame's top-k classes with a
score of at least ``min_score`` and, when zones are given, one of its boxes (its
centre) or its CAM's peak lies inside at least one zone. A class present without a
break for ``min_duration`` seconds starts an event, dated from the first frame of
that run (a shorter run, e.g. a one-frame flicker, starts nothing). An event ends
once the class has been absent for ``end_gap`` seconds, dated at its last present
frame (a shorter absence does not split it). While it lasts, an *update* (Frigate's
``update`` message: a new snapshot and record) is due when it enters a zone it was not
in, or when its best score has risen by ``UPDATE_GAIN`` since the last message, at
most once per ``UPDATE_MIN_S`` of stream time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

__all__ = ["UPDATE_GAIN", "UPDATE_MIN_S", "ZONE_TESTS", "Rules", "Sighting", "Track", "Tracker",
           "Zone", "parse_zone"]

ZONE_TESTS = ("box", "peak")
UPDATE_GAIN = 0.05   # best score risen by this much since the last message: an update
UPDATE_MIN_S = 1.0   # ... at most once per second of stream time (a new zone: at once)


@dataclass(frozen=True)
class Zone:
    """A named polygon in source-frame pixels."""

    name: str
    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a zone needs a name")
        if len(self.points) < 3:
            raise ValueError(f"zone {self.name}: a polygon needs at least 3 points, "
                             f"got {len(self.points)}")

    def contains(self, x: float, y: float) -> bool:
        """True when (x, y) is inside the polygon or on its edge."""
        poly = np.asarray(self.points, np.float32).reshape(-1, 1, 2)
        return cv2.pointPolygonTest(poly, (float(x), float(y)), False) >= 0


def parse_zone(text: str) -> Zone:
    """``NAME:x1,y1,x2,y2,...`` (at least three points) -> :class:`Zone`; ValueError
    with the reason otherwise."""
    name, sep, coords = text.partition(":")
    if not sep or not name.strip():
        raise ValueError(f"{text!r}: expected NAME:x1,y1,x2,y2,x3,y3,...")
    try:
        values = [float(v) for v in coords.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{text!r}: coordinates must be numbers") from None
    if len(values) % 2 or len(values) < 6:
        raise ValueError(f"{text!r}: give x,y pairs, at least three points")
    return Zone(name.strip(), tuple(zip(values[0::2], values[1::2], strict=True)))


@dataclass
class Rules:
    """What makes an event. ``classes``: class ids or labels (None: every class)."""

    classes: frozenset[int | str] | None = None
    min_score: float = 0.2
    min_duration: float = 0.5
    end_gap: float = 2.0
    zones: tuple[Zone, ...] = ()
    zone_test: str = "box"

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {self.min_score}")
        if self.min_duration < 0 or self.end_gap < 0:
            raise ValueError("min_duration and end_gap must be >= 0 seconds")
        if self.zone_test not in ZONE_TESTS:
            raise ValueError(f"zone_test must be one of {', '.join(ZONE_TESTS)}")

    def wants(self, class_id: int, label: str) -> bool:
        return self.classes is None or class_id in self.classes or label in self.classes


@dataclass
class Sighting:
    """A class present in one frame: its score, best box, and the zones it is in."""

    class_id: int
    label: str
    score: float
    box: list[int]
    zones: list[str]


@dataclass
class Track:
    """One class's run of presence (pending until ``min_duration``, then an event)."""

    class_id: int
    label: str
    first_t: float
    first_frame: int
    first_wall: float
    last_t: float
    last_frame: int
    last_wall: float
    best_score: float = 0.0
    best_box: list[int] = field(default_factory=list)
    best_frame: int = -1
    zones: list[str] = field(default_factory=list)
    active: bool = False
    event: Any = None  # the Event, once started (realtime.outputs.events.record)
    sent_score: float = 0.0   # best score, zones and stream time of the last message
    sent_zones: int = 0
    sent_t: float = 0.0

    def sent(self, t: float) -> None:
        self.sent_score, self.sent_zones, self.sent_t = self.best_score, len(self.zones), t

    def update_due(self, t: float) -> bool:
        """Whether an update message is due at stream time ``t`` (the event is open)."""
        if len(self.zones) > self.sent_zones:
            return True
        return (self.best_score >= self.sent_score + UPDATE_GAIN
                and t - self.sent_t >= UPDATE_MIN_S - 1e-9)


def _peak_xy(cam: np.ndarray, frame_shape: tuple[int, int]) -> tuple[float, float]:
    """The CAM's maximum in frame pixels (cell centre; the CAM spans the whole frame)."""
    h, w = cam.shape
    y, x = np.unravel_index(int(np.argmax(cam)), cam.shape)
    fh, fw = frame_shape
    return (x + 0.5) * fw / w, (y + 0.5) * fh / h


def sightings(result: Any, rules: Rules) -> list[Sighting]:
    """The classes of one frame's result that count as present under ``rules``."""
    out = []
    for k, (cid, label, score) in enumerate(zip(result.class_ids, result.labels,
                                                result.scores)):
        cid = int(cid)
        if float(score) < rules.min_score or not rules.wants(cid, label):
            continue
        boxes = result.boxes[k] if k < len(result.boxes) else []
        zones: list[str] = []
        box = [int(v) for v in boxes[0]] if boxes else []
        if rules.zones:
            if rules.zone_test == "peak":
                points = [_peak_xy(result.cams[k], result.frame_shape)]
            else:
                points = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in boxes]
            hits = [(z.name, i) for z in rules.zones
                    for i, (x, y) in enumerate(points) if z.contains(x, y)]
            if not hits:
                continue
            zones = list(dict.fromkeys(name for name, _ in hits))
            if rules.zone_test == "box":
                box = [int(v) for v in boxes[hits[0][1]]]  # the first box inside a zone
        out.append(Sighting(cid, str(label), float(score), box, zones))
    return out


class Tracker:
    """Per-class state for one source: ``update`` takes a frame's sightings and says
    which events start, change and end (as ``("start"|"update"|"end", track)`` pairs)."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.tracks: dict[int, Track] = {}

    def update(self, frame: int, t: float, wall: float, seen: Iterable[Sighting]
               ) -> list[tuple[str, Track]]:
        r = self.rules
        changes: list[tuple[str, Track]] = []
        here = {s.class_id: s for s in seen}
        for cid, s in here.items():
            tr = self.tracks.get(cid)
            if tr is None:
                tr = self.tracks[cid] = Track(cid, s.label, t, frame, wall, t, frame, wall)
            tr.last_t, tr.last_frame, tr.last_wall = t, frame, wall
            if s.score > tr.best_score:
                tr.best_score, tr.best_box, tr.best_frame = s.score, s.box, frame
            tr.zones.extend(z for z in s.zones if z not in tr.zones)
            if not tr.active and t - tr.first_t >= r.min_duration - 1e-9:
                tr.active = True
                tr.sent(t)
                changes.append(("start", tr))
            elif tr.active and tr.update_due(t):
                tr.sent(t)
                changes.append(("update", tr))
        for cid in [c for c in self.tracks if c not in here]:
            tr = self.tracks[cid]
            if not tr.active:
                del self.tracks[cid]  # a run shorter than min_duration: a flicker
            elif t - tr.last_t >= r.end_gap - 1e-9:
                del self.tracks[cid]
                changes.append(("end", tr))
        return changes

    def finish(self) -> list[tuple[str, Track]]:
        """The stream ended: every open event ends at its last present frame."""
        ended = [("end", tr) for tr in self.tracks.values() if tr.active]
        self.tracks.clear()
        return ended

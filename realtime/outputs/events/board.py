"""What the web view and /metrics know of events: recent records and counters.

One :class:`EventBoard` per process, shared by every source's events sink (and by
the delivery targets, whose counters /metrics shows). Records are kept in a
bounded deque (the newest ``keep``); files are found through ``folders``.
"""

from __future__ import annotations

import collections
import threading
from pathlib import Path
from typing import Any

__all__ = ["EventBoard"]


class EventBoard:
    """Recent events (newest last), their folders, counts per (source, class) and targets."""

    def __init__(self, keep: int = 500) -> None:
        self._lock = threading.Lock()
        self._recent: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self.keep = keep
        self.folders: dict[str, Path] = {}   # event id -> its folder
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self.targets: list[Any] = []         # realtime.outputs.events.deliver.Target
        self.skipped: collections.Counter[str] = collections.Counter()  # clips, snapshots
        self.base_url: str | None = None     # the web view's, for snapshot URLs

    def update(self, rec: dict[str, Any], folder: Path) -> None:
        """A start or end record (a start counts the event)."""
        with self._lock:
            if rec["id"] not in self._recent and rec.get("type") == "start":
                self.counts[(rec["source"], rec["label"])] += 1
            self._recent[rec["id"]] = rec
            self._recent.move_to_end(rec["id"])
            self.folders[rec["id"]] = folder
            while len(self._recent) > self.keep:
                old, _ = self._recent.popitem(last=False)
                self.folders.pop(old, None)

    def get(self, event_id: str) -> dict[str, Any] | None:
        """The newest record of an event, if still among the recent ones."""
        with self._lock:
            rec = self._recent.get(event_id)
        return dict(rec) if rec is not None else None

    def recent(self, source: str | None = None, label: str | None = None,
               after: float | None = None, before: float | None = None,
               limit: int = 50) -> list[dict[str, Any]]:
        """Newest first, filtered by source, class (label or id) and start time."""
        with self._lock:
            items = list(reversed(self._recent.values()))
        out = []
        for r in items:
            if source is not None and r["source"] != source:
                continue
            if label is not None and label not in (r["label"], str(r["class_id"])):
                continue
            if after is not None and r["start_time"] < after:
                continue
            if before is not None and r["start_time"] > before:
                continue
            out.append(r)
            if len(out) >= limit:
                break
        return out

    def file(self, event_id: str, suffix: str) -> Path | None:
        """The snapshot (``.jpg``) or clip (``.mp4``) of a known event, if it exists."""
        with self._lock:
            folder = self.folders.get(event_id)
            rec = self._recent.get(event_id)
        if folder is None or rec is None:
            return None
        name = rec.get("snapshot" if suffix == ".jpg" else "clip")
        if not name:
            return None
        path = folder / name
        return path if path.is_file() else None

"""Events on disk: ``events.jsonl`` (whole lines), snapshots and clips in one folder.

``DIR/events.jsonl`` gets a line when an event starts (``"type": "start"``) and one
when it ends (``"type": "end"``, the complete record). Every line is one
``os.write`` to a file opened for appending, so several sources' sinks share the
file and a killed run leaves whole lines; a write the disk cuts short is cut back
to the last whole line. Snapshots (``<id>.jpg``) and clips (``<id>.mp4``) are
written under a temporary name and renamed, so either whole or absent; they are
skipped (and counted) when less than ``reserve`` bytes would remain free, so a
filling disk stops clips and snapshots first and keeps room for the lines.

After a SIGKILL an event may have a start line and no end line: :func:`recover`
(run when a source's events sink opens) appends its end line, marked
``"cut_short": true`` with ``"ended_by": "killed"`` and unknown end times; the clip
written while it lasted (``<id>.live.mp4``, realtime.outputs.events.clips) becomes its
clip ``<id>.mp4`` when it holds at least one frame, and is deleted otherwise.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any

from realtime.errors import first_line
from realtime.outputs.events.clips import LIVE_SUFFIX

__all__ = ["EventLog", "has_room", "read_events"]

log = logging.getLogger(__name__)

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(str(path.resolve()), threading.Lock())


def has_room(folder: Path, need: int, reserve: int) -> bool:
    """True when writing ``need`` bytes in ``folder`` leaves at least ``reserve`` free."""
    try:
        return shutil.disk_usage(folder).free - need >= reserve
    except OSError:
        return False


def read_events(path: Path) -> dict[str, dict[str, Any]]:
    """id -> the newest record of each event in an ``events.jsonl`` (start lines replaced
    by their end line), in file order; lines that do not parse are skipped."""
    events: dict[str, dict[str, Any]] = {}
    try:
        with open(path, "rb") as f:
            for raw in f:
                try:
                    rec = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(rec, dict) and "id" in rec:
                    events[rec["id"]] = rec
    except FileNotFoundError:
        pass
    return events


class EventLog:
    """``events.jsonl`` in ``folder``, shared by every source writing there."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "events.jsonl"
        self.lines = 0
        self._lock = _lock_for(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, rec: dict[str, Any]) -> None:
        """Write one record as a whole line (OSError when the disk refuses it; the file
        then still ends with a whole line)."""
        data = (json.dumps(rec, separators=(", ", ": ")) + "\n").encode("utf-8")
        with self._lock:
            size = os.fstat(self._fd).st_size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view):]
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, size)
                raise
        self.lines += 1

    def recover(self, source: str) -> list[dict[str, Any]]:
        """End every event of ``source`` that has a start line but no end line (a killed
        run): appends and returns their end records, ``cut_short`` true."""
        cut = []
        for rec in read_events(self.path).values():
            if rec.get("source") == source and rec.get("type") == "start":
                end = {**rec, "type": "end", "cut_short": True, "ended_by": "killed",
                       "clip": self._salvage(rec["id"])}
                self.append(end)
                cut.append(end)
                log.warning("event %s (%s, %s) was open when its run ended abruptly: "
                            "recorded as cut short", rec["id"], source, rec.get("label"))
        return cut

    def _salvage(self, event_id: str) -> str | None:
        """``<id>.mp4`` from the live clip of an event cut short when it plays (at least one
        whole fragment), else None (a live clip that does not is deleted)."""
        live = self.folder / f"{event_id}{LIVE_SUFFIX}"
        if not live.is_file():
            return None
        try:
            import av

            with av.open(str(live)) as box:
                if next(box.decode(video=0), None) is None:
                    raise ValueError("no frames")
            os.replace(live, self.folder / f"{event_id}.mp4")
        except Exception as exc:  # noqa: BLE001 - a clip killed before its first fragment
            log.warning("event %s: its clip was cut before any frame (%s)", event_id,
                        first_line(exc))
            live.unlink(missing_ok=True)
            return None
        return f"{event_id}.mp4"

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

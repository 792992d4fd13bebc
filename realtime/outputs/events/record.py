"""The event record, its id, and the messages built from it (Frigate's convention).

An event is one appearance of one class in one source. Its record is what
``events.jsonl``, MQTT, webhooks and ``/api/events`` all carry::

    {"id": "1764480000.123456-k3j9xq", "source": "cam1", "class_id": 285,
     "label": "Egyptian cat", "zones": ["door"], "start_time": 1764480000.12,
     "end_time": null, "start_ms": 4000.0, "end_ms": null, "start_frame": 40,
     "end_frame": null, "max_score": 0.33, "box": [138, 45, 299, 180], "best_frame": 52,
     "snapshot": "1764480000.123456-k3j9xq.jpg", "clip": null, "cut_short": false}

Times: ``*_time`` wall clock (Unix seconds, when the frame was processed),
``*_ms`` stream time (the frame's time in its source). The id follows Frigate's
``<start time>-<6 random letters>`` form, so it sorts by time and is safe in a URL.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Event", "message", "new_id"]

_ALPHABET = string.ascii_lowercase + string.digits


def new_id(wall: float) -> str:
    """``<wall clock seconds, 6 decimals>-<6 random characters>``."""
    return f"{wall:.6f}-{''.join(secrets.choice(_ALPHABET) for _ in range(6))}"


@dataclass
class Event:
    """One event; ``end_*`` stay None while it lasts."""

    id: str
    source: str
    class_id: int
    label: str
    zones: list[str]
    start_time: float
    start_ms: float
    start_frame: int
    max_score: float
    box: list[int]
    best_frame: int
    end_time: float | None = None
    end_ms: float | None = None
    end_frame: int | None = None
    snapshot: str | None = None
    clip: str | None = None
    cut_short: bool = False
    ended_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["max_score"] = round(float(self.max_score), 4)
        for k in ("start_time", "end_time"):
            if d[k] is not None:
                d[k] = round(d[k], 6)
        for k in ("start_ms", "end_ms"):
            if d[k] is not None:
                d[k] = round(d[k], 3)
        return d


def message(kind: str, event: dict[str, Any], before: dict[str, Any] | None,
            base_url: str | None = None) -> dict[str, Any]:
    """The MQTT / webhook payload: Frigate's ``{"type", "before", "after"}`` with ``type``
    ``new``, ``update`` or ``end``; with the web view running, ``snapshot_url`` and
    ``clip_url``."""
    after = dict(event)
    if base_url:
        root = base_url.rstrip("/")
        after["snapshot_url"] = f"{root}/events/{event['id']}.jpg" if event.get("snapshot") \
            else None
        after["clip_url"] = f"{root}/events/{event['id']}.mp4" if event.get("clip") else None
    return {"type": kind, "before": before, "after": after}

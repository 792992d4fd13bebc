"""Events: when something appears, a record, a snapshot, a clip and a message (docs/EVENTS.md).

Rooms: ``rules`` (when an event starts and ends, pure), ``record`` (the record and
messages), ``store`` (events.jsonl, recovery after a kill), ``clips`` (H.264 packets
in a ring, cut into MP4), ``deliver`` (MQTT, webhooks), ``board`` (recent events for
the web view and /metrics), ``webroutes``, ``sink`` (the pipeline sink per source),
``options`` (the CLI flags and :func:`event_sinks`).
"""

from typing import Any

__all__ = ["EventBoard", "EventsSink", "Rules", "Zone", "parse_zone"]

_HOME = {"EventBoard": "board", "EventsSink": "sink", "Rules": "rules", "Zone": "rules",
         "parse_zone": "rules"}


def __getattr__(name: str) -> Any:
    """Lazy: the CLI's parser imports ``options`` from here without cv2 or PyAV."""
    if name in _HOME:
        import importlib

        return getattr(importlib.import_module(f"realtime.outputs.events.{_HOME[name]}"), name)
    raise AttributeError(name)

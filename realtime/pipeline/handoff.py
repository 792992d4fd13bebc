"""Hand-offs between threads that never block past a stop: a bounded
queue's ``put`` waits for room a tick at a time and gives up once the other side
has been told to stop, so no thread hangs on a consumer that died."""

from __future__ import annotations

import queue
import threading
from typing import Any

__all__ = ["POLL_S", "put_until"]

POLL_S = 0.1  # how long any wait lasts before it checks the stop event again


def put_until(q: queue.Queue[Any], item: Any, stop: threading.Event, poll_s: float = POLL_S
              ) -> bool:
    """Put ``item`` into ``q``, waiting for room; False (item dropped) once ``stop`` is set
    while the queue stays full."""
    while not stop.is_set():
        try:
            q.put(item, timeout=poll_s)
            return True
        except queue.Full:
            pass
    return False

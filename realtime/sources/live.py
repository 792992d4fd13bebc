"""Live sources: a camera (index or device path) or a network stream.

A reader thread reads as fast as the device delivers and keeps only the newest
frame (under a lock, with its frame id); the consumer always gets the latest
frame, never a stale buffered one, and every frame it never saw is counted as
dropped. The capture buffer is set small where the backend allows.

Streams open and read with timeouts (OpenCV's CAP_PROP_OPEN_TIMEOUT_MSEC and
CAP_PROP_READ_TIMEOUT_MSEC) and reconnect with exponential backoff when they
stall or end, logging each attempt; a camera that stops delivering ends the
run cleanly with a warning.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import cv2
import numpy as np

from .base import DEFAULT_FPS, POLL_S, Frame, Source, SourceError

__all__ = ["LiveSource"]

log = logging.getLogger(__name__)


class LiveSource(Source):
    """Newest-frame reader for a camera (``stream=False``) or a stream URL.

    ``open_timeout_s``/``read_timeout_s`` bound how long the backend may block;
    streams retry up to ``reconnects`` times, waiting ``backoff_s``, then twice
    as long each time up to ``max_backoff_s``. The capture is opened here, so a
    missing camera or an unreachable stream is a SourceError before any thread runs.
    """

    live = True

    def __init__(self, target: int | str, *, stream: bool = False, open_timeout_s: float = 10.0,
                 read_timeout_s: float = 5.0, reconnects: int = 10, backoff_s: float = 1.0,
                 max_backoff_s: float = 10.0) -> None:
        kind = "stream" if stream else "camera"
        super().__init__(str(target))
        self.kind, self.target, self.stream = kind, target, stream
        self.open_timeout_s, self.read_timeout_s = open_timeout_s, read_timeout_s
        self.reconnects, self.backoff_s, self.max_backoff_s = reconnects, backoff_s, max_backoff_s
        self.reconnections = 0  # successful reconnections of a stream (for /metrics)
        self._cond = threading.Condition()
        self._latest: tuple[int, np.ndarray, float, float] | None = None  # id, image, t, ms
        self._grabbed = 0   # id of the newest frame read
        self._seen = 0      # id of the newest frame handed out
        self._done = False  # the reader thread has finished
        self._t0 = time.monotonic()
        self._cap = self._open()
        if self._cap is None:
            hint = ("no such camera, or it is in use" if not stream
                    else "unreachable, or not a stream OpenCV can decode")
            raise SourceError(f"cannot open {kind} {target} ({hint})")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if 1.0 <= fps <= 1000.0 else DEFAULT_FPS
        w, h = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(
            self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.size = (w, h) if w > 0 and h > 0 else None

    def _open(self) -> cv2.VideoCapture | None:
        """Open the capture with small buffers and timeouts; None when it does not open."""
        timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout_s * 1000),
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout_s * 1000)]
        if self.stream:
            cap = cv2.VideoCapture(str(self.target), cv2.CAP_FFMPEG, timeouts)
        else:
            cap = cv2.VideoCapture(self.target, cv2.CAP_ANY, timeouts)
        if not cap.isOpened():
            cap.release()
            return None
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # ignored by backends that cannot
        return cap

    def _publish(self, image: np.ndarray, ms: float) -> None:
        with self._cond:
            self._grabbed += 1
            self._latest = (self._grabbed, image, time.monotonic() - self._t0, ms)
            self._cond.notify_all()

    def _reconnect(self) -> cv2.VideoCapture | None:
        """Reopen the stream with backoff; None when every attempt failed or we stopped."""
        delay = self.backoff_s
        for attempt in range(1, self.reconnects + 1):
            log.warning("%s %s: no frames; reconnecting in %.1f s (attempt %d of %d)",
                        self.kind, self.name, delay, attempt, self.reconnects)
            if self._stop.wait(delay):
                return None
            cap = self._open()
            if cap is not None:
                log.warning("%s %s: reconnected", self.kind, self.name)
                self.reconnections += 1
                return cap
            delay = min(self.max_backoff_s, delay * 2)
        return None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                ok, image = self._cap.read()
                if ok and image is not None:
                    self._publish(image, (time.perf_counter() - t0) * 1e3)
                    continue
                if self._stop.is_set():
                    break
                if not self.stream:
                    self.ended_because = f"camera {self.name} stopped delivering frames"
                    log.warning("%s (unplugged or closed?); ending", self.ended_because)
                    break
                self._cap.release()
                cap = self._reconnect()
                if cap is None:
                    if not self._stop.is_set():
                        self.ended_because = (f"stream {self.name} lost after "
                                              f"{self.reconnects} reconnection attempts")
                        log.error("%s", self.ended_because)
                    break
                self._cap = cap
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def __iter__(self) -> Iterator[Frame]:
        """The newest frame each time, each at most once; ends when the reader ends."""
        self.start()
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._grabbed != self._seen or self._done
                                    or self._stop.is_set(), POLL_S)
                latest = self._latest
                done = self._done or self._stop.is_set()
            if latest is not None and latest[0] != self._seen:
                fid, image, t, ms = latest
                self.frames_dropped += fid - self._seen - 1
                self._seen = fid
                self.frames_read += 1
                yield Frame(fid - 1, image, self.name, t * 1e3, ms)
            elif done:
                return

    def close(self) -> None:
        """Stop, join the reader (it may sit in a read for up to the read timeout), release."""
        self.stop()
        if self._thread is not None:
            self._thread.join(self.read_timeout_s + self.open_timeout_s + 1.0)
            if self._thread.is_alive():
                log.warning("%s %s: reader still blocked in the backend; leaving it",
                            self.kind, self.name)
                return
        with self._cond:  # frames read but never handed out count as dropped
            self.frames_dropped += self._grabbed - self._seen
            self._seen = self._grabbed
        self._release()

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()

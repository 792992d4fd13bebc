"""Live sources: a camera (index or device path) or a network stream.

A reader thread reads as fast as the device delivers and keeps only the newest
frame (under a lock, with its frame id); the consumer always gets the latest
frame, never a stale buffered one, and every frame it never saw is counted as
dropped. The capture buffer is set small where the backend allows.

Captures open and read with timeouts (OpenCV's CAP_PROP_OPEN_TIMEOUT_MSEC and
CAP_PROP_READ_TIMEOUT_MSEC). A camera or stream that stalls or ends is reopened
every ``retry_s`` (1 s: frames are back within about a second of the camera's
return, as Frigate and DeepStream do, instead of after a grown backoff) for as
long as the run lasts, or until ``give_up_after_s`` without frames; then the
source is *lost* (``lost``: the CLI exits 1), not ended. How long it was gone is
logged on return and kept (``outages``, ``outage_s``, ``gone_s``) for /metrics.
Reopening runs in a helper thread, so a stop (Ctrl-C) is answered within
``POLL_S`` even while the backend blocks on a silent server; ``close()`` never
waits for a blocked read for more than ``_JOIN_S``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import cv2
import numpy as np

from realtime.sources.base import DEFAULT_FPS, POLL_S, Frame, Source, SourceError, open_or_abandon

__all__ = ["LiveSource"]

log = logging.getLogger(__name__)

_JOIN_S = 0.5     # close() waits this long for a reader blocked in the backend, then leaves it
_LOG_EVERY_S = 60.0  # while a source stays gone, say so again this often


class LiveSource(Source):
    """Newest-frame reader for a camera (``stream=False``) or a stream URL.

    ``open_timeout_s``/``read_timeout_s`` bound how long the backend may block; a
    source that stops delivering is reopened every ``retry_s`` until it is back, or
    until it has been gone ``give_up_after_s`` (None: for as long as the run lasts).
    The capture is opened here, so a missing camera or an unreachable stream is a
    SourceError before any thread runs.
    """

    live = True

    def __init__(self, target: int | str, *, stream: bool = False, open_timeout_s: float = 10.0,
                 read_timeout_s: float = 5.0, retry_s: float = 1.0,
                 give_up_after_s: float | None = None) -> None:
        kind = "stream" if stream else "camera"
        super().__init__(str(target))
        if not retry_s > 0 or (give_up_after_s is not None and give_up_after_s < 0):
            raise ValueError("retry_s must be > 0 and give_up_after_s >= 0 or None")
        self.kind, self.target, self.stream = kind, target, stream
        self.open_timeout_s, self.read_timeout_s = open_timeout_s, read_timeout_s
        self.retry_s, self.give_up_after_s = retry_s, give_up_after_s
        self.lost = False        # gone for give_up_after_s: a failure, not an end
        self.outages = 0         # times the source went away
        self.reconnections = 0   # times it came back
        self.outage_s = 0.0      # seconds it was gone in all (finished outages)
        self.down_since: float | None = None  # time.monotonic() when the current outage began
        self._cond = threading.Condition()
        # id, image, arrival (time.monotonic()), decode ms
        self._latest: tuple[int, np.ndarray, float, float] | None = None
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
        arrival = time.monotonic()  # the frame's stamp: every output's latency starts here
        with self._cond:
            self._grabbed += 1
            self.frames_read += 1  # every frame the device gave: handed out or dropped
            self._latest = (self._grabbed, image, arrival, ms)
            self._cond.notify_all()

    @property
    def gone_s(self) -> float:
        """Seconds without frames in all, the current outage included (for /metrics)."""
        down = self.down_since
        return self.outage_s + (time.monotonic() - down if down is not None else 0.0)

    def _open_or_stop(self) -> cv2.VideoCapture | None:
        """``_open()``, given up when the source is stopped (see open_or_abandon)."""
        return open_or_abandon(self._open, self._stop, lambda cap: cap.release(), self.name)

    def _reconnect(self) -> cv2.VideoCapture | None:
        """Reopen every ``retry_s`` until back (the capture), stopped or given up (None)."""
        start = time.monotonic()
        self.outages += 1
        self.down_since = start
        log.warning("%s %s: no frames; reopening every %.1f s%s", self.kind, self.name,
                    self.retry_s, "" if self.give_up_after_s is None
                    else f" for up to {self.give_up_after_s:g} s")
        said = start
        try:
            while not self._stop.is_set():
                cap = self._open_or_stop()
                gone = time.monotonic() - start
                if cap is not None:
                    log.warning("%s %s: back after %.1f s without frames", self.kind,
                                self.name, gone)
                    self.reconnections += 1
                    return cap
                if self.give_up_after_s is not None and gone >= self.give_up_after_s:
                    self.lost = True
                    self.ended_because = f"{self.kind} {self.name} lost: no frames for " \
                                         f"{gone:.1f} s (--give-up-after)"
                    log.error("%s", self.ended_because)
                    return None
                if time.monotonic() - said >= _LOG_EVERY_S:
                    said = time.monotonic()
                    log.warning("%s %s: still gone after %.0f s; retrying", self.kind,
                                self.name, gone)
                self._stop.wait(self.retry_s)
            return None
        finally:
            self.outage_s += time.monotonic() - start
            self.down_since = None

    def _run(self) -> None:
        cap = self._cap
        try:
            while not self._stop.is_set() and cap is not None:
                t0 = time.perf_counter()
                ok, image = cap.read()
                if ok and image is not None:
                    self._publish(image, (time.perf_counter() - t0) * 1e3)
                    continue
                if self._stop.is_set():
                    break
                cap.release()
                cap = self._cap = self._reconnect()
        finally:
            if cap is not None:  # the reader owns the capture: close() may not wait for it
                cap.release()
            self._cap = None
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
                fid, image, arrival, ms = latest
                self.frames_dropped += fid - self._seen - 1
                self._seen = fid
                yield Frame(fid - 1, image, self.name, (arrival - self._t0) * 1e3, ms,
                            arrival, time.monotonic())
            elif done:
                return

    def close(self) -> None:
        """Stop and join the reader; one blocked in the backend (a read on a silent server
        lasts up to the read timeout) is left to end on its own and release its capture."""
        self.stop()
        if self._thread is not None:
            self._thread.join(_JOIN_S)
            if self._thread.is_alive():
                log.info("%s %s: reader still blocked in the backend; leaving it", self.kind,
                         self.name)
                return
        with self._cond:  # frames read but never handed out count as dropped
            self.frames_dropped += self._grabbed - self._seen
            self._seen = self._grabbed
        self._release()

    def _release(self) -> None:
        if self._thread is None and self._cap is not None:  # never started: ours to free
            self._cap.release()
            self._cap = None

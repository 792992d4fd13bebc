"""A local Motion-JPEG stream paced like a camera, and a viewer that reads one.

:class:`PacedMjpegServer` serves JPEG frames over HTTP on 127.0.0.1
(``multipart/x-mixed-replace``, what IP cameras serve and OpenCV's FFmpeg reads like any
camera URL), one every ``1 / fps`` seconds on a fixed schedule (a late part is sent at
once and the schedule goes on; it never catches up with a burst), in a loop. The
latency benchmark and the overload test use it as the camera: a live source that
delivers at its own rate whether or not the pipeline keeps up.

:class:`MjpegViewer` reads a camloc web view's ``/stream`` as a browser does and
records, for each part, how long after the frame's arrival (its ``X-Camloc-Arrival``
header, wall-clock ms) the part was received.
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
import time
from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["MJPEG_RESPONSE", "MjpegViewer", "PacedMjpegServer", "encode_jpegs", "mjpeg_part"]

log = logging.getLogger(__name__)


# what an IP camera answers to a request for its stream, then one part per frame
MJPEG_RESPONSE = (b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; "
                  b"boundary=frame\r\n\r\n")


def mjpeg_part(jpeg: bytes) -> bytes:
    """One frame of a Motion-JPEG stream (after :data:`MJPEG_RESPONSE`)."""
    return (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
            + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")


def encode_jpegs(frames: Sequence[np.ndarray], quality: int = 90) -> list[bytes]:
    """BGR frames as JPEG bytes (done once, before serving, so pacing costs no encoding)."""
    out = []
    for f in frames:
        ok, buf = cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ValueError("JPEG encoding failed")
        out.append(buf.tobytes())
    return out


class PacedMjpegServer:
    """Serve ``jpegs`` in a loop at ``fps`` to every client, on 127.0.0.1 (any free port).

    ``sent`` counts the parts sent (all clients). Use as a context manager, or ``close()``.
    """

    def __init__(self, jpegs: Sequence[bytes], fps: float) -> None:
        if not jpegs or not fps > 0:
            raise ValueError("need at least one JPEG and fps > 0")
        self.jpegs, self.fps = list(jpegs), float(fps)
        self.sent = 0
        self._stop = threading.Event()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/stream.mjpg"
        self._threads = [threading.Thread(target=self._accept, name="camloc-paced-accept",
                                          daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            t = threading.Thread(target=self._serve, args=(conn,), name="camloc-paced-serve",
                                 daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        period = 1.0 / self.fps
        try:
            conn.settimeout(5)
            conn.recv(65536)  # the request
            conn.sendall(MJPEG_RESPONSE)
            due, i = time.monotonic(), 0
            while not self._stop.is_set():
                conn.sendall(mjpeg_part(self.jpegs[i % len(self.jpegs)]))
                self.sent += 1
                i += 1
                due += period
                wait = due - time.monotonic()
                if wait > 0:
                    self._stop.wait(wait)
                else:
                    due = time.monotonic()  # late (a busy machine): go on from now, no burst
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        for t in self._threads:
            t.join(2.0)

    def __enter__(self) -> PacedMjpegServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MjpegViewer:
    """Read ``url`` (a camloc ``/stream``) in a thread like a browser; ``received`` holds
    (time.monotonic() at receipt, ms since the frame's arrival) per part."""

    def __init__(self, host: str, port: int, path: str = "/stream") -> None:
        self.received: list[tuple[float, float]] = []
        self._conn = http.client.HTTPConnection(host, port, timeout=10)
        self._conn.request("GET", path)
        self._resp = self._conn.getresponse()
        if self._resp.status != 200:
            raise ConnectionError(f"{path}: HTTP {self._resp.status}")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="camloc-viewer", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        f = self._resp
        try:
            while not self._stop.is_set():
                headers: dict[str, str] = {}
                while True:
                    line = f.readline()
                    if not line:
                        return
                    line = line.strip()
                    if not line:
                        if headers:
                            break
                        continue
                    if b":" in line:
                        k, v = line.decode("latin-1").split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                data = f.read(int(headers.get("content-length", "0")))
                if len(data) and "x-camloc-arrival" in headers:
                    ms = time.time() * 1e3 - float(headers["x-camloc-arrival"])
                    self.received.append((time.monotonic(), ms))
        except (OSError, ValueError, AttributeError, http.client.HTTPException):  # closed
            log.debug("viewer ended", exc_info=True)

    def close(self) -> None:
        self._stop.set()
        try:
            self._conn.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
        except (OSError, AttributeError):
            pass
        self._conn.close()
        self._thread.join(5.0)

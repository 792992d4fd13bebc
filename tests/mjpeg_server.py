"""A real HTTP MJPEG server on 127.0.0.1 for live-source tests (what IP cameras serve):
``multipart/x-mixed-replace`` JPEG parts, read by OpenCV's FFmpeg like any camera URL.

``mode`` switches what it does while running: "serve" frames, "down" (connections are
refused: the camera is off), "silent" (connections are accepted and nothing is ever
sent: a hung camera, the case where FFmpeg blocks until its timeout)."""

from __future__ import annotations

import socket
import threading
import time

import cv2
import numpy as np

from realtime.commands.paced_stream import MJPEG_RESPONSE, mjpeg_part

__all__ = ["MjpegServer"]


class MjpegServer:
    def __init__(self, frame: np.ndarray, fps: float = 20.0) -> None:
        self.jpeg = cv2.imencode(".jpg", frame)[1].tobytes()
        self.period, self.mode = 1.0 / fps, "serve"
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self.port = self._listen(0)
        self.url = f"http://127.0.0.1:{self.port}/stream.mjpg"
        self._clients: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _listen(self, port: int) -> int:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(8)
        s.settimeout(0.05)
        self._sock = s
        return s.getsockname()[1]

    def set_mode(self, mode: str) -> None:
        """serve, down (close every connection and stop listening) or silent."""
        self.mode = mode
        if mode in ("down", "silent"):
            for c in self._clients:
                c.close()
            self._clients.clear()
        if mode == "down" and self._sock is not None:
            self._sock.close()
            self._sock = None
        elif mode != "down" and self._sock is None:
            self._listen(self.port)

    def _accept(self) -> None:
        while not self._stop.is_set():
            sock = self._sock
            if sock is None:
                time.sleep(0.05)
                continue
            try:
                conn, _ = sock.accept()
            except OSError:  # timeout, or closed by set_mode("down")
                continue
            self._clients.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            conn.recv(65536)  # the request
            if self.mode == "silent":
                while not self._stop.is_set() and self.mode == "silent":
                    time.sleep(0.05)
                return
            conn.sendall(MJPEG_RESPONSE)
            while not self._stop.is_set() and self.mode == "serve":
                conn.sendall(mjpeg_part(self.jpeg))
                time.sleep(self.period)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self.set_mode("down")

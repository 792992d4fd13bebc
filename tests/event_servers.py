"""Real servers for the events tests: Debian's mosquitto broker on 127.0.0.1 and a
free port, a paho subscriber that records what it gets, and an HTTP server on
127.0.0.1 that records webhook POSTs (paths ``/ok``: 200, ``/fail``: 500,
``/silent``: never answers until the server closes)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

__all__ = ["Broker", "Hooks", "Subscriber", "free_port", "wait_until"]

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Any, timeout: float, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(step)
    return bool(check())


class Broker:
    """mosquitto on 127.0.0.1:``port``; ``stop()`` and ``start()`` again on the same port."""

    def __init__(self, folder: Path) -> None:
        if not Path(MOSQUITTO).exists() and not os.environ.get("CI"):  # CI installs it: fail
            pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
        self.port = free_port()
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                             "persistence false\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0
        assert wait_until(up, 10), "mosquitto did not start"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


class Subscriber:
    """A paho client subscribed to ``topic``: ``messages`` holds (time, topic, payload)."""

    def __init__(self, port: int, topic: str = "camloc/#") -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[float, str, Any]] = []
        self._lock = threading.Lock()
        self.connected = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{port}")
        c.reconnect_delay_set(0.2, 1)

        def on_connect(client: Any, *_a: Any) -> None:
            client.subscribe(topic, qos=1)
            self.connected.set()

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            try:
                body = json.loads(msg.payload)
            except ValueError:
                body = msg.payload.decode()
            with self._lock:
                self.messages.append((time.monotonic(), msg.topic, body))

        c.on_connect, c.on_message = on_connect, on_message
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c
        assert self.connected.wait(10), "the subscriber did not connect"
        time.sleep(0.2)  # the subscription is in place

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return [(t, m) for _, t, m in self.messages if t.endswith("/events")]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Hooks:
    """Webhook receiver: ``posts`` maps a path to the JSON bodies it got."""

    def __init__(self) -> None:
        self.posts: dict[str, list[Any]] = {"/ok": [], "/fail": [], "/silent": []}
        self.headers: list[dict[str, str]] = []
        self.closing = threading.Event()
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hooks.posts.setdefault(self.path, []).append(body)
                hooks.headers.append(dict(self.headers))
                if self.path == "/silent":
                    hooks.closing.wait(60)  # never answers while the test runs
                    return
                code = 200 if self.path == "/ok" else 500
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()

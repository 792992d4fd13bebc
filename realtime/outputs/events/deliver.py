"""Event messages to MQTT and webhooks, off the frames' way.

Each target (the MQTT broker, each webhook URL) has its own thread and its own
bounded queue, so a dead webhook never holds the broker's messages and nothing
ever waits on the pipeline's side: :meth:`Target.put` returns at once. A message
is retried with exponential backoff (0.5 s doubling to 10 s) for ``retry_s``
seconds; what a full queue refuses or what is still undelivered after that is
*dropped*: counted (``/metrics``: ``camloc_event_messages_total{outcome="dropped"}``)
and logged. So a broker outage shorter than ``retry_s`` loses nothing (messages are
sent in order once it is back); a longer one drops the oldest messages, because a
"cat at the door" message an hour late is worth less than a queue that never
empties. Closing gives targets ``grace_s`` to deliver what is queued, then counts
the rest as dropped; a request stuck on a silent server never delays the exit.

Credentials come only from the environment (``CAMLOC_MQTT_USERNAME``,
``CAMLOC_MQTT_PASSWORD``, ``CAMLOC_WEBHOOK_TOKEN``) and never appear in logs;
webhook URLs are logged without their user-info and query.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

__all__ = ["MqttTarget", "Target", "WebhookTarget", "redact"]

log = logging.getLogger(__name__)

QUEUE_SIZE = 256
_BACKOFF = (0.5, 10.0)  # first delay, cap (seconds)


def redact(url: str) -> str:
    """``url`` without user-info, query or fragment (what may be logged)."""
    p = urllib.parse.urlsplit(url)
    host = p.hostname or ""
    if p.port:
        host += f":{p.port}"
    return urllib.parse.urlunsplit((p.scheme, host, p.path, "", ""))


class Target:
    """A destination with a worker thread, a bounded queue, retries and counters."""

    kind = "target"

    def __init__(self, name: str, retry_s: float = 60.0, grace_s: float = 2.0,
                 queue_size: int = QUEUE_SIZE) -> None:
        self.name, self.retry_s, self.grace_s = name, retry_s, grace_s
        self.delivered = self.dropped = self.retries = 0
        self._q: collections.deque[tuple[float, str, dict[str, Any]]] = collections.deque()
        self._size = queue_size
        self._cv = threading.Condition()
        self._closing = False
        self._close_by = float("inf")
        self._thread = threading.Thread(target=self._work, name=f"camloc-{self.kind}",
                                        daemon=True)
        self._thread.start()

    # -- any thread --------------------------------------------------------------------
    def put(self, topic: str, payload: dict[str, Any]) -> None:
        """Queue a message; never blocks (a full queue drops it, counted)."""
        with self._cv:
            if self._closing or len(self._q) >= self._size:
                self._drop(payload, "queue full" if not self._closing else "closing")
                return
            self._q.append((time.monotonic(), topic, payload))
            self._cv.notify()

    def close(self) -> None:
        """Deliver what is queued within ``grace_s``; count the rest as dropped."""
        with self._cv:
            self._closing = True
            self._close_by = time.monotonic() + self.grace_s
            self._cv.notify()
        self._thread.join(self.grace_s + 0.5)
        with self._cv:
            while self._q:
                self._drop(self._q.popleft()[2], "not delivered before exit")
        self._shutdown()

    # -- the worker ----------------------------------------------------------------------
    def _drop(self, payload: dict[str, Any], why: str) -> None:
        self.dropped += 1
        after = payload.get("after") or {}
        log.warning("%s %s: dropped the %s message of event %s (%s); %d dropped so far",
                    self.kind, self.name, payload.get("type"), after.get("id"), why,
                    self.dropped)

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._q and not self._closing:
                    self._cv.wait()
                if not self._q:
                    return
                queued, topic, payload = self._q[0]
            delay = _BACKOFF[0]
            while True:
                try:
                    self._send(topic, payload)
                    self.delivered += 1
                    break
                except Exception as exc:  # noqa: BLE001 - any failure: retry, then drop
                    now = time.monotonic()
                    give_up = min(queued + self.retry_s, self._close_by)
                    if now + delay > give_up:
                        with self._cv:
                            self._drop(payload, f"{type(exc).__name__}: {exc}")
                        break
                    self.retries += 1
                    log.debug("%s %s: %s; retrying in %.1f s", self.kind, self.name, exc, delay)
                    with self._cv:
                        self._cv.wait(delay)
                    delay = min(delay * 2, _BACKOFF[1])
            with self._cv:
                if self._q and self._q[0][2] is payload:
                    self._q.popleft()

    def _send(self, topic: str, payload: dict[str, Any]) -> None:
        raise NotImplementedError

    def _shutdown(self) -> None:
        """Release the connection (after the worker is done or given up on)."""


class WebhookTarget(Target):
    """HTTP POST of each message's JSON to ``url``; any 2xx is delivered. With
    ``CAMLOC_WEBHOOK_TOKEN`` set, sends ``Authorization: Bearer <token>``."""

    kind = "webhook"

    def __init__(self, url: str, timeout_s: float = 5.0, **kw: Any) -> None:
        p = urllib.parse.urlsplit(url)
        if p.scheme not in ("http", "https") or not p.hostname:
            raise ValueError(f"--webhook {redact(url)}: give an http:// or https:// URL")
        self.url, self.timeout_s = url, timeout_s
        self._token = os.environ.get("CAMLOC_WEBHOOK_TOKEN") or None
        super().__init__(redact(url), **kw)

    def _send(self, topic: str, payload: dict[str, Any]) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "camloc-events",
                   "X-Camloc-Topic": topic}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        req = urllib.request.Request(self.url, data=json.dumps(payload).encode(),
                                     headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310
                resp.read(1024)
        except urllib.error.HTTPError as exc:
            raise ConnectionError(f"HTTP {exc.code}") from None
        except urllib.error.URLError as exc:
            raise ConnectionError(str(exc.reason)) from None


class MqttTarget(Target):
    """Publish each message (QoS 1) to ``host:port`` with paho-mqtt. paho's own thread
    keeps the connection and reconnects (1 s doubling to 10 s); ``<prefix>/available``
    says ``online`` (retained) and, through the broker's last will, ``offline``.
    ``CAMLOC_MQTT_USERNAME`` / ``CAMLOC_MQTT_PASSWORD`` log in."""

    kind = "mqtt"

    def __init__(self, host: str, port: int = 1883, prefix: str = "camloc",
                 publish_timeout_s: float = 5.0, **kw: Any) -> None:
        import paho.mqtt.client as mqtt

        self.prefix, self.publish_timeout_s = prefix, publish_timeout_s
        self._connected = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                        client_id=f"camloc-{os.getpid()}-{id(self):x}")
        user = os.environ.get("CAMLOC_MQTT_USERNAME")
        if user:
            c.username_pw_set(user, os.environ.get("CAMLOC_MQTT_PASSWORD"))
        c.will_set(f"{prefix}/available", "offline", qos=1, retain=True)
        c.reconnect_delay_set(1, 10)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        self._client = c
        super().__init__(f"{host}:{port}", **kw)  # name and queue first: paho's thread uses them
        c.connect_async(host, port, keepalive=30)
        c.loop_start()

    def _on_connect(self, client: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("mqtt %s: connection refused: %s", self.name, reason)
            return
        log.info("mqtt %s: connected", self.name)
        client.publish(f"{self.prefix}/available", "online", qos=1, retain=True)
        self._connected.set()
        with self._cv:
            self._cv.notify()  # a waiting retry goes now

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if self._connected.is_set() and not self._closing:
            log.warning("mqtt %s: disconnected (%s); reconnecting", self.name, reason)
        self._connected.clear()

    def _send(self, topic: str, payload: dict[str, Any]) -> None:
        if not self._connected.is_set():
            raise ConnectionError("not connected to the broker")
        info = self._client.publish(topic, json.dumps(payload), qos=1)
        info.wait_for_publish(self.publish_timeout_s)
        if not info.is_published():
            raise ConnectionError("the broker did not acknowledge the message")

    def _shutdown(self) -> None:
        c = self._client
        try:
            if self._connected.is_set():
                c.publish(f"{self.prefix}/available", "offline", qos=1, retain=True)
            c.disconnect()
        finally:
            c.loop_stop()

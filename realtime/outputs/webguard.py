"""What keeps the web view up against clients that never finish (slowloris), too many
connections and the log storms they cause.

aiohttp accepts every connection and, before 3.14, waits for a first request's headers
for ever (from 3.14 its ``keepalive_timeout`` also bounds that wait); its maintainers leave
connection limits to the application or a proxy in front (aio-libs/aiohttp#675). So the
server's protocol factory is wrapped (:class:`ConnectionGuard`, listening through
:class:`GuardedSite`):

* at most ``max_connections`` open, ``per_client`` from one address; the excess gets a
  fixed ``503`` and is closed at once, before aiohttp builds anything for it;
* a connection whose first request's headers are not complete ``header_timeout`` seconds
  after it opened gets a ``408`` and is closed (later requests on a kept-alive connection
  are bounded by aiohttp's ``keepalive_timeout``; bodies by the handlers' own deadline);
* what goes wrong on sockets (refusals, timeouts, ``Too many open files`` from accept) is
  logged through :class:`Throttle`: one line per kind per interval, with a count, never a
  traceback.

The limits stay well under the process's open-file limit, so the pipeline's files and a
live source's reconnects always find a descriptor.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

__all__ = ["ConnectionGuard", "GuardedSite", "Throttle", "default_limits", "why_not_same_origin"]

log = logging.getLogger("realtime.outputs.web")

_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 5\r\n"
         b"Connection: close\r\nContent-Length: 35\r\n\r\ncamloc: too many connections, later\n")
_SLOW = (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nConnection: close\r\n"
         b"Content-Length: 32\r\n\r\ncamloc: request headers too slow\n")


def default_limits() -> tuple[int, int]:
    """(max connections, per client): 512 and 64, within half the open-file limit (the rest
    is the run's: video, model, sources, their reconnects)."""
    try:
        import resource  # POSIX only
    except ImportError:
        return 512, 64
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    total = 512 if soft == resource.RLIM_INFINITY else max(16, min(512, soft // 2 - 32))
    return total, max(4, min(64, total // 4))


class Throttle:
    """Log one line per kind of event at most every ``every_s`` seconds, with how many
    were held back since; never a traceback."""

    def __init__(self, logger: logging.Logger = log, every_s: float = 10.0) -> None:
        self.logger, self.every_s = logger, every_s
        self._last: dict[Any, float] = {}
        self._held: Counter[Any] = Counter()

    def __call__(self, key: Any, level: int, message: str) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.every_s:
            self._held[key] += 1
            return
        self._last[key] = now
        held = self._held.pop(key, 0)
        more = f" ({held} more like it in the last {self.every_s:.0f} s)" if held else ""
        self.logger.log(level, "%s%s", message, more)

    def loop_handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """An asyncio exception handler: ``socket.accept() out of system resource`` and the
        like as throttled lines (the default handler logs each with its traceback)."""
        exc = context.get("exception")
        message = context.get("message") or "error in the web view's event loop"
        what = f"{message}: {type(exc).__name__}: {exc}" if exc is not None else message
        self(("loop", message, type(exc).__name__, getattr(exc, "errno", None)),
             logging.WARNING, f"web view: {what}")


class ConnectionGuard:
    """Counts and bounds the server's connections; :meth:`factory` wraps its protocol
    factory. Lives in the server's event loop (not thread-safe; counters readable)."""

    def __init__(self, max_connections: int, per_client: int, header_timeout: float,
                 throttle: Throttle) -> None:
        if max_connections < 1 or per_client < 1 or header_timeout <= 0:
            raise ValueError("connection limits must be positive")
        self.max_connections, self.per_client = max_connections, per_client
        self.header_timeout, self.throttle = header_timeout, throttle
        self.open = 0
        self.by_client: Counter[str] = Counter()
        self.refused = 0    # connections over a limit
        self.timed_out = 0  # connections whose headers came too slowly

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Guarded(self, inner)

    def _admit(self, client: str) -> bool:
        if self.open < self.max_connections and self.by_client[client] < self.per_client:
            self.open += 1
            self.by_client[client] += 1
            return True
        self.refused += 1
        self.throttle("refused", logging.WARNING,
                      f"web view: refusing connections ({self.open} open, at most "
                      f"{self.max_connections}, {self.per_client} per client; {client} has "
                      f"{self.by_client[client]})")
        return False

    def _left(self, client: str) -> None:
        self.open -= 1
        self.by_client[client] -= 1
        if self.by_client[client] <= 0:
            del self.by_client[client]


class _Guarded(asyncio.Protocol):
    """One connection: admitted (then aiohttp's protocol does the work) or refused."""

    def __init__(self, guard: ConnectionGuard, inner: Callable[[], asyncio.Protocol]) -> None:
        self._guard, self._make = guard, inner
        self._inner: Any = None
        self._client = ""
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        self._transport = transport  # type: ignore[assignment]
        if not self._guard._admit(client):
            transport.write(_BUSY)  # type: ignore[attr-defined]
            transport.close()
            return
        self._client = client
        self._timer = asyncio.get_running_loop().call_later(self._guard.header_timeout,
                                                            self._too_slow)
        self._inner = self._make()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if self._timer is not None:  # the first request's headers end at a blank line
            seen = self._tail + data
            if b"\r\n\r\n" in seen or b"\n\n" in seen:
                self._timer.cancel()
                self._timer = None
            else:
                self._tail = seen[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._guard._left(self._client)
        inner, self._inner = self._inner, None
        inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def _too_slow(self) -> None:
        self._timer = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        g = self._guard
        g.timed_out += 1
        g.throttle("slow", logging.WARNING,
                   f"web view: closed a connection from {self._client} whose request headers "
                   f"were not complete after {g.header_timeout:g} s")
        transport.write(_SLOW)
        transport.close()
        asyncio.get_running_loop().call_later(1.0, transport.abort)  # a client that never reads


class GuardedSite(web.BaseSite):
    """aiohttp's TCPSite, listening through a :class:`ConnectionGuard`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard,
                 backlog: int = 128) -> None:
        super().__init__(runner, backlog=backlog)
        self._host, self._port, self._guard = host, port, guard

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        self._server = await loop.create_server(self._guard.factory(server), self._host,
                                                self._port, backlog=self._backlog,
                                                reuse_address=True)


_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def _host_name(hostport: str) -> str:
    """``host[:port]`` (brackets kept for IPv6) -> host, lower case."""
    hostport = hostport.strip().lower()
    if hostport.startswith("["):
        return hostport[:hostport.find("]") + 1]
    return hostport.rsplit(":", 1)[0] if hostport.count(":") == 1 else hostport


def why_not_same_origin(headers: Any, loopback: bool) -> str | None:
    """Why a state-changing request must be refused, or None: it must say it is JSON (a
    cross-site form or no-cors fetch cannot), come from the page's own origin (``Origin``
    and ``Sec-Fetch-Site``, which browsers send, against ``Host``: another port of the same
    host is another origin), and, on a server bound to loopback, name a loopback host
    (a rebound DNS name pointing at 127.0.0.1 is not the page's)."""
    ctype = headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        return "expects Content-Type: application/json"
    host = headers.get("Host", "")
    origin = headers.get("Origin")
    if origin is not None:
        scheme, _, rest = origin.partition("://")
        if scheme not in ("http", "https") or rest.rstrip("/").lower() != host.lower():
            return f"comes from another origin ({origin[:100]})"
    if headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return f"comes from another site ({headers.get('Sec-Fetch-Site')[:40]})"
    if loopback and _host_name(host) not in _LOOPBACK_NAMES:
        return f"names the host {host[:100]!r}, not this loopback server"
    return None

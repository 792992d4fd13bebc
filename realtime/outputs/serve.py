"""``--serve [HOST:]PORT``: parse the address, say where a server listens.

Kept apart from :mod:`realtime.outputs.web` (which imports aiohttp) so that the CLI's
parser stays cheap and can explain a missing server package in one line
(realtime.commands.viewers opens the web view).
"""

from __future__ import annotations

import argparse
import contextlib
import socket

from realtime.errors import CamlocError

__all__ = ["LOOPBACK", "ServeError", "listen_urls", "local_ips", "parse_serve"]

LOOPBACK = "127.0.0.1"


class ServeError(CamlocError, OSError):
    """The web view cannot start (address in use, bad host, missing server packages)."""


def parse_serve(text: str) -> tuple[str, int]:
    """``[HOST:]PORT`` -> (host, port); the host defaults to 127.0.0.1 (safe by default).
    IPv6 hosts go in brackets: ``[::]:8080``."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected [HOST:]PORT, got {text!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535, got {number}")
    if ":" in host and not text.startswith("["):
        raise argparse.ArgumentTypeError(f"put an IPv6 host in brackets: [{host}]:{port}")
    return host or LOOPBACK, number


def local_ips() -> list[str]:
    """This machine's IPv4 addresses that others may reach (best effort, no traffic sent)."""
    ips: list[str] = []
    with contextlib.suppress(OSError):
        ips += [i[4][0] for i in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)]
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("10.255.255.255", 1))  # UDP: picks the outgoing interface, sends nothing
        ips.append(s.getsockname()[0])
    return [ip for ip in dict.fromkeys(ips) if not ip.startswith("127.")]


def listen_urls(host: str, port: int, local_ips: list[str]) -> list[str]:
    """The URLs a server bound to ``host``:``port`` answers on (all interfaces: each one)."""
    if host in ("0.0.0.0", "::", ""):
        hosts = [LOOPBACK, *local_ips]
    else:
        hosts = [host]
    return [f"http://[{h}]:{port}/" if ":" in h else f"http://{h}:{port}/" for h in hosts]

"""Per-frame latency of each output: from the moment the reader had the frame
(``Frame.arrival``, a ``time.monotonic()`` stamp) to the moment the output has it (the
window showed it, the video or JSONL took it, the web view sent it).

One :class:`LatencyRing` per output, written by one thread (the one feeding that
output) and read by anyone: the last ``size`` latencies in a preallocated array (a
rolling window: p50/p99 computed only when someone shows them, cached for
``max_age_s``), and cumulative counts per bucket for the Prometheus histogram.
Recording a frame is a subtraction, an array store and a bisect: a few microseconds,
nothing next to the milliseconds it measures. The counts are plain integers updated by
a single writer, so a reader in another thread sees a consistent-enough picture (at
worst one frame behind).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["BUCKETS_S", "OUTPUT_NAMES", "LatencyRing", "latency_line", "percentiles_of",
           "rings_of"]

# a sink's timing key (its ``stage``) -> the output's name in summaries and /metrics
OUTPUT_NAMES = {"encode": "video", "json": "jsonl", "show": "window", "web": "web"}

# latency buckets in seconds: around one and two frame intervals at 30 fps (33, 66 ms),
# up to the seconds a queue that grows would reach
BUCKETS_S = (0.005, 0.01, 0.02, 0.033, 0.05, 0.066, 0.1, 0.2, 0.35, 0.5, 1.0, 2.0, 5.0)
_BUCKETS_MS = tuple(b * 1e3 for b in BUCKETS_S)


class LatencyRing:
    """The latencies (ms) of one output: a rolling window of the last ``size`` frames and
    a cumulative histogram over the whole run."""

    def __init__(self, size: int = 1024) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self._ms = np.zeros(size, np.float64)
        self.count = 0       # frames recorded in all
        self.sum_ms = 0.0    # their latencies added up
        self.max_ms = 0.0
        self.buckets = [0] * (len(BUCKETS_S) + 1)  # per bucket (not cumulative); last: +Inf
        self._cached: tuple[float, int, dict[str, float]] | None = None

    def add(self, ms: float) -> None:
        """Record one frame's latency in milliseconds."""
        self._ms[self.count % len(self._ms)] = ms
        self.count += 1
        self.sum_ms += ms
        self.max_ms = ms if ms > self.max_ms else self.max_ms
        self.buckets[bisect_left(_BUCKETS_MS, ms)] += 1

    def since(self, arrival: float, now: float | None = None) -> float:
        """Record the latency of a frame that arrived at ``arrival`` (monotonic), as of
        ``now`` (default: now); return it in milliseconds."""
        ms = ((time.monotonic() if now is None else now) - arrival) * 1e3
        self.add(ms)
        return ms

    def window(self) -> np.ndarray:
        """A copy of the latencies in the rolling window (oldest first not guaranteed)."""
        return self._ms[:min(self.count, len(self._ms))].copy()

    def percentiles(self, max_age_s: float = 0.0) -> dict[str, float]:
        """{"p50", "p95", "p99", "max", "n"} over the rolling window (empty: no frames);
        with ``max_age_s`` a result computed that recently is returned again (a HUD asks
        every frame, the figures change slowly)."""
        now = time.monotonic()
        cached = self._cached
        if cached is not None and max_age_s > 0 and now - cached[0] < max_age_s:
            return cached[2]
        if not self.count:
            return {}
        got = percentiles_of(self.window())
        self._cached = (now, self.count, got)
        return got

    def histogram(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative Prometheus buckets (seconds, "+Inf" last) and the sum in seconds."""
        out, total = [], 0
        for bound, n in zip((*map(str, BUCKETS_S), "+Inf"), self.buckets):
            total += n
            out.append((bound, float(total)))
        return out, self.sum_ms / 1e3


def percentiles_of(ms: Iterable[float] | np.ndarray) -> dict[str, float]:
    """p50, p95, p99, max and n of latencies in milliseconds (empty input: {})."""
    a = np.asarray(ms if isinstance(ms, np.ndarray) else list(ms), np.float64)
    if not a.size:
        return {}
    p50, p95, p99 = np.percentile(a, (50, 95, 99))
    return {"p50": round(float(p50), 2), "p95": round(float(p95), 2),
            "p99": round(float(p99), 2), "max": round(float(a.max()), 2), "n": int(a.size)}


def rings_of(sinks: Iterable[Any]) -> dict[str, LatencyRing]:
    """output name (``OUTPUT_NAMES`` of the sink's ``stage``) -> its ring, for the sinks
    that recorded any."""
    out: dict[str, LatencyRing] = {}
    for s in sinks:
        ring = getattr(s, "latency", None)
        if isinstance(ring, LatencyRing) and ring.count:
            stage = getattr(s, "stage", type(s).__name__)
            out.setdefault(OUTPUT_NAMES.get(stage, stage), ring)
    return out


def latency_line(rings: Mapping[str, LatencyRing]) -> str:
    """"encode p50 41 / p99 58 ms, json ..." for a summary or a HUD ("" when none)."""
    parts = []
    for name, ring in rings.items():
        p = ring.percentiles()
        if p:
            parts.append(f"{name} p50 {p['p50']:.0f} / p99 {p['p99']:.0f} ms")
    return ", ".join(parts)

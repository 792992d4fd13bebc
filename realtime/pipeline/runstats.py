"""Run statistics: a frames-per-second meter and what a run did, for the summary and
the benchmark."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["STAGE_WINDOW", "FpsMeter", "RunStats", "combine"]

# per-stage timings kept for the medians: the last this many frames (a few minutes of video).
# A run that lasts months must not keep every frame's timings (7 floats a frame grew a live
# run by 0.54 MiB a minute); a rolling window stays exact for short runs and current for long.
STAGE_WINDOW = 4096


class FpsMeter:
    """Frames per second from ``time.monotonic()`` stamps: N stamps are N-1 intervals.

    ``fps`` covers the last ``window`` stamps (for a live display), ``mean_fps``
    the whole run from the first stamp to the last.
    """

    def __init__(self, window: int = 30) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2 stamps, got {window}")
        self._stamps: deque[float] = deque(maxlen=window)
        self.count = 0
        self.first: float | None = None

    def tick(self, t: float | None = None) -> None:
        t = time.monotonic() if t is None else t
        self._stamps.append(t)
        self.first = t if self.first is None else self.first
        self.count += 1

    @staticmethod
    def _rate(n: int, span: float) -> float:
        return (n - 1) / span if n >= 2 and span > 0 else 0.0

    @property
    def fps(self) -> float:
        s = self._stamps
        return self._rate(len(s), s[-1] - s[0]) if s else 0.0

    @property
    def mean_fps(self) -> float:
        return self._rate(self.count, self._stamps[-1] - self.first) if self.count else 0.0


@dataclass
class RunStats:
    """What a run did, for the summary (and the benchmark)."""

    source: str = ""
    provider: str = ""
    frames_read: int = 0
    processed: int = 0
    dropped: int = 0
    corrupt: int = 0
    elapsed_s: float = 0.0
    mean_fps: float = 0.0
    stopped_by: str | None = None  # "SIGINT", "q", "--max-frames"... None: ran to the end
    ended_because: str | None = None  # a live source that went away
    skipped: int = 0  # images too small to localize, skipped and counted
    stage_ms: dict[str, deque[float]] = field(default_factory=dict)  # last STAGE_WINDOW frames

    def add_times(self, times: dict[str, float]) -> None:
        """Record one frame's stage timings (bounded: the last STAGE_WINDOW frames)."""
        for k, v in times.items():
            window = self.stage_ms.get(k)
            if window is None:
                window = self.stage_ms[k] = deque(maxlen=STAGE_WINDOW)
            window.append(v)

    def medians(self) -> dict[str, float]:
        """Median milliseconds per frame of each stage that ran (over the last
        STAGE_WINDOW frames)."""
        return {k: float(np.median(v)) for k, v in self.stage_ms.items() if v}

    def fill(self, source: Any, elapsed_s: float, meter: FpsMeter) -> None:
        """Take the final counts from ``source`` (None: never opened) once the run ended.
        One rule for every source: ``frames_read`` is every frame the reader got,
        ``processed`` those written, ``dropped`` those a newer frame replaced (live)."""
        self.elapsed_s, self.mean_fps = elapsed_s, meter.mean_fps
        if source is None:
            return
        self.frames_read = source.frames_read
        # live: every frame read and not processed was replaced by a newer one (dropped)
        self.dropped = max(0, source.frames_read - self.processed) if source.live \
            else source.frames_dropped
        self.corrupt, self.skipped = source.frames_corrupt, source.frames_skipped
        self.ended_because = self.ended_because or source.ended_because


def combine(parts: list[RunStats], elapsed_s: float, stopped_by: str | None) -> RunStats:
    """The statistics of several sources run together: counts summed, stage timings
    pooled, the rate all of them together over the run's time."""
    total = RunStats(source=" ".join(p.source for p in parts),
                     provider=parts[0].provider if parts else "", elapsed_s=elapsed_s,
                     stopped_by=stopped_by)
    for p in parts:
        total.frames_read += p.frames_read
        total.processed += p.processed
        total.dropped += p.dropped
        total.corrupt += p.corrupt
        total.skipped += p.skipped
        for k, v in p.stage_ms.items():
            total.stage_ms.setdefault(k, deque(maxlen=STAGE_WINDOW)).extend(v)
    total.mean_fps = total.processed / elapsed_s if elapsed_s > 0 else 0.0
    return total

"""``python -m realtime.bench --events``: what the events output costs the frames.

The same pipeline on the same frames, with and without an events sink (every class,
the default rules, clips on: each frame encoded once to the clip ring on the events
thread), interleaved in one process so that drifts in machine load hit both.
"""

from __future__ import annotations

import logging
import tempfile
import time
from statistics import median
from typing import Any

__all__ = ["events_cost", "format_events"]

log = logging.getLogger(__name__)


def _fps(loc: Any, spec: str, frames: int, warmup: int, workers: int,
         folder: str | None) -> tuple[float, int, float]:
    from realtime.outputs.events.sink import EventsSink
    from realtime.pipeline.runner import Pipeline
    from realtime.sources import open_source

    stamps: list[float] = []
    with open_source(spec) as source:
        sink = EventsSink(folder, "bench", source.fps) if folder else None
        try:
            with Pipeline(source, loc, sinks=[sink] if sink else [], draw=True,
                          max_frames=frames, workers=workers) as run:
                for _ in run:
                    stamps.append(time.monotonic())
        finally:
            if sink is not None:
                sink.close()
    steady = stamps[warmup:]
    fps = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else 0.0
    if sink is None:
        return fps, 0, 0.0
    return fps, sink.started, sink.worker_cpu_s * 1e3 / max(1, len(stamps))


def events_cost(loc: Any, spec: str, frames: int, warmup: int, repeats: int,
                workers: int = 1) -> dict[str, Any]:
    """Frames per second with events off and on (medians of ``repeats``), their ratio and
    the events the clip made."""
    off, on, cpu, events = [], [], [], 0
    with tempfile.TemporaryDirectory(prefix="camloc-bench-events-") as tmp:
        for r in range(repeats):
            off.append(_fps(loc, spec, frames, warmup, workers, None)[0])
            fps, events, ms = _fps(loc, spec, frames, warmup, workers, f"{tmp}/{r}")
            on.append(fps)
            cpu.append(ms)
            log.info("events repeat %d/%d: off %.1f, on %.1f fps", r + 1, repeats, off[-1], fps)
    return {"events_off_fps": round(median(off), 2), "events_on_fps": round(median(on), 2),
            "events_on_over_off": round(median(on) / median(off), 3), "events": events,
            "events_thread_cpu_ms_per_frame": round(median(cpu), 2),
            "runs": {"off": [round(v, 2) for v in off], "on": [round(v, 2) for v in on]}}


def format_events(r: dict[str, Any]) -> str:
    return (f"  {'events':<10} {r['events_on_fps']:>8.1f}   on/off = "
            f"{r['events_on_over_off']:.2f} (off {r['events_off_fps']:.1f} fps; "
            f"{r['events']} events in the clip; events thread "
            f"{r['events_thread_cpu_ms_per_frame']:.1f} ms CPU per frame)")

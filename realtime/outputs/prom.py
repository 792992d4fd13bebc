"""Prometheus metrics of a run (``/metrics`` of the web view), with prometheus_client.

Counters (frames read, processed, dropped, corrupt; a live source's reconnections,
outages and seconds without frames, the outage under way included) and
gauges (frames per second, viewers) are read from the running pipeline when a
scraper asks, so they cost nothing between scrapes; per-stage latency is a
histogram fed once per processed frame; each output's latency from the frame's
arrival (``camloc_output_latency_seconds{output=...}``) is a histogram read from the
outputs' :class:`~realtime.outputs.latency.LatencyRing` counts at scrape time. With several
sources the counters, the fps gauge and each source's own outputs' latency have one sample
per source, labelled ``source`` (its output name). Each :class:`Metrics` has its own
registry (several runs in one process, e.g. tests, do not collide).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.registry import Collector

from realtime.outputs.latency import LatencyRing

__all__ = ["COUNTERS", "Metrics", "run_counters"]

# name (without camloc_ and _total) -> help text
COUNTERS = {"frames_read": "Frames read from the source",
            "frames_processed": "Frames through the whole pipeline",
            "frames_dropped": "Frames a live source skipped to stay current",
            "frames_corrupt": "Unreadable frames skipped",
            "reconnects": "Live source reconnections (back after an outage)",
            "source_outages": "Times the live source stopped delivering frames",
            "source_gone_seconds": "Seconds the live source delivered no frames, in all"}
# stage latencies in seconds: from half a millisecond to a second
_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def _source_counters(src: Any, processed: int, fps: float) -> dict[str, Any]:
    return {"frames_read": getattr(src, "frames_read", 0), "frames_processed": processed,
            "frames_dropped": getattr(src, "frames_dropped", 0),
            "frames_corrupt": getattr(src, "frames_corrupt", 0),
            "reconnects": getattr(src, "reconnections", 0),
            "source_outages": getattr(src, "outages", 0),  # realtime.sources.live
            "source_gone_seconds": getattr(src, "gone_s", 0.0), "fps": fps}


def run_counters(run: Any) -> dict[str, Any]:
    """The live figures of a run (a realtime.pipeline.runner.Pipeline; read between frames,
    from any thread: plain attribute reads). One source: its figures; several: ``sources``
    maps each source's name to its own (a source not open yet counts zeros), the rest are
    the totals."""
    provider = getattr(run.localizer, "provider", "")
    per = {f.name: _source_counters(f.source, f.stats.processed, f.meter.fps) for f in run.feeds}
    if len(run.feeds) == 1:
        return {**next(iter(per.values())), "provider": provider, "source": run.feeds[0].spec}
    total = {k: sum(c[k] for c in per.values()) for k in (*COUNTERS, "fps")}
    return {**total, "sources": per, "provider": provider,
            "source": " ".join(f.spec for f in run.feeds)}


class _RunCollector(Collector):
    def __init__(self, counters: Callable[[], Mapping[str, Any]],
                 viewers: Callable[[], int],
                 latencies: Callable[[], Mapping[tuple[str, str], LatencyRing]] | None = None
                 ) -> None:
        self._counters, self._viewers, self._latencies = counters, viewers, latencies

    def collect(self) -> Iterator[Any]:
        c = self._counters()
        per = c.get("sources")  # several sources: one sample each, labelled
        families = [(CounterMetricFamily, f"camloc_{name}", doc, name)
                    for name, doc in COUNTERS.items()]
        families.append((GaugeMetricFamily, "camloc_fps",
                         "Frames per second over the last 30 frames", "fps"))
        for kind, metric, doc, key in families:
            if not per:
                yield kind(metric, doc, value=float(c.get(key, 0)))
                continue
            family = kind(metric, doc, labels=["source"])
            for name, figures in per.items():
                family.add_metric([name], float(figures.get(key, 0)))
            yield family
        yield GaugeMetricFamily("camloc_viewers", "Browsers watching the live stream",
                                value=float(self._viewers()))
        rings = self._latencies() if self._latencies is not None else {}
        if rings:
            # several sources: each source's own outputs labelled with its name as well
            # (the run's shared outputs, e.g. the web view's mosaic, with source "")
            per_source = any(src for src, _ in rings)
            family = HistogramMetricFamily(
                "camloc_output_latency_seconds", "Time from a frame's arrival from the "
                "source to each output having it (video written, JSONL written, window "
                "shown, web view sent)", labels=["source", "output"] if per_source else ["output"])
            for (src, name), ring in rings.items():
                buckets, total = ring.histogram()
                family.add_metric([src, name] if per_source else [name], buckets, total)
            yield family
        yield InfoMetricFamily("camloc_run", "What runs", value={
            "source": str(c.get("source", "")), "provider": str(c.get("provider", ""))})


class Metrics:
    """A registry with the run's counters and a per-stage latency histogram.

    ``counters`` returns the current figures (see :func:`run_counters`),
    ``viewers`` the number of open streams, ``latencies`` each output's latency ring by
    (source, output), source "" for one source's and shared outputs;
    all are called at scrape time.
    """

    def __init__(self, counters: Callable[[], Mapping[str, Any]],
                 viewers: Callable[[], int],
                 latencies: Callable[[], Mapping[tuple[str, str], LatencyRing]] | None = None
                 ) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram("camloc_stage_latency_seconds",
                                 "Time per frame in each pipeline stage", ["stage"],
                                 buckets=_BUCKETS, registry=self.registry)
        self.registry.register(_RunCollector(counters, viewers, latencies))
        self._children: dict[str, Any] = {}

    def observe(self, times_ms: Mapping[str, float]) -> None:
        """Record one frame's stage times (milliseconds, as the pipeline measures them)."""
        for stage, ms in times_ms.items():
            child = self._children.get(stage)
            if child is None:
                child = self._children[stage] = self.latency.labels(stage=stage)
            child.observe(ms / 1e3)

    def render(self) -> tuple[bytes, str]:
        """The text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

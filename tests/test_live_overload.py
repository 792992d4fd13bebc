"""Issue 27: a live source faster than the pipeline keeps latency bounded for a minute.

A real HTTP Motion-JPEG stream on 127.0.0.1 (realtime.commands.paced_stream), paced at
2.5x what the pipeline was just measured to do with the default model (real weights) on
the same frames, is read through LiveSource for 60 s. The reader keeps the newest frame
and counts the rest as dropped; the pipeline's queues are bounded. Stated bound, checked
here: every output's p99 latency (arrival to the JSONL written) stays below one source
interval plus three of the pipeline's frame times (workers / processed fps: a frame
waits at most for the frame ahead of it in each worker and in the render order) plus
250 ms of slack for this shared 2-core machine; the last 20 s are no slower than the
first 20 s (a queue that grows adds 1.5 s of backlog per second at 2.5x); the process's
resident memory stays flat (a growing queue of 640x360 frames adds ~25 MB a second).
This one test takes about 70 s.
"""

from __future__ import annotations

import time
from itertools import islice

import numpy as np
import pytest
from media import clip_frames

from realtime.commands.paced_stream import PacedMjpegServer, encode_jpegs
from realtime.model.engine import Localizer
from realtime.outputs.latency import percentiles_of
from realtime.outputs.prom import Metrics, run_counters
from realtime.outputs.sinks import JsonlSink
from realtime.pipeline.runner import Pipeline
from realtime.sources.live import LiveSource

SECONDS, OVERLOAD, SIZE = 60.0, 2.5, (640, 360)


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def capacity(loc: Localizer, workers: int, url: str, tmp_path) -> float:
    """Frames per second the pipeline does on these frames when it never waits for them:
    the stream paced far faster than it (every frame it asks for is there)."""
    with LiveSource(url, stream=True) as src, JsonlSink(tmp_path / "cap.jsonl") as jsonl, \
            Pipeline(src, loc, jsonl=jsonl, draw=True, workers=workers) as run:
        stamps = [time.monotonic() for _ in islice(run, 45)]
        run.stop("measured")
        for _ in run:
            pass
    return (len(stamps) - 16) / (stamps[-1] - stamps[15])


def test_latency_stays_bounded_for_a_minute_at_2_5x_overload(photos, lite0_onnx, tmp_path):
    jpegs = encode_jpegs(clip_frames(photos, 60, SIZE))
    loc, workers = Localizer.for_pipeline(str(lite0_onnx), "cpu", None, None)
    with PacedMjpegServer(jpegs, 200.0) as fast:
        can = capacity(loc, workers, fast.url, tmp_path)
    pace = OVERLOAD * can
    lat: list[tuple[float, float]] = []  # (seconds into the run, ms to the JSONL)
    rss: list[tuple[float, float]] = []
    with PacedMjpegServer(jpegs, pace) as server, LiveSource(server.url, stream=True) as src, \
            JsonlSink(tmp_path / "o.jsonl") as jsonl, \
            Pipeline(src, loc, jsonl=jsonl, draw=True, workers=workers) as run:
        start = next_rss = time.monotonic()
        for item in run:
            now = time.monotonic()
            lat.append((now - start, item.latency["json"]))
            if now >= next_rss:
                rss.append((now - start, rss_mb()))
                next_rss += 1.0
            if now - start >= SECONDS:
                run.stop("test done")
        served, dropped = server.sent, src.frames_dropped
        scraped = Metrics(lambda: run_counters(run), lambda: 0,
                          lambda: {("", "jsonl"): jsonl.latency}).render()[0].decode()
    processed = len(lat)
    fps = processed / SECONDS
    steady = [ms for t, ms in lat if t >= 5.0]
    p = percentiles_of(steady)
    bound = 1e3 / pace + 3e3 * workers / fps + 250.0
    first = percentiles_of([ms for t, ms in lat if 5.0 <= t < 25.0])
    last = percentiles_of([ms for t, ms in lat if t >= SECONDS - 20.0])
    print(f"\ncapacity {can:.1f} fps, paced {pace:.1f} fps, served {served}, read "
          f"{src.frames_read}, dropped {src.frames_dropped}, processed {processed} "
          f"({fps:.1f} fps); latency ms {p}; first 20 s {first}; last 20 s {last}; "
          f"bound {bound:.0f} ms; RSS MB {[round(m) for _, m in rss[::10]]}")
    # overloaded for real: most frames never reached the pipeline, and were counted
    # (frames_read counts every frame the reader got, dropped or processed)
    assert src.frames_dropped >= 0.4 * src.frames_read
    # the reader kept up with the stream (no hidden queue in the socket or FFmpeg)
    assert src.frames_read >= 0.9 * served
    # the summary's count (taken when the pipeline ended) and /metrics agree; closing the
    # source afterwards adds the few frames read but never handed out
    # the summary's rule: read = processed + dropped, the newest frame the source held at the
    # stop included
    assert run.stats.processed == processed and 0 <= run.stats.dropped - dropped <= 5
    assert 0 <= src.frames_dropped - dropped <= 5
    assert f"camloc_frames_dropped_total {float(dropped)}" in scraped
    assert f'camloc_output_latency_seconds_count{{output="jsonl"}} {float(processed)}' \
        in scraped
    assert p["p99"] < bound, (p, bound)
    assert last["p99"] <= 1.5 * first["p99"] + 50.0, (first, last)
    base = max(m for t, m in rss if 10.0 <= t < 20.0)
    assert max(m for t, m in rss if t >= 20.0) - base < 40.0, rss
    assert jsonl.lines == processed
    assert np.isfinite(p["max"])


@pytest.mark.parametrize("n", [1, 5])
def test_a_file_keeps_every_frame(photos, tiny_onnx, tmp_path, n):
    """Files are not live: no frame dropped, whatever the pipeline's speed; each frame's
    latency to the JSONL is recorded."""
    from media import write_clip

    from realtime.sources import open_source

    clip = write_clip(tmp_path / "c.mp4", photos, 30 * n)
    with open_source(str(clip)) as src, JsonlSink(tmp_path / "o.jsonl") as jsonl, \
            Pipeline(src, Localizer(str(tiny_onnx)), jsonl=jsonl, draw=False) as run:
        got = [item.latency["json"] for item in run]
    assert src.frames_dropped == 0 and len(got) == jsonl.lines == 30 * n
    assert jsonl.latency.count == 30 * n and all(ms >= 0 for ms in got)


def test_two_live_sources_at_2_5x_keep_latency_bounded_each(photos, lite0_onnx, tmp_path):
    """The same overload shared by two streams in one pipeline (each paced at 1.25x the
    pipeline's rate, 20 s): each source drops its own stale frames and counts them, and
    each one's p99 latency stays under the bound stated above."""
    jpegs = encode_jpegs(clip_frames(photos, 60, SIZE))
    loc, workers = Localizer.for_pipeline(str(lite0_onnx), "cpu", None, None)
    with PacedMjpegServer(jpegs, 200.0) as fast:
        can = capacity(loc, workers, fast.url, tmp_path)
    pace, seconds = OVERLOAD * can / 2, 20.0
    lat: dict[str, list[tuple[float, float]]] = {"a": [], "b": []}
    with PacedMjpegServer(jpegs, pace) as one, PacedMjpegServer(jpegs, pace) as two, \
            Pipeline([one.url, two.url], loc, names=["a", "b"], workers=workers, draw=True,
                     sinks_for=lambda f: [JsonlSink(tmp_path / f"{f.name}.jsonl")]) as run:
        start = time.monotonic()
        for item in run:
            now = time.monotonic() - start
            lat[item.name].append((now, item.latency["json"]))
            if now >= seconds:
                run.stop("test done")
    fps = sum(len(v) for v in lat.values()) / seconds
    bound = 1e3 / pace + 3e3 * workers / fps + 250.0
    for f in run.feeds:
        s, steady = f.stats, [ms for t, ms in lat[f.name] if t >= 5.0]
        assert f.error is None and s.processed == len(lat[f.name]) > 0
        assert s.dropped >= 0.4 * s.frames_read and s.frames_read == s.processed + s.dropped
        assert percentiles_of(steady)["p99"] < bound, (f.name, percentiles_of(steady), bound)

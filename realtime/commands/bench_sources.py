"""``python -m realtime.bench --sources 1,2,4,8``: the pipeline's aggregate rate with N
copies of the same clip run together (each with its own H.264 video and JSONL, as the
CLI writes them), against one source alone, in the same run."""

from __future__ import annotations

import time
from pathlib import Path
from statistics import median
from typing import Any

__all__ = ["sources_fps", "sources_table"]


def sources_fps(loc: Any, spec: str, n: int, frames: int, warmup: int, folder: Path,
                workers: int = 1, draw_workers: int = 1, codec: str | None = "h264") -> float:
    """Frames out per second, all ``n`` sources together, once every source is past its
    ``warmup`` frames (each source's first frames pay for opening its decoder and encoder)."""
    from realtime.outputs.recorder import open_video_sink
    from realtime.outputs.sinks import JsonlSink
    from realtime.pipeline.runner import Pipeline

    def outputs(feed: Any) -> list[Any]:
        src = feed.source
        return [open_video_sink(folder / f"{feed.name}.mp4", src.fps / src.stride, codec),
                JsonlSink(folder / f"{feed.name}.jsonl")]

    names = [f"copy{i}" for i in range(n)]
    stamps: list[float] = []
    with Pipeline([spec] * n, loc, names=names, sinks_for=outputs, max_frames=frames,
                  workers=workers, draw_workers=draw_workers) as run:
        for _ in run:
            stamps.append(time.monotonic())
    steady = stamps[warmup * n:]
    return (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else 0.0


def sources_table(runs: dict[int, list[float]]) -> dict[str, Any]:
    """Median aggregate rate per number of sources, and its ratio to one source's."""
    fps = {n: median(v) for n, v in runs.items()}
    one = fps.get(1)
    return {str(n): {"fps": round(f, 2), "over_one": round(f / one, 3) if one else None,
                     "runs": [round(x, 2) for x in runs[n]]} for n, f in fps.items()}

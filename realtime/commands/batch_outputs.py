"""What ``python -m realtime.batch`` writes: every file it plans, checked against its inputs
before anything is opened (``clips/a.mp4 --output clips`` used to replace the input videos
with their annotated copies), and the summary of what became of each video."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from realtime.outputs.guard import folder_outputs, input_files, refuse_inside
from realtime.outputs.guard import refuse_overwrites as _refuse
from realtime.sources.names import unique_names

__all__ = ["planned_files", "refuse_overwrites", "summary"]

SUFFIXES = (".mp4", ".jsonl", ".done.json")  # per video: the CLI's two outputs, the marker


def planned_files(videos: Sequence[str], out: Path, write_test: str) -> list[Path]:
    """Every file the batch may write in ``out``: per video its outputs and their temporary
    files (``.NAME.tmp`` for JSONL and marker, ``.tmp.NAME`` for the video), and the
    write test."""
    planned = folder_outputs(out, unique_names(videos), SUFFIXES)
    temps = [p.with_name(f".{p.name}.tmp") for p in planned]
    temps += [p.with_name(f".tmp.{p.name}") for p in planned]
    return [out / write_test, *planned, *temps]


def refuse_overwrites(videos: Sequence[str], model: str, out: Path, write_test: str,
                      parts_dir: str) -> None:
    """SinkError (one line, exit 2) when a planned output is an input (a video, the model
    file) or an input lies in the parts folder (removed at the end)."""
    inputs = [*map(Path, videos), *input_files([], model)]
    _refuse(inputs, {"--output": planned_files(videos, out, write_test)})
    refuse_inside(inputs, "--output", out / parts_dir)


def summary(videos: Sequence[Any], workers: int, seconds: float, out: Path) -> list[str]:
    """The summary's lines: a head line with the counts, then one line per video done."""
    lines = []
    frames = sum(v.frames for v in videos)
    for v in videos:
        if v.skipped:
            lines.append(f"  {v.spec}: skipped (outputs complete; --force to redo)")
        elif v.error is None:
            corrupt = sum(r.corrupt for r in v.results.values())
            lines.append(f"  {v.spec}: {v.frames} frames -> {out / v.name}.mp4, .jsonl"
                         + (f" ({corrupt} corrupt skipped)" if corrupt else ""))
    failed = sum(v.error is not None for v in videos)
    skipped = sum(v.skipped for v in videos)
    fps = frames / seconds if seconds > 0 else 0.0
    head = (f"camloc: batch of {len(videos)} video(s): {len(videos) - failed - skipped} done, "
            f"{skipped} skipped, {failed} failed; {frames} frames in {seconds:.1f} s "
            f"({fps:.1f} fps) on {workers} worker(s)")
    return [head, *lines]

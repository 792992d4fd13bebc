"""Videos cut into segments (frame ranges), each processed alone, put back in order.

Plain functions, no Ray: ``realtime.batch`` calls :func:`process_segment` inside
its Ray workers, and a segment is processed by the very pieces the single-process
CLI uses (``VideoFileSource`` to decode, ``Pipeline`` to run, the sinks of
``realtime.outputs.recorder.open_video_sink`` (``--codec``, H.264 by default) and
``JsonlSink`` to write), so the outputs are the CLI's. Every part starts with a
keyframe (its own encoder), so parts join by copying packets: no second encoding.

Temporal smoothing (``--smooth``) crosses a segment boundary by warm-up: a
segment that does not start at frame 0 first runs the :func:`warmup_frames`
frames before its start through the localizer, without writing them, so its
smoother starts from nearly the state the single-process run has there (the
rest of the exponential average weighs ``smooth ** warmup <= 1%``). With
smoothing off there is no warm-up and every output is the CLI's exactly.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from realtime.errors import CamlocError, first_line

__all__ = ["WARMUP_RESIDUAL", "Segment", "SegmentResult", "describe_failure", "done_marker",
           "join_parts",
           "part_paths", "plan_segments", "process_segment", "read_done", "warmup_frames",
           "write_done"]

log = logging.getLogger(__name__)

WARMUP_RESIDUAL = 0.01  # weight left on the history a warm-up does not replay


@dataclass(frozen=True)
class Segment:
    """Frames ``start <= index < end`` of ``video`` (``end`` None: to the end of the file).

    ``video`` is the file as the user named it (the records' ``source``), ``path`` the
    same file absolute (what a worker opens, wherever its working folder is);
    ``name`` is the video's output name, ``index`` the segment's place in the video."""

    video: str
    path: str
    name: str
    index: int
    start: int
    end: int | None


@dataclass
class SegmentResult:
    """What processing one segment did; ``error`` is one line when it failed."""

    segment: Segment
    frames_read: int = 0
    processed: int = 0
    corrupt: int = 0
    fps: float = 0.0
    error: str | None = None


def plan_segments(video: str, name: str, frames: int | None, segment_frames: int,
                  path: str | None = None) -> list[Segment]:
    """Cut ``video`` (``frames`` long, None when unknown) into segments of
    ``segment_frames``; the last one runs to the end of the file, so a frame count
    that the container understates loses nothing."""
    if segment_frames < 1:
        raise ValueError(f"segment_frames must be >= 1, got {segment_frames}")
    count = 1 if not frames else -(-frames // segment_frames)
    path = path or os.path.abspath(video)
    return [Segment(video, path, name, i, i * segment_frames,
                    None if i == count - 1 else (i + 1) * segment_frames)
            for i in range(count)]


def warmup_frames(smooth: float, residual: float = WARMUP_RESIDUAL) -> int:
    """Frames replayed before a segment so that ``smooth ** n <= residual`` (0 when off)."""
    if not 0.0 <= smooth < 1.0:
        raise ValueError(f"smooth must be in [0, 1), got {smooth!r}")
    return 0 if smooth == 0.0 else max(1, math.ceil(math.log(residual) / math.log(smooth)))


def part_paths(parts_dir: str | os.PathLike[str], seg: Segment) -> tuple[Path, Path]:
    """(video, JSONL) file of one segment's part, under ``parts_dir/<name>/``."""
    base = Path(parts_dir) / seg.name / f"{seg.index:06d}"
    return base.with_suffix(".mp4"), base.with_suffix(".jsonl")


def process_segment(localizer: Any, seg: Segment, parts_dir: str | os.PathLike[str], *,
                    warmup: int = 0, workers: int = 1, codec: str | None = None,
                    on_frame: Callable[[int], None] | None = None) -> SegmentResult:
    """Run ``localizer`` on one segment, writing its annotated video and JSONL part.

    Frames are those the CLI would read from the whole file (same numbers, same
    ``source`` and ``time_ms`` in the records), written as the CLI writes them
    (``codec`` as its ``--codec``). ``on_frame(n)`` is called after the n-th frame is
    written. Raises what the source, model or writers raise.
    """
    from realtime.outputs.recorder import open_video_sink
    from realtime.outputs.sinks import JsonlSink
    from realtime.pipeline.runner import Pipeline
    from realtime.sources import VideoFileSource

    localizer.reset()
    if warmup and seg.start > 0:  # prime the smoother: the frames before, not written
        with VideoFileSource(seg.path, start=max(0, seg.start - warmup), end=seg.start) as src:
            for frame in src:
                localizer.localize(frame.image)
    video_part, json_part = part_paths(parts_dir, seg)
    result = SegmentResult(seg)
    source = VideoFileSource(seg.path, start=seg.start, end=seg.end)
    source.name = seg.video  # records name the video as the user did, like the CLI's
    with source, open_video_sink(video_part, source.fps, codec, "--output") as video, \
            JsonlSink(json_part, "--output") as jsonl:
        with Pipeline(source, localizer, sinks=[video, jsonl], draw=False,
                      workers=workers) as run:
            for n, _ in enumerate(run, 1):
                if on_frame is not None:
                    on_frame(n)
    s = run.stats
    result.frames_read, result.processed, result.corrupt = s.frames_read, s.processed, s.corrupt
    result.fps = s.mean_fps
    return result


def _remux(parts: Sequence[Path], target: Path) -> None:
    """Concatenate video files of one codec into ``target`` without re-encoding (PyAV);
    an MP4 target is fragmented like the recorder's (a keyframe starts every part)."""
    try:
        import av
    except ImportError:
        raise CamlocError("joining the segments of a video needs PyAV: pip install av") from None
    from realtime.outputs.recorder import FRAGMENTED_MP4

    opts = FRAGMENTED_MP4 if target.suffix.lower() in (".mp4", ".m4v", ".mov") else {}
    with av.open(str(target), "w", options=opts) as dst:
        out = None
        offset = Fraction(0)  # where the next part starts, in seconds
        for part in parts:
            with av.open(str(part)) as src:
                stream = src.streams.video[0]
                if out is None:
                    out = dst.add_stream_from_template(stream)
                tb_in, tb_out = Fraction(stream.time_base), Fraction(out.time_base)
                rate = stream.average_rate or stream.guessed_rate or 25
                end = offset
                for packet in src.demux(stream):
                    if packet.dts is None:  # the demuxer's empty flush packet
                        continue
                    start = offset + packet.pts * tb_in
                    step = packet.duration * tb_in if packet.duration else 1 / Fraction(rate)
                    end = max(end, start + step)
                    packet.pts = round(start / tb_out)
                    packet.dts = round(offset / tb_out + packet.dts * tb_in / tb_out)
                    packet.stream = out
                    dst.mux(packet)
                offset = end


def join_parts(parts: Sequence[tuple[Path, Path]], video_out: Path, jsonl_out: Path) -> None:
    """Put a video's segment parts back in order into ``video_out`` and ``jsonl_out``.

    Each output appears whole or not at all (written aside, then renamed). One part
    is simply renamed; several are concatenated (JSONL as text, the video by
    copying its compressed packets: no second encoding)."""
    tmp_json = jsonl_out.with_name(f".{jsonl_out.name}.tmp")
    with open(tmp_json, "wb") as out:
        for _, jpart in parts:
            out.write(jpart.read_bytes())
    if len(parts) == 1:
        os.replace(parts[0][0], video_out)
    else:
        tmp_video = video_out.with_name(f".tmp.{video_out.name}")
        try:
            _remux([v for v, _ in parts], tmp_video)
            os.replace(tmp_video, video_out)
        finally:
            tmp_video.unlink(missing_ok=True)
    os.replace(tmp_json, jsonl_out)


def done_marker(output_dir: Path, name: str) -> Path:
    """The file whose presence says that ``name``'s outputs are complete."""
    return output_dir / f"{name}.done.json"


def read_done(marker: Path) -> dict[str, Any] | None:
    """The marker's content, or None when it is missing or unreadable."""
    try:
        return json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_done(marker: Path, info: dict[str, Any]) -> None:
    """Write the marker atomically (written last: its presence means complete)."""
    tmp = marker.with_name(f".{marker.name}.tmp")
    tmp.write_text(json.dumps(info, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, marker)


def describe_failure(exc: BaseException) -> str:
    """One line for a failed segment: the message of a user error, else type and message."""
    return first_line(exc) if isinstance(exc, CamlocError) else \
        f"{type(exc).__name__}: {first_line(exc)}"


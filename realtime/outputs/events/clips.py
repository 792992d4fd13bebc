"""Event clips: every frame encoded once to H.264, kept as packets, cut at keyframes.

:class:`PacketRing` encodes each annotated frame once with libx264 (the recorder's
fast, zero-latency settings, a keyframe every second) and keeps the packets, not
the frames, in a ring: memory is the bitrate times the ring's length
(``pre + max_clip + 1`` seconds at most), not frames times pixels. A clip is a copy
of the packets from the last keyframe at or before ``start - pre`` to ``end +
post``, muxed into an ordinary MP4 with its index in front (``faststart``), which
browsers play at once: no frame is decoded or encoded a second time.

While an event lasts its packets also go, as they are encoded, into a
:class:`LiveClip` (``<id>.live.mp4``, fragmented MP4 flushed at each keyframe, the
recorder's settings): a run killed mid-event (SIGKILL, power) leaves a clip that plays
up to its last keyframe, which the next start renames to ``<id>.mp4`` when it marks the
event cut short (realtime.outputs.events.store). A normal end deletes it once the
ordinary clip is written.

Why packets here rather than cutting the continuous ``--save`` recording: events
then work without ``--save`` (a box that only wants events records nothing else),
a clip is ready the moment its post-roll has passed (no waiting for a fragment on
disk), and the recording's annotation settings do not leak into clips. The cost is
one extra encode per frame on the events worker thread, off the frames' way
(``python -m realtime.bench --events`` measures it).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

__all__ = ["LIVE_SUFFIX", "LiveClip", "Packet", "PacketRing", "write_clip"]

log = logging.getLogger(__name__)

LIVE_SUFFIX = ".live.mp4"  # <id><LIVE_SUFFIX>: the clip of an event still open

# one encoder thread: the frames' own threads need the cores more (a small box has 2-4)
_X264 = {"preset": "ultrafast", "tune": "zerolatency", "crf": "26", "threads": "1"}


@dataclass(frozen=True)
class Packet:
    """One encoded frame: stream time (s), presentation index, keyframe or not, bytes."""

    t: float
    pts: int
    key: bool
    data: bytes


class PacketRing:
    """Encode frames to H.264 once and keep their packets, at most the last ``max_s``
    seconds; :meth:`trim` drops what no clip can need any more (its owner knows).

    ``size`` (width, height) is fixed by the first frame: its size scaled down so that
    the longer side is at most ``max_side`` pixels (0: not scaled), made even; other
    frames are resized to it. Smaller clips cost the encoder (and the cores the
    frames need) several times less: 640 px is plenty to see what happened.
    """

    def __init__(self, fps: float, max_s: float, max_side: int = 640) -> None:
        import av

        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps!r}")
        self.fps, self.max_s, self.max_side = float(fps), float(max_s), int(max_side)
        self.rate = Fraction(self.fps).limit_denominator(1001)
        self.gop = max(1, round(self.fps))
        self.size: tuple[int, int] | None = None
        self.packets: deque[Packet] = deque()
        self.bytes = 0
        self.encoded = 0
        self.kept = 0  # packets ever kept (the newest are packets[-(kept - before):])
        self._av = av
        self._ctx: Any = None
        self._box: Any = None
        self.stream: Any = None
        self._times: deque[float] = deque()  # stream times of frames inside the encoder

    def _open(self, w: int, h: int) -> None:
        # the encoder is a stream of a container that is never written to: a clip's
        # stream copies its parameters (SPS/PPS) from it, so packets are muxed as they are
        av = self._av
        s = min(1.0, self.max_side / max(w, h)) if self.max_side > 0 else 1.0
        w, h = max(2, round(w * s)), max(2, round(h * s))
        self.size = (w - w % 2, h - h % 2)
        self._box = av.open(io.BytesIO(), "w", format="mp4")
        st = self._box.add_stream("libx264", rate=self.rate)
        st.width, st.height = self.size
        st.pix_fmt = "yuv420p"
        st.codec_context.gop_size = self.gop
        st.codec_context.options = {**_X264, "g": str(self.gop), "keyint_min": str(self.gop)}
        self._box.start_encoding()
        self.stream = st
        self._ctx = st

    def encode(self, image: np.ndarray, t: float) -> None:
        """Encode one BGR frame at stream time ``t`` (seconds) into the ring."""
        if self._ctx is None:
            self._open(image.shape[1], image.shape[0])
        w, h = self.size  # type: ignore[misc]
        if image.shape[:2] != (h, w):
            image = image[:h, :w] if (image.shape[0] - h in (0, 1) and
                                      image.shape[1] - w in (0, 1)) else \
                cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        i420 = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2YUV_I420)
        frame = self._av.VideoFrame.from_ndarray(i420, format="yuv420p")
        frame.pts = self.encoded
        self._times.append(t)
        self.encoded += 1
        for pkt in self._ctx.encode(frame):
            self._keep(pkt)

    def _keep(self, pkt: Any) -> None:
        t = self._times.popleft() if self._times else (self.packets[-1].t if self.packets else 0.0)
        p = Packet(t, int(pkt.pts), bool(pkt.is_keyframe), bytes(pkt))
        self.packets.append(p)
        self.kept += 1
        self.bytes += len(p.data)
        self._trim(t - self.max_s)

    def trim(self, keep_from: float) -> None:
        """Drop packets older than the last keyframe at or before ``keep_from`` (and
        anything older than ``max_s``)."""
        now = self.packets[-1].t if self.packets else 0.0
        self._trim(max(keep_from, now - self.max_s))

    def _trim(self, keep_from: float) -> None:
        pk = self.packets
        while len(pk) > 1:
            # the next keyframe after the head: drop up to it if it is still <= keep_from
            nxt = next((i for i in range(1, len(pk)) if pk[i].key), None)
            if nxt is None or pk[nxt].t > keep_from:
                return
            for _ in range(nxt):
                self.bytes -= len(pk.popleft().data)

    def since(self, kept_before: int) -> list[Packet]:
        """The packets kept after ``kept`` was ``kept_before`` (still in the ring)."""
        n = min(self.kept - kept_before, len(self.packets))
        return [self.packets[i] for i in range(-n, 0)]  # the newest n, no copy of the ring

    def cut(self, start: float, end: float) -> list[Packet]:
        """The packets from the last keyframe at or before ``start`` to ``end`` (seconds)."""
        pk = list(self.packets)
        first = 0
        for i, p in enumerate(pk):
            if p.key and p.t <= start:
                first = i
        while first < len(pk) and not pk[first].key:
            first += 1
        return [p for p in pk[first:] if p.t <= end + 1e-6]

    def close(self) -> None:
        """Flush the encoder (its last packets go into the ring)."""
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            try:
                for pkt in ctx.encode(None):
                    self._keep(pkt)
            except self._av.FFmpegError as exc:  # pragma: no cover - a broken encoder
                log.debug("flushing the clip encoder: %s", exc)

    def discard(self) -> None:
        """Let go of the encoder's container (after the last clip is written)."""
        box, self._box = self._box, None
        if box is not None:
            with contextlib.suppress(Exception):
                box.close()


def write_clip(path: Path, packets: list[Packet], ring: PacketRing) -> int:
    """Mux ``packets`` into an MP4 at ``path`` (written to a temporary name, then renamed:
    a clip is either whole or absent); returns its size in bytes."""
    import av

    if not packets:
        raise ValueError("no packets to write")
    tmp = path.with_name(path.name + ".part")
    base = packets[0].pts
    try:
        with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream = out.add_stream_from_template(ring.stream)
            tb = ring.stream.codec_context.time_base
            for p in packets:
                pkt = av.Packet(p.data)
                pkt.pts = pkt.dts = p.pts - base
                pkt.time_base = tb
                pkt.is_keyframe = p.key
                pkt.stream = stream
                out.mux(pkt)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path.stat().st_size


class LiveClip:
    """An open event's clip, written while it happens: ``packets`` (the pre-roll from
    :meth:`PacketRing.cut`) at once, then each new packet as it is encoded, into a
    fragmented MP4 flushed at each keyframe, so a killed run leaves a clip that plays up
    to its last keyframe. At most ``max_s`` seconds are written (the ordinary clip's
    bound); :meth:`close` deletes the file unless told to keep it."""

    def __init__(self, path: Path, packets: list[Packet], ring: PacketRing, max_s: float
                 ) -> None:
        import av

        from realtime.outputs.recorder import FRAGMENTED_MP4

        if not packets:
            raise ValueError("no packets to write")
        self.path, self._av = path, av
        self._base, self._t0, self.max_s = packets[0].pts, packets[0].t, float(max_s)
        self._tb = ring.stream.codec_context.time_base
        self._out = av.open(str(path), "w", format="mp4", options=dict(FRAGMENTED_MP4))
        try:
            self._stream = self._out.add_stream_from_template(ring.stream)
            self.full = False
            for p in packets:
                self.add(p)
        except BaseException:
            self.close()
            raise

    def add(self, p: Packet) -> None:
        """Mux one packet (none once ``max_s`` seconds are in: ``full``)."""
        if self.full or p.t - self._t0 > self.max_s:
            self.full = True
            return
        pkt = self._av.Packet(p.data)
        pkt.pts = pkt.dts = p.pts - self._base
        pkt.time_base = self._tb
        pkt.is_keyframe = p.key
        pkt.stream = self._stream
        self._out.mux(pkt)

    def close(self, keep: bool = False) -> None:
        """Close the file; delete it unless ``keep``."""
        out, self._out = self._out, None
        if out is not None:
            with contextlib.suppress(Exception):
                out.close()
        if not keep:
            self.path.unlink(missing_ok=True)

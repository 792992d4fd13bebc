"""Recordings that browsers play and that survive a crash: H.264 in fragmented MP4.

:class:`AvVideoSink` encodes through PyAV (FFmpeg's Python binding; its wheels
carry libx264 and NVENC) into a fragmented MP4 (``frag_keyframe+empty_moov+
default_base_moof``): the file is a header followed by self-contained fragments,
one per keyframe, and a keyframe comes at least every second. A run killed with
SIGKILL or a power cut therefore leaves a file that plays up to its last
complete fragment: at most the last second or two are missing. An ordinary MP4
(OpenCV's writer) writes its index only when closed, so a killed run leaves
nothing playable.

:func:`open_video_sink` picks the writer for ``--codec``: ``h264`` (the default,
libx264 at a fast preset), ``h264_nvenc`` (NVIDIA's encoder, where FFmpeg has it
and a GPU is present), or OpenCV's writer for ``mp4v`` and ``mjpeg`` (``.avi``
files default to MJPEG, as before). PyAV is optional: without it the default
falls back to mp4v with a one-line warning, and asking for H.264 is a user error.
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from realtime.outputs.sinks import VIDEO_FOURCC, Sink, SinkError, VideoSink, _letterbox, check_output_path

if TYPE_CHECKING:
    from realtime.outputs.sinks import Processed

__all__ = ["CODECS", "FRAGMENTED_MP4", "AvVideoSink", "default_codec", "open_video_sink",
           "pyav_available", "video_suffixes"]

log = logging.getLogger(__name__)

# --codec value -> (writer, encoder name): "av" writers go through PyAV, "cv2" through OpenCV
CODECS = {"h264": ("av", "libx264"), "h264_nvenc": ("av", "h264_nvenc"),
          "mp4v": ("cv2", "mp4v"), "mjpeg": ("cv2", "MJPG")}
# containers PyAV's H.264 goes into (fragmented where the container is MP4/MOV)
AV_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv")
# a fragment per keyframe, each handed to the OS as soon as it is complete (flush_packets)
FRAGMENTED_MP4 = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}
# libx264 at its fastest preset without lookahead or B-frames: a frame leaves the encoder
# as soon as it is in (nothing buffered for a crash to lose); docs/PERFORMANCE.md
_X264 = {"preset": "ultrafast", "tune": "zerolatency", "crf": "23"}
_NVENC = {"preset": "p1", "tune": "ll", "zerolatency": "1"}


def pyav_available() -> bool:
    """True when PyAV (``pip install av``) can be imported."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def default_codec(path: str | os.PathLike[str]) -> str:
    """The codec ``--save path`` gets without ``--codec``: mjpeg for .avi, else h264 (mp4v
    when PyAV is missing, with a warning)."""
    if Path(path).suffix.lower() == ".avi":
        return "mjpeg"
    if pyav_available():
        return "h264"
    log.warning("recording mp4v, which browsers do not play and a crash leaves unplayable: "
                "PyAV is not installed (pip install av)")
    return "mp4v"


def open_video_sink(path: str | os.PathLike[str], fps: float, codec: str | None = None,
                    flag: str = "--save", size: tuple[int, int] | None = None) -> Any:
    """A video sink for ``path`` with ``codec`` (None: :func:`default_codec`) at ``size``
    (None: the first frame's); checks the path, the codec and, for PyAV codecs, that the
    encoder exists, before any frame."""
    codec = default_codec(path) if codec is None else codec
    if codec not in CODECS:
        raise SinkError(f"--codec {codec}: unknown; use one of {', '.join(CODECS)}")
    kind, name = CODECS[codec]
    if codec == "mjpeg" and Path(path).suffix.lower() != ".avi":
        # OpenCV would store MJPEG in MP4 under the 'mp4v' tag: most players then fail
        raise SinkError(f"{flag} {path}: --codec mjpeg writes .avi files; use a .avi name")
    if kind == "cv2":
        return VideoSink(path, fps, flag, fourcc=name, size=size)
    return AvVideoSink(path, fps, encoder=name, flag=flag, size=size)


def _rate(fps: float) -> Fraction:
    """The frame rate as a fraction FFmpeg keeps exactly (29.97 -> 30000/1001)."""
    return Fraction(fps).limit_denominator(1001)


class AvVideoSink(Sink):
    """Annotated frames into H.264 (fragmented MP4) through PyAV, at ``size`` (width,
    height) or, when None, the first frame's size.

    Same interface as :class:`realtime.outputs.sinks.VideoSink`: ``write(item)`` a processed
    frame (``write_image(image)`` a BGR uint8 frame), ``close()``, ``path`` and
    ``frames`` (what the full-disk check and the final count in realtime.outputs.writes use). Frames
    are converted to I420 by OpenCV
    (several times cheaper than FFmpeg's swscale, docs/PERFORMANCE.md); odd sizes
    lose their last row/column, frames of another size are letterboxed. A keyframe
    comes every ``keyframe_s`` seconds, so each fragment holds at most that much.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float, encoder: str = "libx264",
                 flag: str = "--save", keyframe_s: float = 1.0,
                 options: dict[str, str] | None = None,
                 size: tuple[int, int] | None = None) -> None:
        try:
            import av
        except ImportError:
            raise SinkError(f"{flag}: H.264 needs PyAV: pip install av (or --codec mp4v)"
                            ) from None
        self.path = check_output_path(path, flag, AV_SUFFIXES)
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps!r}")
        if encoder not in av.codecs_available:
            raise SinkError(f"{flag}: this FFmpeg has no {encoder} encoder")
        self.fps, self.encoder, self.flag = float(fps), encoder, flag
        self.gop = max(1, round(self.fps * keyframe_s))
        self.options = dict(options if options is not None else
                            _X264 if encoder == "libx264" else
                            _NVENC if encoder.endswith("nvenc") else {})
        self.size: tuple[int, int] | None = None
        self._want = size
        self.frames = 0
        self._av = av
        self._container: Any = None
        self._stream: Any = None

    def _open(self, w: int, h: int) -> None:
        av = self._av
        self.size = (w - w % 2, h - h % 2)  # 4:2:0 needs even sizes
        opts = FRAGMENTED_MP4 if self.path.suffix.lower() != ".mkv" else {}
        try:
            self._container = av.open(str(self.path), "w", options=opts)
            stream = self._container.add_stream(self.encoder, rate=_rate(self.fps))
            stream.width, stream.height = self.size
            stream.pix_fmt = "yuv420p"
            stream.codec_context.gop_size = self.gop
            stream.codec_context.options = {**self.options, "g": str(self.gop),
                                            "keyint_min": str(self.gop)} \
                if self.encoder == "libx264" else dict(self.options)
            stream.codec_context.open()  # an encoder without its hardware fails here
        except (av.FFmpegError, OSError, ValueError) as exc:
            self._close_container()
            raise SinkError(f"{self.flag} {self.path}: cannot open the {self.encoder} "
                            f"encoder: {exc}") from None
        self._stream = stream

    stage = "encode"
    needs_image = True

    def write(self, item: Processed) -> None:
        """Encode the annotated image of one processed frame."""
        self.write_image(item.image)

    def write_image(self, image: np.ndarray) -> None:
        """Encode one BGR uint8 frame; its packets are in the file when this returns."""
        if self._stream is None:
            self._open(*(self._want or (image.shape[1], image.shape[0])))
        w, h = self.size
        if image.shape[:2] != (h, w):
            if image.shape[0] - h in (0, 1) and image.shape[1] - w in (0, 1):
                image = image[:h, :w]
            else:
                image = _letterbox(image, self.size)
        i420 = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2YUV_I420)
        frame = self._av.VideoFrame.from_ndarray(i420, format="yuv420p")
        frame.pts = self.frames
        self._container.mux(self._stream.encode(frame))
        self.frames += 1

    def _close_container(self) -> None:
        if self._container is not None:
            container, self._container = self._container, None
            container.close()

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        if self._stream is not None:
            stream, self._stream = self._stream, None
            try:
                self._container.mux(stream.encode(None))
            finally:
                self._close_container()
            log.debug("wrote %d frames (%s) to %s", self.frames, self.encoder, self.path)
        self._close_container()

def video_suffixes(codec: str | None) -> tuple[str, ...]:
    """File extensions ``--save`` accepts for ``codec``."""
    if codec is None:
        return tuple(dict.fromkeys((*AV_SUFFIXES, *VIDEO_FOURCC)))
    return AV_SUFFIXES if CODECS.get(codec, ("cv2",))[0] == "av" else tuple(VIDEO_FOURCC)

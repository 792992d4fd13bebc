"""Sources: every frame of files in order, image folders, corrupt frames, live newest-frame
behaviour and stream reconnection (with a fake cv2.VideoCapture)."""

from __future__ import annotations

import logging
import queue
import re

import cv2
import numpy as np
import pytest
from media import corrupt_mjpeg_frame, read_stamp, use_fake_capture, write_clip

from realtime.sources import (
    DEFAULT_FPS,
    ImageSource,
    SourceError,
    VideoFileSource,
    classify_source,
    live,
    open_source,
)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, photos):
    """A real 40-frame mp4v video of real photos, 25 fps, frame numbers as barcodes."""
    return write_clip(tmp_path_factory.mktemp("src") / "clip.mp4", photos, 40, fps=25.0)


@pytest.mark.parametrize("spec, kind", [
    ("0", "camera"), ("/dev/video2", "camera"), ("rtsp://cam.local/live", "stream"),
    ("http://host:8080/video", "stream"), ("https://host/clip.mp4", "video"),
    ("clip.mp4", "video"), ("photo.JPG", "image"), ("shots/*.png", "glob"),
])
def test_classify_source(spec, kind):
    assert classify_source(spec) == kind


def test_video_file_delivers_every_frame_in_order(clip):
    with open_source(str(clip)) as src:
        assert isinstance(src, VideoFileSource)
        assert (src.fps, src.size, src.total) == (25.0, (320, 240), 40)
        frames = list(src)
    assert [f.index for f in frames] == list(range(40))
    assert [read_stamp(f.image) for f in frames] == list(range(40))
    assert [f.time_ms for f in frames] == [i * 40.0 for i in range(40)]
    assert {f.source for f in frames} == {str(clip)}
    assert (src.frames_read, src.frames_dropped, src.frames_corrupt) == (40, 0, 0)


def test_vid_stride_keeps_every_nth_frame(clip):
    with open_source(str(clip), stride=3) as src:
        assert src.total == 14
        frames = list(src)
    assert [f.index for f in frames] == list(range(0, 40, 3))
    assert [read_stamp(f.image) for f in frames] == list(range(0, 40, 3))


def test_small_read_ahead_still_delivers_everything(clip):
    with VideoFileSource(str(clip), read_ahead=1) as src:
        assert [read_stamp(f.image) for f in src] == list(range(40))


def test_corrupt_frame_mid_file_is_skipped_counted_and_logged(tmp_path, photos, caplog):
    path = write_clip(tmp_path / "clip.avi", photos, 20, fourcc="MJPG")
    corrupt_mjpeg_frame(path, 10)
    with caplog.at_level(logging.WARNING, "realtime"), open_source(str(path)) as src:
        frames = list(src)
    assert [f.index for f in frames] == [i for i in range(20) if i != 10]
    assert [read_stamp(f.image) for f in frames] == [f.index for f in frames]
    assert src.frames_corrupt == 1
    assert "skipped 1 undecodable frame(s) before frame 11" in caplog.text


def test_stop_ends_iteration_and_close_joins_the_reader(clip):
    src = open_source(str(clip), read_ahead=2)
    with src:
        seen = []
        for f in src:
            seen.append(f.index)
            if f.index == 5:
                src.stop()
    assert seen[:6] == list(range(6)) and len(seen) <= 6 + 3  # what was read ahead drains
    assert seen == list(range(len(seen)))
    assert not src._thread.is_alive()


def test_image_folder_sorted_unreadable_skipped(tmp_path, photos, caplog):
    for name, key in (("b.png", "cat"), ("a.jpg", "espresso"), ("c.jpg", "motorcycle")):
        cv2.imwrite(str(tmp_path / name), np.ascontiguousarray(photos[key][:, :, ::-1]))
    (tmp_path / "b2.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    with caplog.at_level(logging.WARNING, "realtime"), open_source(str(tmp_path)) as src:
        assert isinstance(src, ImageSource)
        frames = list(src)
    assert [f.source for f in frames] == [str(tmp_path / n) for n in ("a.jpg", "b.png", "c.jpg")]
    assert [f.image.shape for f in frames] == [(400, 600, 3), (300, 451, 3), (500, 741, 3)]
    assert src.frames_corrupt == 1 and "b2.jpg" in caplog.text
    with open_source(str(tmp_path / "*.jpg")) as src:  # a glob, sorted too
        assert [f.source for f in src] == [str(tmp_path / n) for n in ("a.jpg", "c.jpg")]


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.mp4", "source not found"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "no images in"),
    (lambda d: (d / "x.mp4").write_text("hello") and d / "x.mp4", "cannot open .* as a video"),
    (lambda d: (d / "x.jpg").write_bytes(b"\xff\xd8junk") and d / "x.jpg",
     "cannot read .* as an image"),
    (lambda d: d / "nothing-*.png", "no images match"),
])
def test_bad_sources_raise_one_clear_error(tmp_path, make, message):
    with pytest.raises(SourceError, match=message):
        open_source(str(make(tmp_path)))


# -- live sources, with a fake capture -----------------------------------------------------

@pytest.fixture
def fake_capture(monkeypatch):
    return use_fake_capture(monkeypatch)


def test_live_source_hands_out_only_the_newest_frame(fake_capture):
    script: queue.Queue = queue.Queue()
    fake_capture.plans = [script]
    with open_source("0", give_up_after_s=0) as cam:
        assert cam.live and cam.size == (8, 6) and cam.fps == 30.0
        frames = iter(cam)
        for n in (1, 2, 3, 4, 5):
            script.put(n)
        fake_capture.wait_calls(6)  # frames 1..5 read and published; waiting for a 6th
        first = next(frames)  # the newest (5), not the oldest buffered one
        script.put(6)
        second = next(frames)
        assert (first.image[0, 0, 0], first.index) == (5, 4)
        assert (second.image[0, 0, 0], second.index) == (6, 5)
        assert cam.frames_dropped == 4 and cam.frames_read == 6  # read: every frame grabbed
        script.put(None)  # the camera goes away: iteration ends cleanly
        assert list(frames) == []
    assert cam.lost and cam.ended_because.startswith("camera 0 lost: no frames for ")
    args = fake_capture.opened[0]
    assert args[0] == 0 and cv2.CAP_PROP_READ_TIMEOUT_MSEC in args[2]


def test_stream_reopens_at_a_fixed_interval_and_says_how_long_it_was_gone(fake_capture,
                                                                         caplog):
    first, third = queue.Queue(), queue.Queue()
    for n in (1, 2):
        first.put(n)
    first.put(None)  # the stream ends...
    third.put(9)     # ...the 2nd reopening succeeds
    third.put(None)  # then it ends for good: every reopening fails
    fake_capture.plans = [first, None, third]
    with caplog.at_level(logging.WARNING, "realtime"), \
            live.LiveSource("rtsp://cam/x", stream=True, retry_s=0.01,
                            give_up_after_s=0.3) as s:
        got = [int(f.image[0, 0, 0]) for f in s]
    assert got[-1] == 9 and set(got) <= {1, 2, 9}
    assert "rtsp://cam/x: no frames; reopening every 0.0 s for up to 0.3 s" in caplog.text
    assert re.search(r"rtsp://cam/x: back after \d+\.\d s without frames", caplog.text)
    assert s.lost and s.outages == 2 and s.gone_s == s.outage_s >= 0.3
    assert re.fullmatch(r"stream rtsp://cam/x lost: no frames for 0\.\d s \(--give-up-after\)",
                        s.ended_because)
    opened = fake_capture.opened
    assert len(opened) >= 5 and opened[0][1] == cv2.CAP_FFMPEG  # reopened every 10 ms
    assert cv2.CAP_PROP_OPEN_TIMEOUT_MSEC in opened[0][2]


def test_missing_camera_and_live_stride_are_user_errors(fake_capture):
    fake_capture.plans = [None]
    with pytest.raises(SourceError, match="cannot open camera 3"):
        open_source("3")
    with pytest.raises(SourceError, match="--vid-stride applies to files"):
        open_source("rtsp://cam/x", stride=2)


def test_stopping_a_live_source_ends_iteration(fake_capture):
    script: queue.Queue = queue.Queue()
    fake_capture.plans = [script]
    src = open_source("0")
    with src:
        script.put(1)
        assert next(iter(src)).index == 0
        src.stop()
        script.put(2)  # unblocks the reader's read() so it sees the stop
        assert [f.index for f in src] in ([], [1])
    assert not src._thread.is_alive()


@pytest.mark.parametrize("reported", [0.0, float("nan"), 90000.0])
def test_default_fps_when_the_container_says_nothing(clip, monkeypatch, reported):
    """A real file whose container reports no usable rate (as some muxers leave it) runs at
    DEFAULT_FPS, and its frames are timed at that rate."""
    from realtime.sources import files

    real = cv2.VideoCapture

    class SaysNothing:  # the real capture, except for the rate it reports
        def __init__(self, *args):
            self._cap = real(*args)

        def get(self, prop):
            return reported if prop == cv2.CAP_PROP_FPS else self._cap.get(prop)

        def __getattr__(self, name):
            return getattr(self._cap, name)

    monkeypatch.setattr(files.cv2, "VideoCapture", SaysNothing)
    with VideoFileSource(str(clip)) as src:
        frames = [f for _, f in zip(range(3), src)]
    assert src.fps == DEFAULT_FPS
    assert [f.time_ms for f in frames] == [i * 1e3 / DEFAULT_FPS for i in range(3)]

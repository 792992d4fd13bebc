"""Recordings: H.264 in fragmented MP4 by default, every frame, playable after SIGKILL;
--codec picks OpenCV's mp4v/MJPEG writers; missing PyAV is explained in one line.
Files are opened and counted with PyAV (FFmpeg), as a player would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from media import clip_frames, lines_in, read_jsonl, read_stamp, write_clip

from realtime.outputs.recorder import AvVideoSink, default_codec, open_video_sink
from realtime.outputs.sinks import SinkError

ROOT = Path(__file__).resolve().parents[1]


def decode(path: Path) -> tuple[str, list[np.ndarray], list[bool]]:
    """(codec name, BGR frames, keyframe flags) of the first video stream, as FFmpeg reads
    it; like a player, it stops at a cut-off tail (a killed writer's last bytes)."""
    frames, keys = [], []
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        name = stream.codec_context.name
        try:
            for frame in c.decode(stream):
                frames.append(frame.to_ndarray(format="bgr24"))
                keys.append(bool(frame.key_frame))
        except av.error.InvalidDataError:
            pass
    return name, frames, keys


def test_h264_by_default_every_frame_keyframes_each_second_fragmented(photos, tmp_path):
    frames = clip_frames(photos, 60, size=(321, 241))  # odd sizes: 4:2:0 needs even ones
    with open_video_sink(tmp_path / "a.mp4", 25.0) as sink:
        assert isinstance(sink, AvVideoSink)
        for f in frames:
            sink.write_image(f)
    name, got, keys = decode(tmp_path / "a.mp4")
    assert name == "h264"
    assert [read_stamp(f) for f in got] == list(range(60))
    assert got[0].shape == (240, 320, 3)
    key_at = [i for i, k in enumerate(keys) if k]
    assert key_at[0] == 0 and max(np.diff(key_at + [60])) <= 25  # at least once a second
    data = (tmp_path / "a.mp4").read_bytes()
    assert b"mvex" in data and data.count(b"moof") >= 3  # fragments, one per keyframe
    assert sink.frames == 60


@pytest.mark.parametrize(("codec", "suffix", "ffmpeg_name"),
                         [("mp4v", ".mp4", "mpeg4"), ("mjpeg", ".avi", "mjpeg"),
                          ("h264", ".mkv", "h264")])
def test_codec_picks_the_encoder(photos, tmp_path, codec, suffix, ffmpeg_name):
    frames = clip_frames(photos, 12)
    with open_video_sink(tmp_path / f"b{suffix}", 10.0, codec) as sink:
        for f in frames:
            sink.write_image(f)
    name, got, _ = decode(tmp_path / f"b{suffix}")
    assert (name, [read_stamp(f) for f in got]) == (ffmpeg_name, list(range(12)))


def test_avi_defaults_to_mjpeg_and_wrong_pairs_are_refused(tmp_path):
    assert default_codec("x.avi") == "mjpeg" and default_codec("x.mp4") == "h264"
    with pytest.raises(SinkError, match=r"unsupported extension '.avi'"):
        open_video_sink(tmp_path / "c.avi", 25.0, "h264")
    with pytest.raises(SinkError, match="--codec mjpeg writes .avi files"):
        open_video_sink(tmp_path / "c.mp4", 25.0, "mjpeg")  # OpenCV would mis-tag it
    with pytest.raises(SinkError, match="unknown; use one of h264, h264_nvenc, mp4v, mjpeg"):
        open_video_sink(tmp_path / "c.mp4", 25.0, "vp9")


def test_without_pyav_the_default_falls_back_and_h264_says_how_to_install(
        tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "av", None)
    with caplog.at_level("WARNING", "realtime"):
        assert default_codec("x.mp4") == "mp4v"
    assert "PyAV is not installed (pip install av)" in caplog.text
    with pytest.raises(SinkError, match=r"H.264 needs PyAV: pip install av"):
        open_video_sink(tmp_path / "d.mp4", 25.0, "h264")


def test_a_sigkilled_run_leaves_a_playable_recording(photos, tiny_onnx, tmp_path):
    """kill -9 mid-run: the .mp4 plays, every frame in order, at most ~2 s short of the
    JSONL (written after the video, frame by frame)."""
    fps = 25
    src = write_clip(tmp_path / "long.mp4", photos, 1000, fps=fps, size=(320, 240))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "realtime", "--source", str(src), "--model", str(tiny_onnx),
         "--save", "o.mp4", "--save-json", "o.jsonl"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out, give_up = tmp_path / "o.jsonl", time.monotonic() + 120  # a bound, not a timing
    while proc.poll() is None and lines_in(out) < 3 * fps:
        assert time.monotonic() < give_up, "the run never got going"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    lines = read_jsonl(out)
    name, got, _ = decode(tmp_path / "o.mp4")
    assert name == "h264"
    assert len(lines) - 2 * fps <= len(got) <= 1000
    assert [read_stamp(f) for f in got] == list(range(len(got)))

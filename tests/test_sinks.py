"""Sinks: a playable video at the source's size and rate, whole JSON lines, output
paths checked up front, and a window that never opens without a display."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from media import clip_frames, read_stamp, read_video

from realtime.outputs import sinks
from realtime.outputs.sinks import JsonlSink, SinkError, VideoSink, Window, check_output_path


def test_video_sink_writes_a_playable_mp4(tmp_path, photos):
    frames = clip_frames(photos, 12, size=(320, 240))
    with VideoSink(tmp_path / "out" / "v.mp4", fps=12.5) as sink:
        for f in frames:
            sink.write_image(f)
    assert sink.frames == 12 and sink.size == (320, 240) and sink.fourcc == "mp4v"
    cap = cv2.VideoCapture(str(sink.path))
    assert cap.get(cv2.CAP_PROP_FPS) == 12.5
    tag = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    assert tag in ("mp4v", "FMP4")  # MPEG-4 Part 2, as FFmpeg names it
    cap.release()
    assert [read_stamp(f) for f in read_video(sink.path)] == list(range(12))


def test_video_sink_letterboxes_frames_of_another_size(tmp_path, photos):
    cat = np.ascontiguousarray(photos["cat"][:, :, ::-1])  # 451 x 300
    with VideoSink(tmp_path / "v.avi", fps=1.0) as sink:
        sink.write_image(np.zeros((200, 400, 3), np.uint8))
        sink.write_image(cat)
    assert sink.fourcc == "MJPG"
    out = read_video(sink.path)
    assert [f.shape for f in out] == [(200, 400, 3)] * 2
    assert out[1][:, :45].max() < 30 and out[1][:, 100:300].mean() > 60  # bar, then the cat


def test_video_sink_leaves_no_file_when_nothing_was_written(tmp_path):
    with VideoSink(tmp_path / "v.mp4", fps=25):
        pass
    assert not (tmp_path / "v.mp4").exists()


def test_jsonl_sink_writes_whole_lines_with_numpy_values(tmp_path):
    with JsonlSink(tmp_path / "r.jsonl") as sink:
        sink.write_record({"frame": np.int64(0), "score": np.float32(0.5), "box": np.arange(4)})
        sink.write_record({"frame": 1})
        assert (tmp_path / "r.jsonl").read_text().count("\n") == 2  # flushed as it goes
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == [
        {"frame": 0, "score": 0.5, "box": [0, 1, 2, 3]}, {"frame": 1}]
    assert sink.lines == 2


@pytest.mark.parametrize("name, suffixes, message", [
    ("sub/", None, "is a folder"),
    ("afile/x.mp4", None, "cannot create folder"),
    ("x.txt", (".mp4",), "unsupported extension '.txt'; use .mp4"),
    ("x", (".mp4", ".avi"), "unsupported extension '\\(none\\)'"),
])
def test_check_output_path_refuses_what_cannot_be_written(tmp_path, name, suffixes, message):
    (tmp_path / "sub").mkdir()
    (tmp_path / "afile").write_text("a file, not a folder")
    with pytest.raises(SinkError, match=message):
        check_output_path(str(tmp_path / name) + ("/" if name.endswith("/") else ""),
                          "--save", suffixes)


def test_check_output_path_creates_folders_and_leaves_no_file(tmp_path):
    p = check_output_path(tmp_path / "a" / "b" / "r.jsonl", "--save-json")
    assert p.parent.is_dir() and not p.exists()


def test_no_window_without_a_display(monkeypatch):
    monkeypatch.setattr(sinks.sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sinks, "_gui_backend", lambda: "QT5")
    assert sinks.gui_available() == (False, "no display (DISPLAY and WAYLAND_DISPLAY are not set)")
    with pytest.raises(SinkError, match="--show: no display"):
        Window()


def test_no_window_with_a_headless_opencv(monkeypatch):
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(sinks, "_gui_backend", lambda: "NONE")
    ok, why = sinks.gui_available()
    assert not ok and "pip install opencv-python" in why


@pytest.mark.parametrize("build, backend", [
    ("General configuration\n  GUI:                           QT5\n    QT:   YES (ver 5.15)\n", "QT5"),
    ("Video I/O:\n  GUI:   NONE\n", "NONE"),
    ("Video I/O:\n  FFMPEG: YES\n", "NONE"),  # no GUI line at all: treated as headless
])
def test_gui_backend_is_read_from_the_build(monkeypatch, build, backend):
    monkeypatch.setattr(sinks.cv2, "getBuildInformation", lambda: build)
    assert sinks._gui_backend() == backend


def test_window_maps_keys_to_actions(monkeypatch):
    """Without a display, cv2's window functions are faked: we test our side only."""
    monkeypatch.setattr(sinks, "gui_available", lambda: (True, ""))
    keys = iter([ord("q"), 27, ord(" "), ord("h"), ord("b"), ord("n"), ord("p"), ord("x"), -1, -1])
    calls = []
    fake = {"namedWindow": lambda *a: calls.append("named"),
            "resizeWindow": lambda *a: None, "imshow": lambda *a: calls.append("show"),
            "waitKey": lambda ms: next(keys), "getWindowProperty": lambda *a: 1.0,
            "destroyWindow": lambda *a: calls.append("destroy")}
    for name, fn in fake.items():
        monkeypatch.setattr(sinks.cv2, name, fn)
    img = np.zeros((4, 4, 3), np.uint8)
    with Window("t") as w:
        got = [w.show(img) for _ in range(9)]
    assert got == ["quit", "quit", "pause", "heatmap", "boxes", "next", "prev", None, None]
    assert calls.count("named") == 1 and calls.count("show") == 9 and calls[-1] == "destroy"
    monkeypatch.setattr(sinks.cv2, "getWindowProperty", lambda *a: 0.0)  # closed by the user
    monkeypatch.setattr(sinks.cv2, "waitKey", lambda ms: -1)
    with Window("t") as w:
        assert w.show(img) == "quit"


def test_mpeg4_odd_sizes_lose_one_row_and_column_not_the_picture(tmp_path, photos):
    cat = np.ascontiguousarray(photos["cat"][:, :, ::-1])  # 451 x 300
    with VideoSink(tmp_path / "v.mp4", fps=5) as sink:
        sink.write_image(cat)
        sink.write_image(cat)
    out = read_video(sink.path)
    assert sink.size == (450, 300) and [f.shape for f in out] == [(300, 450, 3)] * 2
    assert np.abs(out[0].astype(int) - cat[:, :450]).mean() < 6  # cropped, not rescaled

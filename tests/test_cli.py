"""``python -m realtime`` end to end, in subprocesses: every frame written in order,
Ctrl-C / SIGTERM leave consistent outputs, bad input gives one line and status 2,
the no-argument main job writes under runs/ (in-process, on a short demo clip)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from media import corrupt_mjpeg_frame, lines_in, read_jsonl, read_stamp, read_video, write_clip

from realtime import cli

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **extra)
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    return env


def camloc(*args: str, cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "realtime", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, photos):
    return write_clip(tmp_path_factory.mktemp("cli") / "clip.mp4", photos, 40, fps=20.0)


def test_a_video_file_is_processed_every_frame_in_order(clip, tiny_onnx, tmp_path):
    r = camloc("--source", str(clip), "--model", str(tiny_onnx), "--topk", "2",
               "--no-heatmap", "--save", "out/a.mp4", "--save-json", "out/a.jsonl", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    frames = read_video(tmp_path / "out/a.mp4")
    assert [read_stamp(f) for f in frames] == list(range(40))
    assert frames[0].shape == (240, 320, 3)
    cap = cv2.VideoCapture(str(tmp_path / "out/a.mp4"))
    assert cap.get(cv2.CAP_PROP_FPS) == 20.0
    lines = read_jsonl(tmp_path / "out/a.jsonl")
    assert [x["frame"] for x in lines] == list(range(40))
    assert [x["time_ms"] for x in lines[:3]] == [0.0, 50.0, 100.0]
    assert {x["source"] for x in lines} == {str(clip)}
    assert all(1 <= len(x["detections"]) for x in lines)
    assert "40 frames read, 40 processed, 0 dropped, 0 corrupt skipped" in r.stdout
    assert "video: out/a.mp4 (40 frames)" in r.stdout and "json:  out/a.jsonl (40 lines)" in r.stdout
    assert "median ms/frame: decode" in r.stdout


def test_a_corrupt_frame_is_skipped_counted_and_reported(photos, tiny_onnx, tmp_path):
    path = write_clip(tmp_path / "c.avi", photos, 20, fourcc="MJPG")
    corrupt_mjpeg_frame(path, 10)
    r = camloc("--source", str(path), "--model", str(tiny_onnx), "--save", "o.mp4",
               "--save-json", "o.jsonl", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [x["frame"] for x in read_jsonl(tmp_path / "o.jsonl")] == [
        i for i in range(20) if i != 10]
    assert [read_stamp(f) for f in read_video(tmp_path / "o.mp4")] == [
        i for i in range(20) if i != 10]
    assert "19 frames read, 19 processed, 0 dropped, 1 corrupt skipped" in r.stdout
    assert r.stderr.strip() == f"camloc: {path}: skipped 1 undecodable frame(s) before frame 11"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_run_leaves_complete_consistent_outputs(photos, tiny_onnx, tmp_path, sig):
    src = write_clip(tmp_path / "long.mp4", photos, 500, size=(160, 120))
    proc = subprocess.Popen(
        [sys.executable, "-m", "realtime", "--source", str(src), "--model", str(tiny_onnx),
         "--save", "o.mp4", "--save-json", "o.jsonl"],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, give_up = tmp_path / "o.jsonl", time.monotonic() + 120  # a bound, not a timing test
    while proc.poll() is None and lines_in(out) < 5:
        assert time.monotonic() < give_up, "the run never got going"
        time.sleep(0.01)  # wait until it is mid-run
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig.value, stderr
    lines = read_jsonl(out)
    frames = read_video(tmp_path / "o.mp4")
    assert 5 <= len(lines) < 500
    assert len(frames) == len(lines)
    assert [x["frame"] for x in lines] == [read_stamp(f) for f in frames] == list(range(len(lines)))
    assert f"stopped: {sig.name}" in stdout and f"video: o.mp4 ({len(lines)} frames)" in stdout
    assert "finishing the frames in flight" in stderr and "Traceback" not in stderr


def test_an_image_folder_gives_each_image_path(photos, tiny_onnx, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("cat", "espresso", "motorcycle"):
        cv2.imwrite(str(folder / f"{name}.jpg"), np.ascontiguousarray(photos[name][:, :, ::-1]))
    r = camloc("--source", str(folder), "--model", str(tiny_onnx), "--save-json", "i.jsonl",
               "--save", "i.mp4", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [x["source"] for x in read_jsonl(tmp_path / "i.jsonl")] == [
        str(folder / f"{n}.jpg") for n in ("cat", "espresso", "motorcycle")]
    # all sizes differ: the largest (741x500 -> 740x500, even), the others letterboxed
    assert [f.shape for f in read_video(tmp_path / "i.mp4")] == [(500, 740, 3)] * 3


def test_show_without_a_display_says_so_and_saves_instead(clip, tiny_onnx, tmp_path):
    r = camloc("--source", str(clip), "--model", str(tiny_onnx), "--show", "--max-frames", "5",
               cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == ("camloc: --show skipped: no display (DISPLAY and WAYLAND_DISPLAY "
                                "are not set); saving under runs/clip instead")
    assert len(read_jsonl(tmp_path / "runs/clip/clip.jsonl")) == 5
    assert len(read_video(tmp_path / "runs/clip/clip.mp4")) == 5


def test_the_runtime_runs_with_torch_unimportable(clip, tiny_onnx, tmp_path):
    code = ("import sys; sys.modules['torch'] = None; from realtime.cli import main; "
            f"sys.exit(main(['--source', {str(clip)!r}, '--model', {str(tiny_onnx)!r}, "
            "'--max-frames', '3', '--save-json', 'j.jsonl']))")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(read_jsonl(tmp_path / "j.jsonl")) == 3


def _bad(tmp: Path, tiny: Path, clip: Path) -> list[tuple[list[str], str]]:
    (tmp / "empty").mkdir()
    (tmp / "notes.mp4").write_text("not a video")
    (tmp / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    (tmp / "broken.onnx").write_bytes(b"not a model")
    (tmp / "afile").write_text("a file")
    s, m = ["--source", str(clip)], ["--model", str(tiny)]
    return [
        (["--source", "missing.mp4", *m], "source not found: missing.mp4"),
        (["--source", "empty", *m], "no images in empty"),
        (["--source", "notes.mp4", *m], "cannot open notes.mp4 as a video"),
        (["--source", "broken.jpg", *m], "cannot read broken.jpg as an image"),
        ([*s, "--model", "broken.onnx"], "cannot load model broken.onnx"),
        ([*s, "--model", "nowhere/model.onnx"], "model file not found: nowhere/model.onnx"),
        ([*s, "--model", "resnet_nope"], "unknown model 'resnet_nope'; valid names: "
                                         "efficientnet_lite0"),
        ([*s, *m, "--save", "afile/o.mp4"], "--save afile/o.mp4: cannot create folder afile"),
        (["--source", "0", *m, "--save-json", "afile/o.jsonl"], "--save-json afile/o.jsonl"),
        ([*s, *m, "--save", "o.txt"], "--save o.txt: unsupported extension '.txt'"),
        ([*s, *m, "--save", "o.mp4", "--save-json", "o.mp4"], "point to the same file"),
        ([*s, *m, "--topk", "9"], "topk must be between 1 and the number of classes (5)"),
        ([*s, "--vid-stride", "0"], "argument --vid-stride: must be >= 1, got 0"),
        ([*s, "--draw-workers", "0"], "argument --draw-workers: must be >= 1, got 0"),
        ([*s, "--topk", "two"], "argument --topk: expected an integer, got 'two'"),
        ([*s, "--threshold", "1.5"], "argument --threshold: must be in [0, 1), got 1.5"),
        ([*s, "--bogus"], "unrecognized arguments: --bogus"),
        (["--source", "0", "--batch", "2"], "--batch applies to files"),
        (["--source", "rtsp://127.0.0.1:9/x", "--vid-stride", "2", *m],
         "--vid-stride applies to files, not to a live stream"),
    ]


def test_every_bad_input_gives_one_clean_line_and_status_2(clip, tiny_onnx, tmp_path):
    for args, message in _bad(tmp_path, tiny_onnx, clip):
        r = camloc(*args, cwd=tmp_path)
        assert (r.returncode, r.stdout) == (2, ""), (args, r.stderr)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("camloc: error: "), (
            args, r.stderr)
        assert message in r.stderr, (args, r.stderr)
    leftovers = {p.name for p in tmp_path.iterdir()}
    assert leftovers == {"empty", "notes.mp4", "broken.jpg", "broken.onnx", "afile"}


def test_help_lists_the_flags_with_defaults(tmp_path):
    r = camloc("--help", cwd=tmp_path)
    assert r.returncode == 0
    for flag in ("--source", "--model", "--device", "--imgsz", "--topk", "--show", "--save ",
                 "--save-json", "--max-frames", "--vid-stride", "--threshold", "--batch",
                 "--draw-workers"):
        assert flag in r.stdout
    assert "(default: efficientnet_lite0)" in r.stdout and "q/Esc quit" in r.stdout


def test_no_arguments_runs_the_demo_into_a_new_runs_folder(lite0_onnx, tmp_path, monkeypatch,
                                                           capsys):
    """The main job, on a 0.4 s cut of the demo clip made by tools/make_demo_clip.py with
    the real default model: outputs under runs/demo, then runs/demo2; the cat is found."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import make_demo_clip
    finally:
        sys.path.remove(str(ROOT / "tools"))
    demo = tmp_path / "assets" / "demo.mp4"
    assert make_demo_clip.write_clip(demo, seconds=0.4) == 10
    monkeypatch.setattr(cli, "DEMO_CLIP", demo)
    monkeypatch.chdir(tmp_path)
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert "10 frames read, 10 processed" in out and "video: runs/demo/demo.mp4 (10 frames)" in out
    frames = read_video(tmp_path / "runs/demo/demo.mp4")
    assert len(frames) == 10 and frames[0].shape == (720, 1280, 3)
    first = read_jsonl(tmp_path / "runs/demo/demo.jsonl")[0]
    best = first["detections"][0]
    assert best["label"] in ("Egyptian cat", "tabby", "tiger cat")
    x1, y1, x2, y2 = best["box"]  # the cat photo sits around x 90..630, y 120..480
    assert x1 < 330 < x2 and y1 < 230 < y2
    assert cli.main(["--max-frames", "2"]) == 0
    assert len(read_jsonl(tmp_path / "runs/demo2/demo.jsonl")) == 2


def test_window_keys_drive_the_run(monkeypatch):
    """The window sink with a fake window: space pauses (keys still work), q stops reading."""
    from realtime.model.draw import RenderOptions
    from realtime.outputs.sinks import Processed, WindowSink

    class Run:
        stopping, options, stopped = False, RenderOptions(), None

        def stop(self, reason):
            self.stopped, self.stopping = reason, True

    class Win:
        def __init__(self, keys):
            self.keys, self.shown = iter(keys), 0

        def show(self, image):
            self.shown, self.image = self.shown + 1, image
            return next(self.keys)

        def poll(self, ms):
            return next(self.keys)

    result = type("R", (), {"labels": ["cat", "dog"], "scores": [0.5, 0.2],
                            "class_ids": [281, 207], "provider": "CPU"})()
    item = Processed(None, result, np.zeros((40, 200, 3), np.uint8), {}, fps=12.5)
    run = Run()
    win = Win(["pause", None, "heatmap", "next", "pause"])
    sink = WindowSink(win)
    sink.attach(run)
    sink.write(item)
    assert (run.options.heatmap, run.options.index, run.stopped) == (False, 0, None)
    assert win.image[:, :10].any()  # the HUD was drawn on what the window shows,
    assert not item.image.any()  # not on the frame the video and the web view share
    sink = WindowSink(Win(["quit"]))
    sink.attach(run)
    sink.write(item)
    assert run.stopped == "q"


def test_a_missing_tqdm_is_named_with_its_install_command(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    items = [1, 2]
    with caplog.at_level("WARNING", "realtime"):
        assert cli._progress(items, 2, live=False) is items
    assert "pip install tqdm" in caplog.text


def test_vid_stride_keeps_every_nth_frame_at_a_matching_rate(clip, tiny_onnx, tmp_path):
    r = camloc("--source", str(clip), "--model", str(tiny_onnx), "--vid-stride", "4",
               "--save", "s.mp4", "--save-json", "s.jsonl", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [x["frame"] for x in read_jsonl(tmp_path / "s.jsonl")] == list(range(0, 40, 4))
    assert [read_stamp(f) for f in read_video(tmp_path / "s.mp4")] == list(range(0, 40, 4))
    assert cv2.VideoCapture(str(tmp_path / "s.mp4")).get(cv2.CAP_PROP_FPS) == 5.0

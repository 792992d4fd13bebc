"""Several sources in one process: three real video files and a real HTTP MJPEG stream
served on 127.0.0.1 at once, beside an unreachable stream that is retried and reported;
every file frame in its own output, in order; a .streams list; folder checks."""

from __future__ import annotations

import http.server
import socketserver
import time

import pytest
from media import clip_frames, lines_in, read_jsonl, read_stamp, read_video, write_clip

from realtime import cli
from realtime.commands.paced_stream import PacedMjpegServer, encode_jpegs
from realtime.sources.lists import expand_sources, read_source_list


@pytest.fixture
def mjpeg_stream(photos):
    """A live HTTP MJPEG stream of real photo frames on 127.0.0.1 (25 fps while served)."""
    with PacedMjpegServer(encode_jpegs(clip_frames(photos, 50, (160, 120))), 25.0) as srv:
        yield f"http://127.0.0.1:{srv.port}/live.mjpg"  # any path: the server serves them all


def _closed_port() -> int:
    with socketserver.TCPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler) as s:
        return s.server_address[1]  # closed when we leave: nothing listens there


def test_three_files_and_a_stream_at_once_beside_an_unreachable_source(
        photos, tiny_onnx, tmp_path, mjpeg_stream, capsys, monkeypatch):
    from realtime.pipeline import feeds
    monkeypatch.setattr(feeds, "DEFAULT_RETRY", feeds.Retry(0.2))
    url = mjpeg_stream
    files = [write_clip(tmp_path / "a.mp4", photos, 30, fps=20.0),
             write_clip(tmp_path / "b.avi", photos, 17, fourcc="MJPG", size=(256, 192)),
             write_clip(tmp_path / "sub_c.mp4", photos, 24, size=(160, 120))]
    dead = f"http://127.0.0.1:{_closed_port()}/gone.mjpg"
    listing = tmp_path / "cams.streams"
    listing.write_text(f"# two cameras\n{url}\n\n{dead}\n")
    rc = cli.main(["--source", *map(str, files), str(listing), "--model", str(tiny_onnx),
                   "--max-frames", "40",  # the stream ends there, after the files
                   "--give-up-after", "2",  # else the dead one is retried as long as the run
                   "--save", str(tmp_path / "out") + "/", "--save-json",
                   str(tmp_path / "out") + "/"])
    out, err = capsys.readouterr()
    assert rc == 1  # the unreachable one is reported as failed; the others complete
    for path, n in zip(files, (30, 17, 24)):
        name = path.stem
        assert _codec(tmp_path / "out" / f"{name}.mp4") == "h264"  # the CLI's default
        assert [read_stamp(f) for f in read_video(tmp_path / "out" / f"{name}.mp4")] == \
            list(range(n))
        records = read_jsonl(tmp_path / "out" / f"{name}.jsonl")
        assert [r["frame"] for r in records] == list(range(n))
        assert {r["source"] for r in records} == {str(path)}
        assert f"camloc: {path}: {n} frames read, {n} processed" in out
    live = read_jsonl(tmp_path / "out" / "127.0.0.1_" f"{url.split(':')[2].split('/')[0]}"
                      "_live.jsonl")
    assert 3 <= len(live) <= 40 and {r["source"] for r in live} == {url}  # --max-frames 40
    line = next(s for s in out.splitlines() if s.startswith(f"camloc: {url}: "))
    read, processed, dropped = (int(line.split(": ")[2].split(", ")[i].split()[0])
                                for i in range(3))  # one rule: read = processed + dropped
    assert processed == len(live) and read == processed + dropped
    frames = [r["frame"] for r in live]
    assert frames == sorted(set(frames))  # the newest frame each time, in order
    assert f"camloc: {dead}: not opened" in out
    assert "retrying every" in err
    assert err.strip().splitlines()[-1].startswith(f"camloc: error: {dead}: cannot open stream")


def _codec(path) -> str:
    import av

    with av.open(str(path)) as c:
        return c.streams.video[0].codec_context.name


def test_several_sources_write_the_codec_asked_for(photos, tiny_onnx, tmp_path):
    files = [write_clip(tmp_path / f"{n}.mp4", photos, 5) for n in "ab"]
    rc = cli.main(["--source", *map(str, files), "--model", str(tiny_onnx), "--codec", "mp4v",
                   "--save", str(tmp_path / "o") + "/"])
    assert rc == 0
    for n in "ab":
        assert _codec(tmp_path / "o" / f"{n}.mp4") == "mpeg4"
        assert [read_stamp(f) for f in read_video(tmp_path / "o" / f"{n}.mp4")] == list(range(5))


def test_none_opened_is_one_line_and_status_2(tiny_onnx, tmp_path, capsys):
    rc = cli.main(["--source", str(tmp_path / "no1.mp4"), str(tmp_path / "no2.mp4"),
                   "--model", str(tiny_onnx), "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1] == f"camloc: error: none of the 2 sources could be opened ({tmp_path}/no1.mp4: " \
        f"source not found: {tmp_path}/no1.mp4)"


def test_several_sources_need_folders_for_save(photos, tiny_onnx, tmp_path, capsys):
    a = write_clip(tmp_path / "a.mp4", photos, 3)
    rc = cli.main(["--source", str(a), str(a), "--model", str(tiny_onnx),
                   "--save", str(tmp_path / "x.mp4")])
    assert rc == 2
    assert capsys.readouterr().err.strip() == (
        f"camloc: error: --save {tmp_path}/x.mp4: with several sources, give a folder (one "
        "file per source goes in it)")


def test_a_source_list_skips_comments_and_blank_lines(tmp_path):
    listing = tmp_path / "cams.txt"
    listing.write_text("# front door\nrtsp://10.0.0.2/1\n\n  0  \n# off: 1\nclip.mp4\n")
    assert read_source_list(listing) == ["rtsp://10.0.0.2/1", "0", "clip.mp4"]
    assert expand_sources(["a.mp4", str(listing)]) == ["a.mp4", "rtsp://10.0.0.2/1", "0",
                                                       "clip.mp4"]
    assert expand_sources(["missing.txt"]) == ["missing.txt"]  # not a list: a source


def test_ctrl_c_leaves_every_source_with_consistent_outputs(photos, tiny_onnx, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    files = [write_clip(tmp_path / f"{n}.mp4", photos, 400, size=(160, 120)) for n in "xy"]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "realtime", "--source", *map(str, files), "--model",
         str(tiny_onnx), "--save", "o/", "--save-json", "o/"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first, give_up = tmp_path / "o" / "x.jsonl", time.monotonic() + 120  # a bound only
    while proc.poll() is None and lines_in(first) < 5:
        assert time.monotonic() < give_up, "the run never got going"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    for name in "xy":
        records = read_jsonl(tmp_path / "o" / f"{name}.jsonl")
        frames = read_video(tmp_path / "o" / f"{name}.mp4")
        assert len(records) < 400
        assert [r["frame"] for r in records] == [read_stamp(f) for f in frames] == \
            list(range(len(records)))
    assert "stopped: SIGINT" in stdout and "Traceback" not in stderr


def test_batching_across_sources_keeps_each_source_in_order(photos, tiny_onnx, tmp_path):
    from realtime.model.engine import Localizer
    from realtime.outputs.sinks import JsonlSink
    from realtime.pipeline.runner import Pipeline

    files = [write_clip(tmp_path / "p.mp4", photos, 12), write_clip(tmp_path / "q.mp4", photos, 7)]
    loc = Localizer(tiny_onnx, topk=2)
    results = {}
    for batch in (True, False):  # one frame of each source in one call, or one per call
        def sinks(feed, batch=batch):
            return [JsonlSink(tmp_path / f"{feed.name}-{batch}.jsonl")]
        with Pipeline([str(f) for f in files], loc, names=["p", "q"], sinks_for=sinks,
                      batch=2 if batch else 1) as run:
            for _ in run:
                pass
        results[batch] = [read_jsonl(tmp_path / f"{n}-{batch}.jsonl") for n in "pq"]
    for records, n in zip(results[True], (12, 7)):
        assert [r["frame"] for r in records] == list(range(n))
    labels = {b: [[[d["label"] for d in r["detections"]] for r in recs] for recs in results[b]]
              for b in results}
    assert labels[True] == labels[False]

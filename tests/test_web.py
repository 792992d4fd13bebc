"""The web view over real sockets: binding, token, viewers (one stalled), metrics parsed
with Prometheus' own parser, bad requests, and no encoding while nobody watches.
A real pipeline runs on a real video written from photos and feeds the view."""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from media import write_clip
from prometheus_client.parser import text_string_to_metric_families

from realtime.commands.viewers import open_web_view
from realtime.model.engine import Localizer
from realtime.outputs.serve import ServeError, listen_urls, parse_serve
from realtime.outputs.web import WebView
from realtime.pipeline.runner import Pipeline, RenderOptions
from realtime.sources import open_source

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 120


@pytest.fixture(scope="module")
def clip(tmp_path_factory, photos):
    return write_clip(tmp_path_factory.mktemp("web") / "clip.mp4", photos, FRAMES,
                      size=(640, 480))


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                    timeout=30) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def run_through(web: WebView, clip: Path, model: Path, options: RenderOptions) -> Pipeline:
    """The CLI's loop: every processed frame handed to the web view."""
    with open_source(str(clip)) as source, Pipeline(source, Localizer(str(model), topk=2),
                                                    draw=True, options=options) as run:
        web.attach(run)
        for item in run:
            web.write(item)
    return run


def read_parts(url: str, want: int, got: list[bytes]) -> None:
    """A viewer: read the MJPEG stream until ``want`` JPEGs arrived (or it ends)."""
    with urllib.request.urlopen(url, timeout=60) as r:
        buf = b""
        while len(got) < want and (chunk := r.read1(65536)):
            buf += chunk
            while (end := buf.find(b"\xff\xd9")) >= 0 and (start := buf.find(b"\xff\xd8")) >= 0:
                got.append(buf[start:end + 2])
                buf = buf[end + 2:]


def test_serve_addresses_parse_with_a_loopback_default():
    assert parse_serve("8080") == ("127.0.0.1", 8080)
    assert parse_serve("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_serve("[::1]:9000") == ("::1", 9000)
    for bad in ("x", "70000", "host:", "::1:80"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_serve(bad)
    assert listen_urls("0.0.0.0", 80, ["10.1.2.3"]) == ["http://127.0.0.1:80/",
                                                         "http://10.1.2.3:80/"]
    assert listen_urls("::1", 80, []) == ["http://[::1]:80/"]


def test_binds_loopback_unless_told_and_a_busy_port_is_one_line(tiny_onnx):
    with open_web_view("0", None, RenderOptions(), 1) as web:
        assert web.urls == [f"http://127.0.0.1:{web.port}/"]
        assert get(web.urls[0])[0] == 200
        for ip in [a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None,
                                                       socket.AF_INET)]:
            if not ip.startswith("127."):  # another interface: nobody answers there
                with pytest.raises(OSError):
                    socket.create_connection((ip, web.port), timeout=5).close()
        with pytest.raises(ServeError, match=rf"--serve 127.0.0.1:{web.port}: cannot listen"):
            open_web_view(str(web.port), None, RenderOptions(), 1)


def test_the_cli_prints_where_it_listens(clip, tiny_onnx, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), CAMLOC_TOKEN="t0k")
    r = subprocess.run([sys.executable, "-m", "realtime", "--source", str(clip), "--model",
                        str(tiny_onnx), "--max-frames", "5", "--serve", "0.0.0.0:0"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    line = r.stdout.splitlines()[0]
    assert line.startswith("camloc: serving the live view on http://127.0.0.1:")
    assert not list(tmp_path.iterdir())  # --serve alone saves nothing
    r = subprocess.run([sys.executable, "-m", "realtime", "--serve", "1.2.3:x"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stderr) == (2, "camloc: error: --serve: expected [HOST:]PORT, "
                                           "got '1.2.3:x'\n")


def test_a_token_protects_page_stream_api_and_metrics():
    with WebView(port=0, token="s3cret") as web:
        base = web.urls[0]
        for path in ("", "stream", "api/detections", "metrics"):
            assert get(base + path)[0] == 401
            assert get(base + path + "?token=wrong")[0] == 401
            assert get(base + path, {"Authorization": "Bearer nope"})[0] == 401
        assert get(base + "api/detections", {"Authorization": "Bearer s3cret"})[0] == 200
        status, body, headers = get(base + "?token=s3cret")
        assert status == 200 and b'<img id="video"' in body and b"frame?after=" in body
        cookie = headers["Set-Cookie"].split(";")[0]
        assert "HttpOnly" in headers["Set-Cookie"]
        assert get(base + "metrics", {"Cookie": cookie})[0] == 200


def test_viewers_with_one_stalled_never_slow_the_pipeline(clip, tiny_onnx):
    options = RenderOptions()
    with WebView(port=0, options=options, topk=2) as web:
        url = web.urls[0] + "stream"
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", web.port))
        stalled.sendall(b"GET /stream HTTP/1.1\r\nHost: camloc\r\n\r\n")  # and never reads
        got: list[list[bytes]] = [[], []]
        readers = [threading.Thread(target=read_parts, args=(url, 5, g)) for g in got]
        for t in readers:
            t.start()
        while web.viewers < 3:  # every viewer is connected before the first frame
            threading.Event().wait(0.01)
        run = run_through(web, clip, tiny_onnx, options)
        for t in readers:
            t.join(60)
        assert run.stats.processed == run.stats.frames_read == FRAMES
        assert all(len(g) == 5 and len(set(g)) == 5 for g in got)  # five different frames each
        assert web.encoded < 5 * FRAMES  # shared: one encoding per frame, not per viewer
        stalled.close()


def test_metrics_parse_and_count_the_run(clip, tiny_onnx):
    with WebView(port=0) as web:
        run = run_through(web, clip, tiny_onnx, RenderOptions())
        status, body, headers = get(web.urls[0] + "metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    value = {s.name: s.value for f in families.values() for s in f.samples if not s.labels}
    assert value["camloc_frames_read_total"] == value["camloc_frames_processed_total"] == FRAMES
    assert value["camloc_frames_dropped_total"] == value["camloc_frames_corrupt_total"] == 0
    assert value["camloc_reconnects_total"] == 0 and value["camloc_viewers"] == 0
    assert value["camloc_source_outages_total"] == value["camloc_source_gone_seconds_total"] == 0
    assert value["camloc_fps"] > 0
    latency = families["camloc_stage_latency_seconds"]
    counts = {s.labels["stage"]: s.value for s in latency.samples if s.name.endswith("_count")}
    assert counts["infer"] == counts["draw"] == FRAMES
    info = families["camloc_run_info"].samples[0].labels  # an info metric: a gauge of 1
    assert info["provider"] == run.stats.provider and info["source"] == str(clip)


def test_nobody_watching_means_no_encoding_and_the_api_has_the_last_frame(clip, tiny_onnx):
    with WebView(port=0, topk=2) as web:
        run_through(web, clip, tiny_onnx, RenderOptions())
        status, body, _ = get(web.urls[0] + "api/detections")
    assert web.encoded == 0
    latest = json.loads(body)
    assert (status, latest["frame"], latest["source"], latest["processed"]) == (
        200, FRAMES - 1, str(clip), FRAMES)
    assert latest["detections"] and {"class_id", "label", "score", "box"} <= set(
        latest["detections"][0])


def test_controls_act_like_the_window_keys():
    options = RenderOptions()
    with WebView(port=0, options=options, topk=2) as web:
        def post(body: bytes) -> tuple[int, bytes]:
            req = urllib.request.Request(web.urls[0] + "api/control", data=body,
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return r.status, r.read()
            except urllib.error.HTTPError as e:
                return e.code, e.read()

        assert post(b'{"action": "heatmap"}')[0] == 200 and options.heatmap is False
        status, body = post(b'{"action": "next"}')
        assert (status, json.loads(body)["index"], options.index) == (200, 0, 0)
        assert post(b'{"action": "rm -rf"}')[0] == 400 and post(b"{not json")[0] == 400


def test_bad_requests_and_leaving_viewers_are_handled_quietly(clip, tiny_onnx, caplog):
    with caplog.at_level(logging.INFO), WebView(port=0) as web:
        assert get(web.urls[0] + "no/such/page")[0] == 404
        with socket.create_connection(("127.0.0.1", web.port)) as s:
            s.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
            answer = s.recv(200)
            assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0]
        leaver = socket.create_connection(("127.0.0.1", web.port))
        leaver.sendall(b"GET /stream HTTP/1.1\r\nHost: camloc\r\n\r\n")
        while web.viewers < 1:
            threading.Event().wait(0.01)
        done = threading.Thread(target=run_through,
                                args=(web, clip, tiny_onnx, RenderOptions()))
        done.start()
        head = b""
        while b"image/jpeg" not in head:  # the first frame has begun to arrive
            head += leaver.recv(4096)
        leaver.close()  # mid-stream
        done.join(60)
        while web.viewers:
            threading.Event().wait(0.01)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]

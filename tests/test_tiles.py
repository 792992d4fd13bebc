"""Several sources as tiles: the layout on tiny arrays (exact pixels), the web view's
mosaic over real sockets while three files written from real photos run at once (one
tile per source with its own newest frame, every source in the API and /metrics, no
JPEG while nobody watched), the CLI's --serve and --show with several sources, and the
window's keys through a fake window."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from media import read_stamp, write_clip
from prometheus_client.parser import text_string_to_metric_families
from test_web import get, read_parts

from realtime import cli
from realtime.model.draw import RenderOptions
from realtime.model.engine import Localizer
from realtime.outputs.sinks import JsonlSink, Processed
from realtime.outputs.tiles import MosaicWindow, TileHolder, TileSink, cell_size, compose, fit_rect, grid
from realtime.outputs.web import WebView
from realtime.pipeline.runner import Pipeline


def test_grid_cells_and_letterbox_rects():
    assert [grid(n) for n in (1, 2, 3, 4, 5, 9, 10, 16)] == [
        (1, 1), (1, 2), (2, 2), (2, 2), (2, 3), (3, 3), (3, 4), (4, 4)]
    assert cell_size(4) == (640, 360) and cell_size(9) == (640, 360)
    assert cell_size(16) == (480, 270)  # four columns in 1920 pixels
    assert fit_rect((4, 2), (4, 4)) == (0, 1, 4, 2)   # wide: bars above and below
    assert fit_rect((2, 4), (4, 4)) == (1, 0, 2, 4)   # tall: bars left and right
    assert fit_rect((8, 8), (4, 2)) == (1, 0, 2, 2)
    with pytest.raises(ValueError, match="at least one tile, got 0"):
        grid(0)
    with pytest.raises(ValueError, match=r"image size must be positive, got \(0, 3\)"):
        fit_rect((0, 3), (4, 4))


def test_compose_places_letterboxed_tiles_in_grid_order():
    red = np.zeros((2, 4, 3), np.uint8)
    red[:] = (0, 0, 255)
    green = np.zeros((4, 2, 3), np.uint8)
    green[:] = (0, 255, 0)
    blue = np.full((4, 4, 3), (255, 0, 0), np.uint8)
    out = compose([red, green, blue], cell=(4, 4))
    assert out.shape == (8, 8, 3)  # 2 x 2 cells; the fourth stays black
    expect = np.zeros((8, 8, 3), np.uint8)
    expect[1:3, 0:4] = (0, 0, 255)   # wide tile: one black row above and below
    expect[0:4, 5:7] = (0, 255, 0)   # tall tile: one black column each side
    expect[4:8, 0:4] = (255, 0, 0)
    assert np.array_equal(out, expect)
    assert red[0, 0].tolist() == [0, 0, 255]  # inputs only read
    big = compose([red, None], ["cam0", "cam1"], cell=(160, 90))
    assert big.shape == (90, 320, 3) and big[:20, 160:220].any()  # a black tile, named


def _clips(tmp_path, photos):
    sizes, counts = ((320, 240), (256, 192), (320, 180)), (12, 9, 7)
    files = [write_clip(tmp_path / f"{n}.mp4", photos, k, size=s)
             for n, k, s in zip("abc", counts, sizes)]
    return files, sizes, counts


def test_the_web_view_shows_every_source_as_a_tile(photos, tiny_onnx, tmp_path):
    files, sizes, counts = _clips(tmp_path, photos)
    names = ["a", "b", "c"]
    holder, options = TileHolder(names), RenderOptions()
    with WebView(port=0, options=options, topk=2, tiles=holder) as web:
        run = Pipeline([str(f) for f in files], Localizer(str(tiny_onnx), topk=2), names=names,
                       sinks=[TileSink(holder)], options=options,
                       sinks_for=lambda f: [JsonlSink(tmp_path / f"{f.name}.jsonl")])
        web.attach(run)
        with run:
            for _ in run:
                pass
        assert web.encoded == 0  # nobody watched: nothing composed nor encoded
        status, body, _ = get(web.urls[0] + "api/detections")
        _, text, _ = get(web.urls[0] + "metrics")
        got: list[bytes] = []
        read_parts(web.urls[0] + "stream", 1, got)  # a viewer now: the newest mosaic
        assert web.encoded == 1
        _, after, _ = get(web.urls[0] + "metrics")
    latest = json.loads(body)
    assert status == 200 and latest["processed"] == sum(counts)
    assert [(s["name"], s["source"], s["frame"]) for s in latest["sources"]] == [
        (n, str(f), k - 1) for n, f, k in zip(names, files, counts)]
    assert all(s["detections"] and s["fps"] > 0 for s in latest["sources"])
    families = {f.name: f for f in text_string_to_metric_families(text.decode())}
    processed = {s.labels["source"]: s.value
                 for s in families["camloc_frames_processed"].samples}
    assert processed == dict(zip(names, map(float, counts)))
    # each source's own outputs' latency from arrival, labelled with the source's name
    jsonl = {s.labels["source"]: s.value for s in
             families["camloc_output_latency_seconds"].samples
             if s.name.endswith("_count") and s.labels["output"] == "jsonl"}
    assert jsonl == processed
    # (the mosaic's hand-over, shared by every source, keeps no source label)
    assert latest["latency_ms"].keys() == {f"{n}/jsonl" for n in names} | {"tiles"}
    # the mosaic sent to the viewer carries its newest frame's arrival: the view's own ring
    web_count = [s.value for f in text_string_to_metric_families(after.decode())
                 if f.name == "camloc_output_latency_seconds" for s in f.samples
                 if s.name.endswith("_count") and s.labels == {"source": "", "output": "web"}]
    assert web_count == [1.0]
    mosaic = cv2.imdecode(np.frombuffer(got[0], np.uint8), cv2.IMREAD_COLOR)
    (cw, ch), cols = holder.cell, grid(3)[1]
    assert mosaic.shape == (2 * ch, 2 * cw, 3)
    for i, (size, k) in enumerate(zip(sizes, counts)):
        x, y, w, h = fit_rect(size, (cw, ch))
        y0, x0 = (i // cols) * ch + y, (i % cols) * cw + x
        tile = cv2.resize(mosaic[y0:y0 + h, x0:x0 + w], size, interpolation=cv2.INTER_AREA)
        assert read_stamp(tile) == k - 1  # each tile: its own source's last frame
    assert mosaic[ch + 16:, cw + 16:].max() < 40  # the fourth cell: nothing (JPEG noise)


def test_the_cli_serves_several_sources_and_skips_the_window_without_display(
        photos, tiny_onnx, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    a, b = (write_clip(tmp_path / f"{n}.mp4", photos, 3) for n in "ab")
    rc = cli.main(["--source", str(a), str(b), "--model", str(tiny_onnx), "--serve", "0",
                   "--runs-dir", str(tmp_path / "runs")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.startswith("camloc: serving the live view on http://127.0.0.1:")
    assert "a.mp4: 3 frames read, 3 processed" in out
    assert not (tmp_path / "runs").exists()  # --serve alone saves nothing
    rc = cli.main(["--source", str(a), str(b), "--model", str(tiny_onnx), "--show",
                   "--runs-dir", str(tmp_path / "runs")])
    out, err = capsys.readouterr()
    assert rc == 0 and "--show skipped: no display" in err
    assert len(list((tmp_path / "runs").glob("multi*/*.jsonl"))) == 2  # saved instead


class FakeWindow:
    """Stands for realtime.outputs.sinks.Window: answers each show/poll with the next key."""

    def __init__(self, keys):
        self.keys, self.images, self.polls, self.closed = iter(keys), [], 0, False

    def show(self, image):
        self.images.append(image)
        return next(self.keys, None)

    def poll(self, ms):
        self.polls += 1
        return next(self.keys, None)

    def close(self):
        self.closed = True


def test_window_keys_drive_every_source():
    class Run:
        stopping, options, stopped = False, RenderOptions(), None

        def stop(self, reason):
            self.stopped, self.stopping = reason, True

    holder = TileHolder(["cam0", "cam1"], cell=(64, 36))
    win = FakeWindow([None, "pause", None, "heatmap", "next", "pause"])
    shown, run = MosaicWindow(win, holder, topk=2, hz=1e9), Run()
    shown.attach(run)
    shown.tick()  # nothing yet: keys polled, nothing shown
    assert (win.images, win.polls) == ([], 1)
    image = np.full((36, 64, 3), 200, np.uint8)
    holder.put(1, Processed(None, None, image, {}, fps=9.0))
    shown.tick()  # paused on the first mosaic; h and n still work, space resumes
    assert len(win.images) == 1 and win.images[0].shape == (36, 128, 3)
    assert win.images[0][:, :64].any()  # cam0's name on its black tile
    assert (run.options.heatmap, run.options.index, run.stopped) == (False, 0, None)
    shown.tick()  # no new frame: not shown again
    assert len(win.images) == 1
    win.keys = iter(["quit"])
    holder.put(0, Processed(None, None, image, {}, fps=9.0))
    shown.tick()
    assert run.stopped == "q" and len(win.images) == 2
    shown.close()
    assert win.closed


def test_q_in_the_window_stops_a_multi_source_run(photos, tiny_onnx, tmp_path):
    files, _, counts = _clips(tmp_path, photos)
    names = ["a", "b", "c"]
    class QuitOnceShown(FakeWindow):  # q pressed while looking at the mosaic: the first
        def poll(self, ms):            # polls may come before any source produced a frame
            return super().poll(ms) if self.images else None

    holder, win = TileHolder(names), QuitOnceShown(["quit"])
    shown = MosaicWindow(win, holder)
    run = Pipeline([str(f) for f in files], Localizer(str(tiny_onnx)), names=names,
                   sinks=[TileSink(holder), shown])  # the window: fed in the caller's thread
    with run:
        for _ in run:
            pass
    assert run.stopped_by == "q" and len(win.images) >= 1
    assert win.images[0].shape == (720, 1280, 3)
    assert sum(f.stats.processed for f in run.feeds) <= sum(counts)

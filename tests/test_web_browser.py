"""The live page in a real browser: Debian's headless Chromium (driven by Selenium)
opens it while the default model (real weights) runs on a video of real photos,
sees the video change frame by frame and the detections list follow the scene.

CAMLOC_SCREENSHOT=docs/webview.jpg saves the page as the README shows it.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from media import read_stamp, stamp, write_video
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from realtime.model.engine import Localizer
from realtime.outputs.web import WebView
from realtime.pipeline.runner import Pipeline, RenderOptions
from realtime.sources import open_source

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
# skipped only outside CI (a developer without the browser); CI (.ci/run) installs both,
# and there a missing browser fails the test instead of hiding it
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER) and not os.environ.get("CI"),
                                reason="needs Debian's chromium and chromium-driver "
                                       "(.ci/run installs them)")
SCENES = ("cat", "espresso", "motorcycle")
PER_SCENE, SIZE = 40, (640, 360)


@pytest.fixture(scope="module")
def scenes_clip(tmp_path_factory, photos) -> Path:
    """A cat, then an espresso, then a motorcycle, over and over; every frame numbered."""
    stills = [cv2.resize(np.ascontiguousarray(photos[n][:, :, ::-1]), SIZE,
                         interpolation=cv2.INTER_AREA) for n in SCENES]
    frames = [stamp(stills[(i // PER_SCENE) % len(stills)].copy(), i)
              for i in range(PER_SCENE * len(stills) * 2)]
    return write_video(tmp_path_factory.mktemp("browser") / "scenes.mp4", frames, 10.0)


def _chrome(page_load: str = "normal"):
    opts = webdriver.ChromeOptions()
    opts.page_load_strategy = page_load
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1100,640"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER),
                            options=opts)


@pytest.fixture()
def browser():
    driver = _chrome()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture()
def eager_browser():
    """Commands return once the document is parsed: a page whose video has no frame yet
    never finishes loading."""
    driver = _chrome("eager")
    try:
        yield driver
    finally:
        driver.quit()


def paced_run(web: WebView, clip: Path, model: Path, stop: threading.Event) -> None:
    """The CLI's loop, paced like a 10 fps camera (the consumer sets the pace)."""
    options = web.options
    with open_source(str(clip)) as source, Pipeline(source, Localizer(str(model), topk=2),
                                                    draw=True, options=options) as run:
        web.attach(run)
        for item in run:
            web.write(item)
            if stop.wait(0.1):
                run.stop("test done")


def shown_frame(driver) -> np.ndarray:
    png = driver.find_element(By.ID, "video").screenshot_as_png
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)


def test_the_page_shows_the_live_video_and_detections(browser, scenes_clip, lite0_onnx):
    stop = threading.Event()
    with WebView(port=0, token="pass", options=RenderOptions(), topk=2) as web:
        worker = threading.Thread(target=paced_run, args=(web, scenes_clip, lite0_onnx, stop))
        worker.start()
        try:
            browser.get(web.urls[0] + "?token=pass")
            wait = WebDriverWait(browser, 60, poll_frequency=0.05)
            wait.until(lambda d: d.execute_script(
                "return document.getElementById('video').naturalWidth") == SIZE[0])
            first = shown_frame(browser)
            wait.until(lambda d: not np.array_equal(shown_frame(d), first))  # it moves on
            seen = [read_stamp(first)] + [read_stamp(shown_frame(browser)) for _ in range(3)]
            labels = browser.find_element(By.ID, "detections").text
            assert labels and "waiting" not in labels
            # the detections list follows the scene: a new photo, new labels
            wait.until(lambda d: d.find_element(By.ID, "detections").text.split(" ")[0]
                       != labels.split(" ")[0])
            assert seen[-1] > seen[0] and len(set(seen)) >= 2  # frame numbers in the picture
            assert "fps" in browser.find_element(By.ID, "fps").text
            assert "ExecutionProvider" in browser.find_element(By.ID, "provider").text
            browser.find_element(By.ID, "heatmap").click()  # the window's h key
            wait.until(lambda d: web.options.heatmap is False)
            browser.find_element(By.ID, "heatmap").click()
            wait.until(lambda d: web.options.heatmap is True)
            if os.environ.get("CAMLOC_SCREENSHOT"):
                time.sleep(0.5)
                shot = cv2.imdecode(np.frombuffer(browser.get_screenshot_as_png(), np.uint8),
                                    cv2.IMREAD_COLOR)
                cv2.imwrite(os.environ["CAMLOC_SCREENSHOT"], shot,
                            [cv2.IMWRITE_JPEG_QUALITY, 85, cv2.IMWRITE_PNG_COMPRESSION, 9])
        finally:
            stop.set()
            worker.join(60)


def test_the_page_shows_several_sources_as_tiles(browser, photos, tiny_onnx, tmp_path):
    """Three files at once: the page's video is their mosaic, its list names each source."""
    from media import write_clip

    from realtime.outputs.tiles import TileHolder, TileSink
    from realtime.pipeline.runner import Pipeline

    names = ["a", "b", "c"]
    files = [str(write_clip(tmp_path / f"{n}.mp4", photos, 300)) for n in names]
    holder, options = TileHolder(names), RenderOptions()
    with WebView(port=0, options=options, tiles=holder) as web:
        run = Pipeline(files, Localizer(str(tiny_onnx)), names=names, sinks=[TileSink(holder)],
                       options=options)
        web.attach(run)

        def paced() -> None:  # paced like cameras
            with run:
                for _ in run:
                    time.sleep(0.05)

        worker = threading.Thread(target=paced)
        worker.start()
        try:
            browser.get(web.urls[0])
            wait = WebDriverWait(browser, 60, poll_frequency=0.05)
            wait.until(lambda d: d.execute_script(
                "return document.getElementById('video').naturalWidth") == 2 * holder.cell[0])
            wait.until(lambda d: all(f"{n}: " in d.find_element(By.ID, "detections").text
                                     for n in names))  # each source as its first frame comes
            listed = browser.find_element(By.ID, "detections").text.splitlines()
            assert {line.split(":")[0] for line in listed} == set(names)
            browser.find_element(By.ID, "boxes").click()  # the b key: every source's drawing
            wait.until(lambda d: options.boxes is False)
        finally:
            run.stop("test done")
            worker.join(60)


def test_the_page_shows_live_frames_soon_after_capture(browser, photos, lite0_onnx):
    """Issue 27: a live stream paced like a 15 fps camera, the default model, the page in
    Chromium. Each frame's arrival travels with it (X-Camloc-Arrival); the page records
    how long after it the frame was painted. Stated bound: the web hop (JPEG, HTTP, the
    browser's decode and paint) adds under 150 ms to the pipeline's own p50 latency
    (arrival to the web view having the frame), and the page's p99 stays under one
    second on this shared machine: a frame never waits behind another for the page."""
    from realtime.commands.paced_stream import PacedMjpegServer, encode_jpegs
    from realtime.sources.live import LiveSource

    stills = [cv2.resize(np.ascontiguousarray(photos[n][:, :, ::-1]), SIZE,
                         interpolation=cv2.INTER_AREA) for n in SCENES]
    jpegs = encode_jpegs([stamp(stills[i % 3].copy(), i) for i in range(30)])
    own: list[float] = []
    stop = threading.Event()
    with PacedMjpegServer(jpegs, 15.0) as server, WebView(port=0) as web:

        def run_live() -> None:
            with LiveSource(server.url, stream=True) as src, \
                    Pipeline(src, Localizer(str(lite0_onnx)), sinks=[web]) as run:
                for item in run:
                    own.append((time.monotonic() - item.frame.arrival) * 1e3)
                    if stop.is_set():
                        run.stop("test done")

        worker = threading.Thread(target=run_live)
        worker.start()
        try:
            browser.get(web.urls[0])
            wait = WebDriverWait(browser, 60, poll_frequency=0.1)
            wait.until(lambda d: d.execute_script("return window.camlocLatency.length") >= 60)
            shown = browser.execute_script("return window.camlocLatency.slice()")
            text = browser.find_element(By.ID, "latency").text
        finally:
            stop.set()
            worker.join(60)
    page, pipe = np.percentile(shown, [50, 99]), np.percentile(own, 50)
    print(f"\npage latency p50 {page[0]:.0f} / p99 {page[1]:.0f} ms; pipeline p50 {pipe:.0f} ms")
    assert all(ms > 0 for ms in shown)
    assert page[0] < pipe + 150 and page[1] < 1000, (page, pipe)
    assert text.startswith("latency p50 ") and " / p99 " in text
    assert web.latency.count >= 60  # the server's own record of each frame it sent


ATTACK = """<!doctype html><title>elsewhere</title><body><script>
window.done = 0;
const target = "%s/api/control";
const finish = () => { window.done += 1; };
// a simple request needs no preflight: text/plain, sent with the cookie (same site)
fetch(target, {method: "POST", mode: "no-cors", credentials: "include",
               body: '{"action": "heatmap"}'}).then(finish, finish);
// JSON needs a preflight, which the view does not grant (never sent); and a form post
fetch(target, {method: "POST", credentials: "include",
               headers: {"Content-Type": "application/json"},
               body: '{"action": "heatmap"}'}).then(finish, finish);
const form = document.createElement("iframe");
form.name = "sink"; document.body.appendChild(form);
const f = document.createElement("form");
f.method = "POST"; f.action = target; f.target = "sink"; f.enctype = "text/plain";
const i = document.createElement("input");
i.name = '{"action": "heatmap", "x": "'; i.value = '"}'; f.appendChild(i);
document.body.appendChild(f); f.submit();
</script>"""


def test_a_page_on_another_port_cannot_use_the_controls(eager_browser, caplog):
    """Issue 28: a page of another origin toggled the heatmap with a no-cors fetch, and
    the SameSite=Strict token cookie is still sent from another port of the same host.
    Now every such request is refused while the page's own buttons work."""
    import http.server

    options = RenderOptions()
    with WebView(port=0, token="pass", options=options) as web:
        origin = web.urls[0].rstrip("/")

        class Evil(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server API
                body = (ATTACK % origin).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Evil)
        threading.Thread(target=evil.serve_forever, daemon=True).start()
        try:
            with caplog.at_level(logging.WARNING, "realtime"):
                browser = eager_browser
                wait = WebDriverWait(browser, 60, poll_frequency=0.05)
                browser.get(web.urls[0] + "?token=pass")  # the cookie is set for 127.0.0.1
                browser.get(f"http://127.0.0.1:{evil.server_port}/")
                wait.until(lambda d: d.execute_script("return window.done") >= 2)
                wait.until(lambda d: web.control_refused >= 2)  # the no-cors fetch, the form
                time.sleep(0.5)
                assert options.heatmap is True  # nothing was toggled
                assert "refused a control request" in caplog.text
                browser.get(web.urls[0])  # the page itself (the cookie carries the token)
                browser.find_element(By.ID, "heatmap").click()
                wait.until(lambda d: options.heatmap is False)
        finally:
            evil.shutdown()
            evil.server_close()

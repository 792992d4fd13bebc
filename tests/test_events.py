"""Events from a real model on a video with a known schedule (tests/event_media.py):
exactly the expected events, dated within 0.5 s, with clips that decode and hold the
pre-roll and the appearance, snapshots that show the box, one MQTT message (real
mosquitto, real paho subscriber) and one webhook (real HTTP server) per start and end,
and the web view's routes behind its token. One real pipeline run feeds two events
sinks at once: with a zone and without."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import av
import cv2
import numpy as np
import pytest
from event_media import FPS, LEFT_ZONE, SCHEDULE, SIZE, schedule_frames, write_schedule_clip
from event_servers import Broker, Hooks, Subscriber, wait_until
from prometheus_client.parser import text_string_to_metric_families

from realtime.model.engine import Localizer
from realtime.outputs.events.board import EventBoard
from realtime.outputs.events.deliver import MqttTarget, WebhookTarget
from realtime.outputs.events.rules import UPDATE_GAIN, Rules, parse_zone
from realtime.outputs.events.sink import EventsSink
from realtime.outputs.events.webroutes import attach_board
from realtime.outputs.web import WebView
from realtime.pipeline.runner import Pipeline, RenderOptions
from realtime.sources import open_source

CAT = frozenset({"Egyptian cat"})
PRE = POST = 1.0
TOKEN = "s3cret"


def rules(zoned: bool) -> Rules:
    return Rules(CAT, min_score=0.1, min_duration=0.5, end_gap=1.0,
                 zones=(parse_zone(LEFT_ZONE),) if zoned else ())


@pytest.fixture(scope="module")
def run(tmp_path_factory, photos, lite0_onnx):
    tmp = tmp_path_factory.mktemp("events")
    clip = write_schedule_clip(tmp / "sched.avi", photos["cat"])
    broker, hooks = Broker(tmp), Hooks()
    sub = Subscriber(broker.port)
    web = WebView(port=0, token=TOKEN).start()
    board = EventBoard()
    attach_board(web, board)
    mqtt = MqttTarget("127.0.0.1", broker.port, "camloc", retry_s=10)
    hook = WebhookTarget(hooks.url + "/ok", retry_s=10)
    board.targets = [mqtt, hook]  # what /metrics reports (event_sinks() does this for the CLI)
    zoned = EventsSink(tmp / "zoned", "sched", FPS, rules(True), board=board,
                       targets=[mqtt, hook], pre=PRE, post=POST)
    plain = EventsSink(tmp / "plain", "sched", FPS, rules(False), pre=PRE, post=POST)
    loc = Localizer(str(lite0_onnx), "cpu", topk=3)
    try:
        with Pipeline(open_source(str(clip)), loc, sinks=[zoned, plain],
                      options=RenderOptions(heatmap=False)) as pipe:
            for _ in pipe:
                pass
        zoned.close()
        plain.close()
        wait_until(lambda: mqtt.delivered >= 4 and hook.delivered >= 4, 15)
        wait_until(lambda: len(sub.events()) >= 4, 5)
        yield SimpleNamespace(tmp=tmp, zoned=zoned, plain=plain, sub=sub, hooks=hooks,
                              web=web, board=board, mqtt=mqtt, hook=hook)
    finally:
        for x in (mqtt, hook, sub, web, hooks):
            x.close()
        broker.stop()


def lines(folder: Path) -> list[dict]:
    return [json.loads(s) for s in (folder / "events.jsonl").read_text().splitlines()]


def ended(folder: Path) -> list[dict]:
    return [r for r in lines(folder) if r["type"] == "end"]


def test_exactly_the_scheduled_events_within_half_a_second(run):
    truth_zoned = [(s, e) for s, e, where in SCHEDULE if where == "left" and e - s > 0.5]
    truth_plain = [(s, e) for s, e, _ in SCHEDULE if e - s > 0.5]  # the 7 s flicker: none
    for folder, truth in ((run.tmp / "zoned", truth_zoned), (run.tmp / "plain", truth_plain)):
        recs = lines(folder)
        assert [r["type"] for r in recs] == ["start", "end"] * len(truth)  # whole lines
        got = ended(folder)
        assert len(got) == len(truth)
        for rec, (start, end) in zip(got, truth, strict=True):
            assert abs(rec["start_ms"] / 1e3 - start) <= 0.5
            assert abs(rec["end_ms"] / 1e3 - end) <= 0.5
            assert rec["label"] == "Egyptian cat" and rec["source"] == "sched"
            assert rec["start_frame"] <= rec["best_frame"] <= rec["end_frame"]
            assert rec["start_time"] <= rec["end_time"] and not rec["cut_short"]
    assert {z for r in ended(run.tmp / "zoned") for z in r["zones"]} == {"left"}
    assert run.zoned.frames_skipped == 0 and run.zoned.errors == 0


def _cat_visible(frame_bgr: np.ndarray) -> bool:
    """The cat covers 160x106 pixels at y 60..166; on the grey background only the drawn
    boxes and labels (a tenth of the pixels there) are far from grey."""
    region = frame_bgr[70:156, 20:300].astype(np.int16)
    return float((np.abs(region - 128).max(axis=2) > 40).mean()) > 0.25


def test_clips_decode_and_hold_the_pre_roll_and_the_appearance(run):
    for rec in ended(run.tmp / "plain"):
        with av.open(str(run.tmp / "plain" / rec["clip"])) as c:
            s = c.streams.video[0]
            assert s.codec_context.name == "h264" and c.format.name.startswith("mov")
            frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
        seen = [_cat_visible(f) for f in frames]
        first = seen.index(True)
        # the pre-roll: at least PRE seconds without the cat (at most a keyframe more)
        assert PRE * FPS <= first <= (PRE + 1) * FPS + 1
        shown = sum(seen)
        assert abs(shown - (rec["end_ms"] - rec["start_ms"]) / 1e3 * FPS) <= 2
        after = len(seen) - 1 - max(i for i, v in enumerate(seen) if v)
        assert abs(after - POST * FPS) <= 1


def test_snapshots_show_the_box(run):
    for rec in ended(run.tmp / "zoned"):
        img = cv2.imread(str(run.tmp / "zoned" / rec["snapshot"]))
        x1, y1, x2, y2 = rec["box"]
        edge = img[y1:y1 + 2, x1 + 5:x2 - 5].reshape(-1, 3).astype(int)
        yellow = (edge[:, 0] < 90) & (edge[:, 1] > 180) & (edge[:, 2] > 180)
        assert yellow.mean() > 0.8  # the event's box, drawn in yellow
        assert _cat_visible(img)


def test_one_mqtt_message_and_one_webhook_per_start_and_end(run):
    ids = [r["id"] for r in ended(run.tmp / "zoned")]
    expect = [(kind, i) for i in ids for kind in ("new", "end")]
    got = [(m["type"], m["after"]["id"]) for t, m in run.sub.events()]
    assert sorted(got) == sorted(expect)
    assert {t for t, _ in run.sub.events()} == {"camloc/sched/events"}
    hooked = [(m["type"], m["after"]["id"]) for m in run.hooks.posts["/ok"]]
    assert sorted(hooked) == sorted(expect)
    for _, m in run.sub.events():
        after = m["after"]
        assert after["snapshot_url"] == f"{run.web.urls[0].rstrip('/')}/events/{after['id']}.jpg"
        if m["type"] == "end":
            assert after["clip_url"].endswith(f"/events/{after['id']}.mp4")
            assert m["before"]["end_time"] is None  # its state at the start message
    assert run.mqtt.dropped == run.hook.dropped == 0
    assert any(t == "camloc/available" and m == "online" for _, t, m in run.sub.messages)


def _get(url: str, token: str | None = TOKEN) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                 if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_the_web_view_lists_and_serves_events_behind_its_token(run):
    base = run.web.urls[0].rstrip("/")
    ids = [r["id"] for r in ended(run.tmp / "zoned")]
    for path in ("/api/events", f"/events/{ids[0]}.jpg", f"/events/{ids[0]}.mp4", "/events.js"):
        assert _get(base + path, None)[0] == 401
    code, body, _ = _get(base + "/api/events")
    events = json.loads(body)["events"]
    assert code == 200 and [e["id"] for e in events] == ids[::-1]  # newest first
    assert all(e["type"] == "end" for e in events)
    assert json.loads(_get(base + "/api/events?source=other")[1])["events"] == []
    assert len(json.loads(_get(base + "/api/events?label=285")[1])["events"]) == 2
    after = events[0]["start_time"] - 0.001
    assert [e["id"] for e in json.loads(_get(f"{base}/api/events?after={after}")[1])["events"]
            ] == [ids[1]]
    assert _get(base + "/api/events?after=soon")[0] == 400
    code, jpg, headers = _get(f"{base}/events/{ids[0]}.jpg")
    assert code == 200 and headers["Content-Type"] == "image/jpeg" and jpg[:2] == b"\xff\xd8"
    code, mp4, headers = _get(f"{base}/events/{ids[0]}.mp4")
    assert code == 200 and headers["Content-Type"] == "video/mp4" and b"ftyp" in mp4[:16]
    other = ids[0][:-1] + ("y" if ids[0].endswith("x") else "x")  # an id that is not there
    assert _get(f"{base}/events/{other}.mp4")[0] == 404
    assert _get(f"{base}/events/..%2Fevents.jsonl.mp4")[0] == 404
    page = _get(base + "/")[1].decode()
    assert 'id="events"' in page and "events.js" in page


def test_metrics_count_events_per_source_and_class_and_deliveries(run):
    text = _get(run.web.urls[0].rstrip("/") + "/metrics")[1].decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("camloc_events_total", (("label", "Egyptian cat"), ("source", "sched")))] \
        == 2
    assert samples[("camloc_event_messages_total", (("outcome", "delivered"),
                                                   ("target", f"mqtt:{run.mqtt.name}")))] == 4
    assert samples[("camloc_event_messages_total", (("outcome", "dropped"),
                                                   ("target", f"webhook:{run.hook.name}")))] == 0


def test_the_page_lists_the_events_with_thumbnails_in_a_real_browser(run):
    import os
    import shutil

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path) and not os.environ.get("CI"):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    opts.page_load_strategy = "eager"  # the video <img> waits for frames this view never gets
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path),
                              options=opts)
    try:
        driver.get(f"{run.web.urls[0].rstrip('/')}/?token={TOKEN}")  # the cookie does the rest

        def thumbnails(d) -> list:
            imgs = d.find_elements(By.CSS_SELECTOR, "#events .event img")
            loaded = [i for i in imgs if d.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth", i)]
            return loaded if len(loaded) == 2 else []
        imgs = WebDriverWait(driver, 20).until(thumbnails)
        ids = [r["id"] for r in ended(run.tmp / "zoned")][::-1]
        assert [i.get_attribute("src").rsplit("/", 1)[1] for i in imgs] == \
            [f"{i}.jpg" for i in ids]
        text = driver.find_element(By.ID, "events").text
        assert text.count("Egyptian cat") == 2 and "in left" in text
    finally:
        driver.quit()


@pytest.mark.parametrize("n", [1, 2], ids=["one-source", "two-sources"])
def test_a_cat_coming_into_view_sends_updates_with_a_better_snapshot(tmp_path, photos,
                                                                      lite0_onnx, n):
    """Frigate's update: the cat fades in over 3 s (its score rises), so the event's best
    score rises while it lasts: MQTT (real broker) gets new, update(s), end, in order, each
    update's score at least UPDATE_GAIN above the message before it, and the snapshot on
    disk is the best frame's (replaced, same name). With two sources in one pipeline (each
    its own events sink, one shared folder and MQTT connection, as the CLI makes them) each
    source's topic gets that sequence of its own."""
    frames = schedule_frames(photos["cat"], 6.0)
    grey = np.full_like(frames[0], 128)
    cat = next(f for f in frames if f.std() > 0)  # the cat at the left
    clip = tmp_path / "fade.avi"
    out = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), FPS, SIZE)
    for i in range(round(6.0 * FPS)):
        a = min(1.0, 0.15 + i / (3.0 * FPS))  # 0.15 -> 1 over 3 s, then the cat as it is
        out.write(cv2.addWeighted(cat, a, grey, 1 - a, 0) if i < 50 else grey)
    out.release()
    names = ["fade", "fade2"][:n]
    broker = Broker(tmp_path)
    sub = Subscriber(broker.port)
    mqtt = MqttTarget("127.0.0.1", broker.port, "camloc", retry_s=10)
    made: list[EventsSink] = []

    def sinks_for(feed):
        made.append(EventsSink(tmp_path / "ev", feed.name, FPS, Rules(
            CAT, min_score=0.05, min_duration=0.3, end_gap=0.5), targets=[mqtt], pre=0.5,
            post=0.5))
        return made[-1:]

    def ends() -> int:
        return sum(m["type"] == "end" for _, m in sub.events())

    try:
        with Pipeline([str(clip)] * n, Localizer(str(lite0_onnx), "cpu", topk=3),
                      names=names, sinks_for=sinks_for,
                      options=RenderOptions(heatmap=False)) as pipe:
            for _ in pipe:
                pass
        for sink in made:
            sink.close()
        assert wait_until(lambda: ends() == n, 15)
        got = sub.events()
    finally:
        mqtt.close()
        sub.close()
        broker.stop()
    assert sorted(s.name for s in made) == sorted(names)
    records = lines(tmp_path / "ev")
    for name in names:
        mine = [m for topic, m in got if topic == f"camloc/{name}/events"]
        kinds = [m["type"] for m in mine]
        assert kinds[0] == "new" and kinds[-1] == "end" and "update" in kinds, (name, kinds)
        assert set(kinds[1:-1]) == {"update"} and len({m["after"]["id"] for m in mine}) == 1
        for prev, m in zip(mine, mine[1:]):
            assert m["before"]["max_score"] == prev["after"]["max_score"]  # as last sent
            if m["type"] == "update":
                assert m["after"]["max_score"] >= prev["after"]["max_score"] + UPDATE_GAIN - 1e-3
        end = mine[-1]["after"]
        assert end["source"] == name
        # no update lines in events.jsonl: start and end only
        assert [r["type"] for r in records if r["source"] == name] == ["start", "end"]
        snap = cv2.imread(str(tmp_path / "ev" / end["snapshot"]))
        a = min(1.0, 0.15 + end["best_frame"] / 30)
        best = cv2.resize(cv2.addWeighted(cat, a, grey, 1 - a, 0), snap.shape[1::-1])
        first = cv2.resize(cv2.addWeighted(cat, 0.15, grey, 0.85, 0), snap.shape[1::-1])
        assert np.abs(snap.astype(int) - best).mean() < np.abs(snap.astype(int) - first).mean()

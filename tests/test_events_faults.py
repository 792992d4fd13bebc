"""Events under faults: the broker stopped mid-run and restarted (delivery resumes), a
webhook that answers 500 and one that never answers (counted as dropped), the frame
rate compared with events off in the same test, a quick exit; a SIGKILL (ended events
complete, the open one recorded as cut short at the next start); a full disk (clips
stop first, events.jsonl keeps whole lines)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from event_media import FPS, write_schedule_clip
from event_servers import Broker, Hooks, Subscriber, wait_until
from media import write_clip

from realtime.model.engine import Localizer
from realtime.outputs.events.deliver import MqttTarget, WebhookTarget
from realtime.outputs.events.rules import Rules
from realtime.outputs.events.sink import EventsSink
from realtime.pipeline.runner import Pipeline
from realtime.sources import open_source

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 400
BUSY = Rules(min_score=0.0, min_duration=0.0, end_gap=0.2)  # the top classes come and go


@pytest.fixture(scope="module")
def busy(tmp_path_factory, photos):
    return write_clip(tmp_path_factory.mktemp("busy") / "busy.mp4", photos, FRAMES)


def _run(clip: Path, loc: Localizer, sinks: list, during=None) -> tuple[float, int]:
    t0 = time.monotonic()
    with Pipeline(open_source(str(clip)), loc, sinks=sinks, draw=True) as run:
        watcher = threading.Thread(target=during, args=(run,)) if during else None
        if watcher:
            watcher.start()
        for _ in run:
            pass
    if watcher:
        watcher.join()
    return time.monotonic() - t0, run.stats.processed


def test_delivery_faults_never_slow_the_frames_and_the_broker_comes_back(
        busy, tiny_onnx, tmp_path):
    broker, hooks = Broker(tmp_path), Hooks()
    sub = Subscriber(broker.port)
    loc = Localizer(str(tiny_onnx), topk=2)
    mqtt = MqttTarget("127.0.0.1", broker.port, "camloc", retry_s=30)
    fail = WebhookTarget(hooks.url + "/fail", retry_s=2.0)
    silent = WebhookTarget(hooks.url + "/silent", retry_s=2.0, timeout_s=1.0)
    restarted: list[float] = []

    def outage(run) -> None:  # the broker goes away a quarter in, back a second later
        wait_until(lambda: run.stats.processed >= FRAMES // 4 or run.stopping, 60, 0.01)
        broker.stop()
        time.sleep(1.0)
        broker.start()
        restarted.append(time.monotonic())

    try:
        off_s, off_n = _run(busy, loc, [])
        sink = EventsSink(tmp_path / "ev", "busy", 25.0, BUSY, targets=[mqtt, fail, silent],
                          pre=0.5, post=0.5)
        on_s, on_n = _run(busy, loc, [sink], outage)
        t0 = time.monotonic()
        sink.close()
        fail.close()
        silent.close()
        closing = time.monotonic() - t0
        sent = sink.started + sink.updated + sink.ended
        assert sink.started >= 2 and sink.ended == sink.started
        assert on_n == off_n == FRAMES
        assert on_s <= 2.0 * off_s + 2.0, (on_s, off_s)  # generous: counts, not timings
        assert closing < 8.0  # a silent webhook or a 500 never hold the exit
        for target in (fail, silent):  # never delivered: each message counted as dropped
            assert target.delivered == 0 and target.dropped == sent
        assert hooks.posts["/fail"] and hooks.posts["/silent"]
        # the broker: every message delivered once it is back (the outage < retry_s)
        assert wait_until(lambda: mqtt.delivered + mqtt.dropped == sent, 30)
        assert mqtt.dropped == 0 and mqtt.delivered == sent
        assert wait_until(lambda: any(t > restarted[0] for t, _, _ in sub.messages), 10)
        got = {(m["type"], m["after"]["id"]) for _, m in sub.events()}
        lines = [json.loads(s) for s in (tmp_path / "ev" / "events.jsonl").read_text()
                 .splitlines()]
        assert len(lines) == sink.started + sink.ended  # written whatever the delivery did
        assert {("new" if r["type"] == "start" else "end", r["id"]) for r in lines} >= {
            (kind, i) for kind, i in got if kind != "update"}
    finally:
        for x in (mqtt, fail, silent, sub, hooks):
            x.close()
        broker.stop()


def _camloc(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "realtime", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


CAT_ARGS = ["--event-classes", "Egyptian cat", "--event-min-score", "0.1",
            "--event-end-gap", "1", "--event-pre", "1", "--event-post", "1"]


@pytest.mark.parametrize("names", [("door",), ("door", "yard")], ids=["one-source",
                                                                       "two-sources"])
def test_sigkill_leaves_ended_events_complete_and_the_open_one_cut_short(
        tmp_path, photos, lite0_onnx, names):
    clips = [write_schedule_clip(tmp_path / f"{n}.avi", photos["cat"]) for n in names]
    folder = tmp_path / "ev"
    log = folder / "events.jsonl"
    args = ["--source", *map(str, clips), "--model", str(lite0_onnx), "--device", "cpu",
            "--events", str(folder), *CAT_ARGS]
    proc = _camloc(args, tmp_path)

    def of(records: list[dict], name: str) -> list[dict]:
        return [r for r in records if r["source"] == name]

    def second_started() -> bool:  # every source inside its second event
        lines = [json.loads(s) for s in log.read_text().splitlines()] if log.exists() else []
        return proc.poll() is not None or all(
            [r["type"] for r in of(lines, n)] == ["start", "end", "start"] for n in names)
    try:
        assert wait_until(second_started, 120, 0.02)
        assert proc.poll() is None, "the run ended before the second events started"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
        proc.communicate()
    before = [json.loads(s) for s in log.read_text().splitlines()]
    again = _camloc([*args, "--max-frames", "3"], tmp_path)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err.decode()[-2000:]
    after = [json.loads(s) for s in log.read_text().splitlines()]
    assert after[:len(before)] == before and b"cut short" in err
    for name in names:
        mine = of(before, name)
        assert [r["type"] for r in mine] == ["start", "end", "start"]
        ended = mine[1]
        assert (folder / ended["clip"]).is_file() and (folder / ended["snapshot"]).is_file()
        [cut] = of(after[len(before):], name)
        assert cut["type"] == "end" and cut["id"] == mine[2]["id"] and cut["cut_short"]
        assert cut["ended_by"] == "killed" and cut["end_ms"] is None
        # the clip written while it lasted: salvaged, it plays from the pre-roll (a keyframe
        # at or before start - 1 s) to at least the next keyframe (one second: one fragment)
        assert cut["clip"] == f"{cut['id']}.mp4"
        with av.open(str(folder / cut["clip"])) as box:
            frames = [f.to_ndarray(format="bgr24") for f in box.decode(video=0)]
        assert len(frames) >= FPS, len(frames)
        assert max(float(f.std()) for f in frames) > 10  # a picture, not an empty stream
    assert not list(folder.glob("*.live.mp4"))


def test_several_sources_from_the_cli_each_their_own_events_and_messages(
        tmp_path, photos, lite0_onnx):
    broker, hooks = Broker(tmp_path), Hooks()
    sub = Subscriber(broker.port)
    try:
        clips = [write_schedule_clip(tmp_path / f"{n}.avi", photos["cat"], duration=6.5)
                 for n in ("porch", "yard")]
        proc = _camloc(["--source", *map(str, clips), "--model", str(lite0_onnx),
                        "--device", "cpu", "--save-json", f"{tmp_path}/json/",
                        "--events", str(tmp_path / "ev"), *CAT_ARGS,
                        "--mqtt", f"127.0.0.1:{broker.port}", "--webhook", hooks.url + "/ok"],
                       tmp_path)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()[-2000:]
        lines = [json.loads(s) for s in (tmp_path / "ev" / "events.jsonl").read_text()
                 .splitlines()]
        ended = {r["source"]: r for r in lines if r["type"] == "end"}
        assert len(lines) == 4 and set(ended) == {"porch", "yard"}
        for rec in ended.values():
            assert abs(rec["start_ms"] - 2000) <= 500 and abs(rec["end_ms"] - 5000) <= 500
            assert (tmp_path / "ev" / rec["clip"]).is_file()
        assert wait_until(lambda: len(sub.events()) >= 4, 10)
        assert sorted((t, m["type"]) for t, m in sub.events()) == [
            ("camloc/porch/events", "end"), ("camloc/porch/events", "new"),
            ("camloc/yard/events", "end"), ("camloc/yard/events", "new")]
        assert sorted(m["after"]["source"] for m in hooks.posts["/ok"]) == [
            "porch", "porch", "yard", "yard"]
    finally:
        sub.close()
        hooks.close()
        broker.stop()


def _fill(path: Path, leave: int) -> None:
    """Write ``path`` until the disk has about ``leave`` bytes free (0: until it is full)."""
    import shutil

    with open(path, "ab") as f:
        while True:
            free = shutil.disk_usage(path.parent).free
            if free <= leave:
                return
            try:
                f.write(b"\0" * min(65536, max(4096, free - leave)))
                f.flush()
            except OSError:
                return


def test_a_filling_disk_stops_clips_first_and_lines_stay_whole(busy, tiny_onnx, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    try:
        loc = Localizer(str(tiny_onnx), topk=2)
        reserve = 1 << 20
        _fill(disk / "filler1", reserve + 40_000)  # room for lines and a snapshot, no clip
        first = EventsSink(disk / "ev", "busy", 25.0, BUSY, pre=0.5, post=0.5, reserve=reserve)
        _run(busy, loc, [first])
        first.close()
        assert first.started >= 2 and first.clips_written == 0
        assert first.clips_skipped == first.ended and first.errors == 0  # every line written
        _fill(disk / "filler2", 0)  # now nothing at all is left
        second = EventsSink(disk / "ev", "busy", 25.0, BUSY, pre=0.5, post=0.5,
                            reserve=reserve)
        _run(busy, loc, [second])
        second.close()
        assert second.errors > 0  # lines refused by the disk, said in the log
        raw = (disk / "ev" / "events.jsonl").read_bytes()
        assert raw.endswith(b"\n")
        recs = [json.loads(s) for s in raw.splitlines()]  # every line whole
        assert len(recs) >= 2 * first.started
        assert all(r["clip"] is None for r in recs)
        assert not list((disk / "ev").glob("*.part"))
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_recovery_keeps_a_live_clip_that_plays_and_drops_one_that_does_not(tmp_path, photos):
    """What a killed run leaves: a live clip copied while still open (no trailer, the last
    fragment unfinished) becomes the cut-short event's clip and plays its whole
    fragments; a live clip cut before any fragment is deleted and the event has none."""
    from realtime.outputs.events.clips import LIVE_SUFFIX, LiveClip, PacketRing
    from realtime.outputs.events.store import EventLog

    ring = PacketRing(10.0, 30.0)
    image = cv2.resize(photos["cat"], (320, 240))
    for i in range(35):
        ring.encode(np.roll(image, 4 * i, axis=1), i / 10)
    live = LiveClip(tmp_path / "a.live.mp4", ring.cut(0.0, 3.4), ring, 60.0)
    crashed = (tmp_path / "a.live.mp4").read_bytes()  # what is on disk, mid-event
    live.close()
    assert not (tmp_path / "a.live.mp4").exists()
    folder = tmp_path / "ev"
    folder.mkdir()
    (folder / f"good{LIVE_SUFFIX}").write_bytes(crashed)
    (folder / f"bad{LIVE_SUFFIX}").write_bytes(crashed[:200])
    log = EventLog(folder)
    for eid in ("good", "bad"):
        log.append({"type": "start", "id": eid, "source": "door", "label": "cat"})
    cut = {r["id"]: r for r in log.recover("door")}
    log.close()
    assert cut["good"]["clip"] == "good.mp4" and cut["bad"]["clip"] is None
    assert sorted(p.name for p in folder.iterdir()) == ["events.jsonl", "good.mp4"]
    with av.open(str(folder / "good.mp4")) as box:
        n = sum(1 for _ in box.decode(video=0))
    assert 30 <= n <= 35, n  # the three whole seconds (fragments) at least

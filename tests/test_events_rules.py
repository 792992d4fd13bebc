"""Events rules (pure): zones parse or fail with the reason, flickers start nothing,
short gaps do not split an event, start and end are dated at the first and last
present frames, zones test box centres or CAM peaks."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from realtime.outputs.events.record import message, new_id
from realtime.outputs.events.rules import Rules, Sighting, Tracker, Zone, parse_zone, sightings


def test_zones_parse_and_bad_ones_say_why():
    z = parse_zone("door:0,0,100,0,100,50,0,50")
    assert z.name == "door" and len(z.points) == 4
    assert z.contains(50, 25) and z.contains(100, 50) and not z.contains(101, 25)
    with pytest.raises(ValueError, match="expected NAME:x1,y1"):
        parse_zone("0,0,1,1,2,2")
    with pytest.raises(ValueError, match="at least three points"):
        parse_zone("a:0,0,1,1")
    with pytest.raises(ValueError, match="must be numbers"):
        parse_zone("a:0,0,1,x,2,2")
    with pytest.raises(ValueError, match="at least 3 points"):
        Zone("a", ((0, 0), (1, 1)))
    with pytest.raises(ValueError, match="zone_test"):
        Rules(zone_test="middle")
    with pytest.raises(ValueError, match="min_score"):
        Rules(min_score=1.5)


def _feed(tracker: Tracker, present: list[bool], fps: float = 10.0) -> list[tuple]:
    out = []
    for i, here in enumerate(present):
        seen = [Sighting(7, "cat", 0.5 + i / 1000, [0, 0, 10, 10], [])] if here else []
        for kind, tr in tracker.update(i, i / fps, 1000 + i / fps, seen):
            out.append((kind, i, tr.first_frame, tr.last_frame, tr.best_frame))
    out += [(k, -1, tr.first_frame, tr.last_frame, tr.best_frame) for k, tr in tracker.finish()]
    return out


def test_flickers_start_nothing_and_short_gaps_do_not_split():
    rules = Rules(min_duration=0.5, end_gap=1.0)
    #           0-9 absent, 10-29 present with a 3-frame hole at 18-20, 40 one frame
    present = [False] * 10 + [True] * 8 + [False] * 3 + [True] * 9 + [False] * 10 + [True] + \
        [False] * 15
    events = _feed(Tracker(rules), present)
    # starts once present for 0.5 s (frame 15), dated from frame 10; ends 1 s after frame 29
    assert events == [("start", 15, 10, 15, 15), ("end", 39, 10, 29, 29)]


def test_an_event_open_at_the_end_of_the_stream_ends_at_its_last_frame():
    events = _feed(Tracker(Rules(min_duration=0.0, end_gap=2.0)), [True] * 5 + [False] * 3)
    assert events == [("start", 0, 0, 0, 0), ("end", -1, 0, 4, 4)]


def _result(box: list[int], peak_xy: tuple[int, int], score: float = 0.6) -> SimpleNamespace:
    cam = np.zeros((6, 8), np.float32)
    cam[peak_xy[1], peak_xy[0]] = 1.0
    return SimpleNamespace(class_ids=np.array([3, 9]), labels=["cat", "dog"],
                           scores=np.array([score, 0.05], np.float32), boxes=[[box], [box]],
                           cams=np.stack([cam, cam]), frame_shape=(240, 320))


def test_zones_test_the_box_centre_or_the_cam_peak():
    left = parse_zone("left:0,0,160,0,160,240,0,240")
    box_rules = Rules(zones=(left,))
    # box centre (60, 100) is inside; the CAM peak (cell 6 of 8: x = 260 px) is outside
    r = _result([20, 40, 100, 160], (6, 2))
    seen = sightings(r, box_rules)
    assert [(s.label, s.zones) for s in seen] == [("cat", ["left"])]  # dog: score too low
    assert sightings(r, Rules(zones=(left,), zone_test="peak")) == []
    assert sightings(_result([200, 40, 300, 160], (1, 2)), box_rules) == []
    assert [s.zones for s in sightings(_result([200, 40, 300, 160], (1, 2)),
                                       Rules(zones=(left,), zone_test="peak"))] == [["left"]]
    assert sightings(r, Rules(classes=frozenset({"dog"}))) == []
    assert [s.class_id for s in sightings(r, Rules(classes=frozenset({3})))] == [3]


def test_ids_sort_by_time_and_messages_follow_frigate():
    a, b = new_id(1700000000.5), new_id(1700000001.25)
    assert a < b and a.startswith("1700000000.500000-") and len(a.split("-")[1]) == 6
    rec = {"id": a, "label": "cat", "snapshot": f"{a}.jpg", "clip": None}
    m = message("new", rec, None, "http://127.0.0.1:8080/")
    assert m["type"] == "new" and m["before"] is None
    assert m["after"]["snapshot_url"] == f"http://127.0.0.1:8080/events/{a}.jpg"
    assert m["after"]["clip_url"] is None


@pytest.mark.parametrize(("argv", "says"), [
    (["--mqtt", "broker"], "--mqtt and --webhook send events: add --events DIR"),
    (["--events", "{tmp}/ev", "--event-zone", "door:1,2,3"], "at least three points"),
    (["--events", "{tmp}/ev", "--mqtt", "broker:99999"], "--mqtt broker:99999: expected HOST"),
    (["--events", "{tmp}/ev", "--webhook", "ftp://x/y"], "give an http:// or https:// URL"),
    (["--events", "{tmp}/f.txt"], "not a folder"),
    (["--events", "{tmp}/ev", "--event-pre", "-1"], "must be >= 0"),
])
def test_bad_event_flags_are_one_line_and_status_2(tmp_path, capsys, argv, says):
    from realtime.cli import main

    (tmp_path / "f.txt").write_text("x")
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and says in err and len(err.splitlines()) == 1, err


def test_updates_follow_a_better_score_at_most_once_a_second_and_a_new_zone_at_once():
    """Frigate's update: the best score risen by UPDATE_GAIN since the last message (at most
    once per UPDATE_MIN_S of stream time), or a zone the event was not in (at once)."""
    tracker = Tracker(Rules(min_duration=0.0, end_gap=1.0))
    fps, kinds = 10.0, []
    # 3 s rising 0.30 -> 0.59 in steps of 0.01, then steady, then gone
    scores = [0.30 + 0.01 * i for i in range(30)] + [0.59] * 10 + [None] * 15
    for i, score in enumerate(scores):
        seen = [] if score is None else [Sighting(3, "cat", score, [0, 0, 9, 9], [])]
        for kind, tr in tracker.update(i, i / fps, 1000.0 + i / fps, seen):
            kinds.append((kind, i, round(tr.best_score, 2)))
    # start at 0.30; +0.05 reached at frame 5 but throttled until 1 s after the last message
    assert kinds == [("start", 0, 0.3), ("update", 10, 0.4), ("update", 20, 0.5),
                     ("update", 30, 0.59), ("end", 49, 0.59)]
    # a steady score gives no update; entering a second zone gives one at once
    tracker, kinds = Tracker(Rules(min_duration=0.0, end_gap=1.0)), []
    zones = [["door"]] * 5 + [["door", "yard"]] * 5
    for i, z in enumerate(zones):
        seen = [Sighting(3, "cat", 0.5, [0, 0, 9, 9], z)]
        kinds += [(kind, i, list(tr.zones)) for kind, tr in tracker.update(i, i / fps, 0.0, seen)]
    assert kinds == [("start", 0, ["door"]), ("update", 5, ["door", "yard"])]

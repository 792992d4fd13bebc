"""Pipeline: every frame through the threads in order, outputs consistent on stop and on
failure, one error out, no hang; the FPS helper and the window's render options."""

from __future__ import annotations

import threading

import pytest
from media import read_jsonl, read_stamp, read_video, write_clip

from realtime import Localizer
from realtime.model.draw import RenderOptions
from realtime.outputs.sinks import JsonlSink, Sink, VideoSink, record
from realtime.outputs.writes import WriteError
from realtime.pipeline.runner import Pipeline, PipelineError
from realtime.pipeline.runstats import FpsMeter
from realtime.sources import SourceError, open_source


@pytest.fixture(scope="module")
def clip(tmp_path_factory, photos):
    return write_clip(tmp_path_factory.mktemp("pipe") / "clip.mp4", photos, 30, fps=25.0)


@pytest.fixture(scope="module")
def loc(tiny_onnx):
    return Localizer(str(tiny_onnx), topk=2)


def _run(source, loc, tmp_path, **kw):
    with VideoSink(tmp_path / "out.mp4", source.fps) as video, \
            JsonlSink(tmp_path / "out.jsonl") as jsonl, source, \
            Pipeline(source, loc, video=video, jsonl=jsonl, **kw) as run:
        items = list(run)
    return run, items, video, jsonl


def test_every_frame_in_order_video_and_jsonl_agree(clip, loc, tmp_path):
    run, items, video, jsonl = _run(open_source(str(clip)), loc, tmp_path)
    assert [it.frame.index for it in items] == list(range(30))
    assert [read_stamp(f) for f in read_video(video.path)] == list(range(30))
    lines = read_jsonl(jsonl.path)
    assert [r["frame"] for r in lines] == list(range(30))
    assert lines[3] == {"frame": 3, "source": str(clip), "time_ms": 120.0,
                        "detections": items[3].result.detections()}
    s = run.stats
    assert (s.frames_read, s.processed, s.dropped, s.corrupt, s.stopped_by) == (30, 30, 0, 0, None)
    assert s.provider == "CPUExecutionProvider" and s.mean_fps > 0
    assert set(s.medians()) >= {"decode", "preprocess", "infer", "postprocess", "draw",
                                "encode", "json"}  # plus what the engine times inside
    assert all(v >= 0 for v in s.medians().values())


def test_batches_give_the_same_results_as_single_frames(clip, loc, tmp_path):
    _, one, _, _ = _run(open_source(str(clip)), loc, tmp_path / "1")
    _, four, _, _ = _run(open_source(str(clip)), loc, tmp_path / "4", batch=4)
    assert [i.frame.index for i in four] == list(range(30))
    assert [i.result.detections() for i in four] == [i.result.detections() for i in one]


def test_parallel_workers_keep_frame_order_and_results(clip, tiny_onnx, tmp_path):
    """Several inference workers on consecutive frames (the CPU default): output in
    frame order, identical to one worker, smoothing applied in order too."""
    smooth = Localizer(str(tiny_onnx), topk=2, smooth=0.6)
    _, one, _, _ = _run(open_source(str(clip)), smooth, tmp_path / "1")
    smooth.reset()
    _, many, video, jsonl = _run(open_source(str(clip)), smooth, tmp_path / "3", workers=3,
                                 batch=2)
    assert [i.frame.index for i in many] == list(range(30))
    assert video.frames == jsonl.lines == 30
    assert [i.result.detections() for i in many] == [i.result.detections() for i in one]


def test_max_frames_stops_reading(clip, loc, tmp_path):
    run, items, video, jsonl = _run(open_source(str(clip)), loc, tmp_path, max_frames=7)
    assert [i.frame.index for i in items] == list(range(7))
    assert video.frames == jsonl.lines == 7 and run.stats.stopped_by == "--max-frames"


def test_stop_drains_what_is_in_flight(clip, loc, tmp_path):
    with VideoSink(tmp_path / "o.mp4", 25) as video, JsonlSink(tmp_path / "o.jsonl") as jsonl, \
            open_source(str(clip), read_ahead=2) as src, \
            Pipeline(src, loc, video=video, jsonl=jsonl, queue_size=2) as run:
        got = []
        for item in run:
            got.append(item.frame.index)
            if item.frame.index == 3:
                run.stop("SIGINT")
    assert got == list(range(len(got))) and 4 <= len(got) < 30
    assert video.frames == jsonl.lines == len(got) == run.stats.processed
    assert [read_stamp(f) for f in read_video(video.path)] == got
    assert run.stats.stopped_by == "SIGINT"


class Failing:
    """A Localizer whose postprocess raises on one frame."""

    def __init__(self, loc, bad: int):
        self.loc, self.bad, self.n, self.provider = loc, bad, 0, loc.provider

    def prepare(self, frame):
        return self.loc.prepare(frame)

    def forward(self, x):
        return self.loc.forward(x)

    def finish(self, outputs, geo):
        self.n += 1
        if self.n == self.bad + 1:
            raise RuntimeError("boom")
        return self.loc.finish(outputs, geo)


def test_a_failing_stage_stops_everything_and_raises_once(clip, loc, tmp_path):
    before = threading.active_count()
    with pytest.raises(PipelineError, match="(infer|render) stage failed: RuntimeError: boom"):
        _run(open_source(str(clip)), Failing(loc, bad=5), tmp_path)
    assert threading.active_count() == before  # every thread joined
    lines = read_jsonl(tmp_path / "out.jsonl")
    assert [r["frame"] for r in lines] == list(range(len(lines))) and len(lines) <= 5
    assert len(read_video(tmp_path / "out.mp4")) == len(lines)


def test_a_failing_sink_stops_everything(clip, loc, tmp_path):
    class BadVideo(Sink):
        frames = 0

        def write(self, item):
            self.frames += 1
            if self.frames == 3:
                raise OSError("disk full")

    # a write error is an WriteError naming the output (status 1 in the CLI), not a bug
    with pytest.raises(WriteError, match="writing BadVideo failed: disk full"), \
            open_source(str(clip)) as src, Pipeline(src, loc, video=BadVideo()) as run:
        list(run)


def test_a_failing_reader_reaches_the_caller_as_its_own_error(clip, loc, monkeypatch):
    src = open_source(str(clip))

    def broken():
        yield from ()
        raise OSError("device vanished")

    monkeypatch.setattr(src, "_produce", broken)
    with pytest.raises(SourceError, match="reading .* failed: device vanished"), src, \
            Pipeline(src, loc) as run:
        list(run)


def test_the_caller_raising_aborts_and_joins(clip, loc):
    before = threading.active_count()
    with pytest.raises(KeyError), open_source(str(clip), read_ahead=1) as src, \
            Pipeline(src, loc, queue_size=1) as run:
        for _ in run:
            raise KeyError("window broke")
    assert threading.active_count() == before


def test_record_follows_the_jsonl_schema(clip, loc):
    with open_source(str(clip)) as src:
        frame = next(iter(src))
    r = record(frame, loc(frame.image))
    assert list(r) == ["frame", "source", "time_ms", "detections"]
    d = r["detections"][0]
    assert list(d) == ["class_id", "label", "score", "box"] and d["label"].startswith("class")


def test_fps_meter_counts_intervals_not_stamps():
    m = FpsMeter(window=3)
    for t in (0.0, 0.1, 0.2, 0.3, 0.4, 1.4):
        m.tick(t)
    assert m.fps == pytest.approx(2 / 1.1)  # last 3 stamps: 2 intervals over 1.1 s
    assert m.mean_fps == pytest.approx(5 / 1.4)
    one = FpsMeter()
    one.tick(1.0)
    assert (one.fps, one.mean_fps) == (0.0, 0.0)
    with pytest.raises(ValueError, match="window must be >= 2"):
        FpsMeter(window=1)


def test_render_options_follow_the_window_keys():
    o = RenderOptions()
    o.apply("heatmap", 3)
    o.apply("boxes", 3)
    assert (o.heatmap, o.boxes) == (False, False)
    seen = []
    for _ in range(5):
        o.apply("next", 3)
        seen.append(o.index)
    assert seen == [0, 1, 2, None, 0]
    o.apply("prev", 3)
    assert o.index is None


def test_a_live_camera_through_the_pipeline_drops_stale_frames_and_ends_cleanly(
        loc, monkeypatch):
    """A fake camera delivers 1..6 while inference is held back, then 7, then vanishes:
    the pipeline sees the newest frame each time, counts the rest, and ends cleanly."""
    import queue

    from media import use_fake_capture

    fake = use_fake_capture(monkeypatch)
    script: queue.Queue = queue.Queue()
    fake.plans = [script]
    gate, held = threading.Event(), threading.Event()

    class Held:  # a Localizer whose prepare() waits for the test
        provider = loc.provider

        def prepare(self, frame):
            held.set()
            gate.wait()
            return loc.prepare(frame)

        def forward(self, x):
            return loc.forward(x)

        def finish(self, *a):
            return loc.finish(*a)

    with open_source("0", give_up_after_s=0) as cam, Pipeline(cam, Held(), draw=False) as run:
        items = iter(run)
        script.put(1)
        assert held.wait(60)     # the pipeline took frame 1 and waits in prepare
        for n in (2, 3, 4, 5, 6):
            script.put(n)
        fake.wait_calls(7)       # 2..6 published while frame 1 is held
        gate.set()
        first, second = next(items), next(items)
        script.put(7)
        script.put(None)         # the camera vanishes
        rest = list(items)
    values = [int(i.frame.image[0, 0, 0]) for i in (first, second, *rest)]
    assert values[:2] == [1, 6] and values[2:] in ([], [7])  # 2..5 never processed
    s = run.stats
    assert s.processed == len(values) and s.frames_read == s.processed + s.dropped  # one rule
    assert s.dropped == 7 - len(values) and s.ended_because.startswith("camera 0 lost: no frames")


def test_opencv_threads_are_limited_during_the_run_and_restored(clip, loc):
    import cv2

    before = cv2.getNumThreads()
    seen = []
    with open_source(str(clip)) as src, Pipeline(src, loc, max_frames=2) as run:
        seen += [cv2.getNumThreads() for _ in run]
    assert seen == [1, 1] and cv2.getNumThreads() == before

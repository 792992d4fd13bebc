"""The render stage with several draw workers: CAMs in order before the pool, sinks in
order after it, outputs identical to one worker, one error and every thread joined when
a drawing or a sink fails; the per-device default."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
from media import read_jsonl, read_stamp, read_video, write_clip

from realtime import Localizer, cli
from realtime.outputs.sinks import JsonlSink, Sink, VideoSink
from realtime.outputs.writes import WriteError
from realtime.pipeline.render_stage import draw_parallelism
from realtime.pipeline.runner import Pipeline, PipelineError
from realtime.sources import open_source


@pytest.fixture(scope="module")
def clip(tmp_path_factory, photos):
    return write_clip(tmp_path_factory.mktemp("render") / "clip.mp4", photos, 30, fps=25.0)


@pytest.fixture(scope="module")
def loc(tiny_onnx):
    return Localizer(str(tiny_onnx), topk=2)


def _run(clip, loc, out, **kw):
    out.mkdir(parents=True, exist_ok=True)
    with VideoSink(out / "out.mp4", 25.0) as video, JsonlSink(out / "out.jsonl") as jsonl, \
            open_source(str(clip)) as source, \
            Pipeline(source, loc, video=video, jsonl=jsonl, **kw) as run:
        items = []
        for item in run:
            items.append(item)
            item.threads = {t.name.split("_")[0] for t in threading.enumerate()}
    return run, items, video, jsonl


def test_several_draw_workers_keep_frame_order_in_video_and_jsonl(clip, loc, tmp_path):
    before = threading.active_count()
    run, items, video, jsonl = _run(clip, loc, tmp_path, draw_workers=4, workers=2)
    assert threading.active_count() == before  # writer, render and pool threads joined
    assert [it.frame.index for it in items] == list(range(30))
    assert [read_stamp(f) for f in read_video(video.path)] == list(range(30))
    assert [r["frame"] for r in read_jsonl(jsonl.path)] == list(range(30))
    assert video.frames == jsonl.lines == run.stats.processed == 30
    assert set(run.stats.medians()) >= {"decode", "infer", "postprocess", "draw", "encode",
                                        "json"}
    assert all(it.image is it.frame.image for it in items)  # drawn in place, as with one
    kinds = {name.split("-")[1] for name in items[0].threads if name.startswith("camloc-")}
    assert {"draw", "write", "render"} <= kinds  # camloc-render-<source>, camloc-draw_0...


def test_one_draw_worker_is_the_single_render_thread(clip, loc, tmp_path):
    _, items, _, _ = _run(clip, loc, tmp_path, draw_workers=1)
    names = set().union(*(i.threads for i in items))
    assert any(n.startswith("camloc-render") for n in items[0].threads)
    assert not any(n.startswith(("camloc-draw", "camloc-write")) for n in names)


def test_one_and_four_draw_workers_give_identical_outputs(clip, tiny_onnx, tmp_path):
    smooth = Localizer(str(tiny_onnx), topk=2, smooth=0.6)  # smoothing needs the order
    _, one, _, _ = _run(clip, smooth, tmp_path / "1", draw_workers=1)
    smooth.reset()
    _, four, _, _ = _run(clip, smooth, tmp_path / "4", draw_workers=4, workers=3)
    assert (tmp_path / "1/out.jsonl").read_bytes() == (tmp_path / "4/out.jsonl").read_bytes()
    for a, b in zip(one, four, strict=True):
        assert np.array_equal(a.image, b.image)
    decoded = [read_video(tmp_path / d / "out.mp4") for d in ("1", "4")]
    assert len(decoded[0]) == len(decoded[1]) == 30
    assert all(np.array_equal(a, b) for a, b in zip(*decoded))


class BadShape:
    """A Localizer whose result for one frame is for another frame size: drawing it
    raises (draw_result checks the size), in a pool thread."""

    def __init__(self, loc, bad: int):
        self.loc, self.bad, self.n, self.provider = loc, bad, 0, loc.provider

    def prepare(self, frame):
        return self.loc.prepare(frame)

    def forward(self, x):
        return self.loc.forward(x)

    def finish(self, outputs, geo):
        result = self.loc.finish(outputs, geo)
        self.n += 1
        return dataclasses.replace(result, frame_shape=(7, 9)) if self.n == self.bad + 1 \
            else result


def test_a_failing_drawing_aborts_once_and_joins_every_thread(clip, loc, tmp_path):
    before = threading.active_count()
    with pytest.raises(PipelineError, match="render stage failed: ValueError: frame is 320x240 "
                                            "but the result is for 9x7"):
        _run(clip, BadShape(loc, bad=5), tmp_path, draw_workers=4)
    assert threading.active_count() == before
    lines = read_jsonl(tmp_path / "out.jsonl")
    assert [r["frame"] for r in lines] == list(range(len(lines))) and len(lines) <= 5
    assert [read_stamp(f) for f in read_video(tmp_path / "out.mp4")] == list(range(len(lines)))


def test_a_failing_sink_with_several_draw_workers_aborts_cleanly(clip, loc, tmp_path):
    class BadVideo(Sink):
        frames = 0

        def write(self, item):
            self.frames += 1
            if self.frames == 3:
                raise OSError("disk full")

    before = threading.active_count()
    with JsonlSink(tmp_path / "o.jsonl") as jsonl, open_source(str(clip)) as src, \
            pytest.raises(WriteError, match="writing BadVideo failed: disk full"), \
            Pipeline(src, loc, video=BadVideo(), jsonl=jsonl, draw_workers=3) as run:
        list(run)
    assert threading.active_count() == before
    assert [r["frame"] for r in read_jsonl(tmp_path / "o.jsonl")] == [0, 1]


def test_stop_and_a_raising_caller_with_draw_workers(clip, loc, tmp_path):
    with VideoSink(tmp_path / "o.mp4", 25) as video, JsonlSink(tmp_path / "o.jsonl") as jsonl, \
            open_source(str(clip), read_ahead=2) as src, \
            Pipeline(src, loc, video=video, jsonl=jsonl, queue_size=2, draw_workers=3) as run:
        got = []
        for item in run:
            got.append(item.frame.index)
            if item.frame.index == 3:
                run.stop("SIGINT")
    assert got == list(range(len(got))) and 4 <= len(got) < 30  # in flight: still written
    assert video.frames == jsonl.lines == len(got)
    assert [read_stamp(f) for f in read_video(video.path)] == got
    before = threading.active_count()
    with pytest.raises(KeyError), open_source(str(clip), read_ahead=1) as src, \
            Pipeline(src, loc, queue_size=1, draw_workers=3) as run:
        for _ in run:
            raise KeyError("window broke")
    assert threading.active_count() == before


def test_the_cli_with_draw_workers_writes_the_same_files(clip, tiny_onnx, tmp_path):
    for n in ("1", "3"):
        assert cli.main(["--source", str(clip), "--model", str(tiny_onnx), "--topk", "2",
                         "--save", str(tmp_path / f"{n}.mp4"), "--save-json",
                         str(tmp_path / f"{n}.jsonl"), "--draw-workers", n]) == 0
    assert (tmp_path / "1.jsonl").read_bytes() == (tmp_path / "3.jsonl").read_bytes()
    frames = [read_video(tmp_path / f"{n}.mp4") for n in ("1", "3")]
    assert [read_stamp(f) for f in frames[1]] == list(range(30))
    assert all(np.array_equal(a, b) for a, b in zip(*frames, strict=True))


def test_draw_workers_default_per_device(clip, loc):
    cpu, cuda = "CPUExecutionProvider", "CUDAExecutionProvider"
    assert draw_parallelism(cpu, cores=2) == draw_parallelism(cpu, cores=16) == 1
    assert draw_parallelism(cuda, cores=16) == 4 and draw_parallelism(cuda, cores=8) == 2
    assert draw_parallelism(cuda, cores=2) == 1 and draw_parallelism(cuda, cores=64) == 4
    assert draw_parallelism(cpu, 3) == draw_parallelism(cuda, 3, cores=16) == 3  # as asked
    with open_source(str(clip)) as src, \
            pytest.raises(ValueError, match="draw_workers and max_frames must be >= 1"):
        Pipeline(src, loc, draw_workers=0)

"""Tiled inference (``--tiles N``, realtime/model/tiling.py): the grid's geometry, merged
maps whose boxes land where the evidence is (exact, on hand-made features), the class
decision with a background class, tiles=1 identical to untiled bit for bit on the real
model and a real photo, the pipeline (file -> JSONL) for one source and several, with
frames batched together, and bad values as one line and status 2."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from media import read_jsonl, read_video, write_clip
from test_cli import camloc
from test_evaluate import tiny_set  # noqa: F401 - a fixture

from realtime.commands import parser
from realtime.errors import OptionError
from realtime.model import tiling
from realtime.model.accuracy import iou
from realtime.model.boxes import boxes_from_cam, scale_boxes
from realtime.model.engine import Localizer
from realtime.model.tiling import TiledMaps, TileGeometry, tile_boxes


def test_tiles_cover_the_frame_with_overlapping_neighbours():
    assert tile_boxes(320, 240, 1) == [(0, 0, 320, 240)]
    boxes = tile_boxes(700, 1400, 2)          # side = 700 / 1.75 = 400, step 300
    assert boxes == [(0, 0, 400, 800), (0, 600, 400, 1400),
                     (300, 0, 700, 800), (300, 600, 700, 1400)]
    for n in (2, 3, 4):
        boxes = tile_boxes(481, 853, n)
        assert len(boxes) == n * n
        cover = np.zeros((481, 853), int)
        for y0, x0, y1, x1 in boxes:
            cover[y0:y1, x0:x1] += 1
        assert cover.min() >= 1 and cover.max() >= 2   # every pixel, with overlaps
        sides = {(y1 - y0, x1 - x0) for y0, x0, y1, x1 in boxes}
        assert max(h for h, _ in sides) - min(h for h, _ in sides) <= 1
    with pytest.raises(ValueError, match=r"tiles must be an integer in \[1, 4\], got 0"):
        tile_boxes(10, 10, 0)


def _maps(frame_hw=(700, 1400), hot=None, merge="max", decision="max", logits=None,
          background=None, channels=3):
    """TiledMaps of a 2x2 grid with hand-made features: channel c's map is class c's CAM
    (identity weight); ``hot`` = (pass, class, y, x) sets one feature cell to 10."""
    fh, fw = frame_hw
    geo = TileGeometry(fh, fw, 128, 256, tuple(tile_boxes(fh, fw, 2)))
    feats = np.zeros((5, channels, 4, 8), np.float32)
    if hot is not None:
        p, c, y, x = hot
        feats[p, c, y, x] = 10.0
    logits = np.zeros((5, channels), np.float32) if logits is None else logits
    return TiledMaps(logits, feats, geo, np.eye(channels, dtype=np.float32), merge, decision,
                     background), geo


@pytest.mark.parametrize("merge", tiling.MERGES)
def test_a_hot_cell_in_a_tile_is_boxed_where_that_tile_lies_in_the_frame(merge):
    # tile 4 (bottom right: y 300..700, x 600..1400) has its CAM cell (2, 5) hot: in frame
    # pixels y 300 + 2*100 .. +100, x 600 + 5*100 .. +100
    maps, geo = _maps(hot=(4, 1, 2, 5), merge=merge)
    cam = maps.cams(np.array([1]))[0]
    assert cam.shape == maps.shape == (7, 14)      # the tiles' finer grid: 100 px cells
    assert maps.cams(np.array([0])).max() == 0.0   # other classes untouched
    box = scale_boxes(boxes_from_cam(cam / cam.max(), 0.5)[0], cam.shape, geo.frame_h,
                      geo.frame_w)
    assert box.tolist() == [[1100, 500, 1200, 600]]  # the tile's cells are the map's cells
    whole, _ = _maps(hot=(0, 2, 1, 2), merge=merge)  # the frame's own pass: 175 px cells
    cam = whole.cams(np.array([2]))[0]
    box, = scale_boxes(boxes_from_cam(cam / cam.max(), 0.5)[0], cam.shape, 700, 1400)
    cell = [350, 175, 525, 350]
    if merge == "max":
        assert box.tolist() == cell
    else:  # the mean dilutes the frame's evidence where more tiles overlap: shifted a little
        assert iou(box.tolist(), cell) >= 0.6


def test_overlaps_take_the_max_or_the_mean_of_the_passes():
    maps, _ = _maps(merge="max")
    maps.features[:, 0] = 1.0
    maps.features[3, 0] = 3.0                      # tile 3: bottom left
    cam = maps.cams(np.array([0]))[0]
    assert cam.max() == 3.0 and cam[0, -1] == 1.0
    maps.merge = "mean"
    cam = maps.cams(np.array([0]))[0]
    assert cam[-1, 0] == pytest.approx(2.0)        # the frame (1) and tile 3 (3) only
    assert cam[0, -1] == pytest.approx(1.0)


def test_a_background_tile_does_not_outvote_the_tile_with_the_object():
    bg = 0
    logits = np.zeros((5, 3), np.float32)
    logits[:, bg] = 5.0                            # the frame and three tiles: background
    logits[2] = [0.0, 0.0, 6.0]                    # tile 2 (top right): class 2, sure
    for decision, top in (("frame", bg), ("max", 2), ("mix", 2)):
        maps, _ = _maps(logits=logits, decision=decision, background=bg)
        scores = maps.scores()
        assert int(np.argmax(scores)) == top, decision
        assert 0.0 <= scores.min() and scores.max() <= 1.0
    logits[2] = [5.0, 0.0, 0.0]                    # nowhere an object: background
    for decision in tiling.DECISIONS:
        assert int(np.argmax(_maps(logits=logits, decision=decision, background=bg)[0]
                             .scores())) == bg


def test_tiles_1_is_the_untiled_localizer_bit_for_bit(lite0_onnx, photos):
    frame = cv2.cvtColor(photos["motorcycle"], cv2.COLOR_RGB2BGR)
    plain, one = Localizer(lite0_onnx, topk=3), Localizer(lite0_onnx, topk=3, tiles=1)
    a, b = plain(frame), one(frame)
    assert one.in_graph and plain.in_graph
    assert a.labels == b.labels and a.boxes == b.boxes
    assert np.array_equal(a.scores, b.scores) and np.array_equal(a.cams, b.cams)


def test_tiled_results_keep_the_contract_on_the_real_model(lite0_onnx, photos):
    frame = cv2.cvtColor(photos["astronaut"], cv2.COLOR_RGB2BGR)
    loc = Localizer(lite0_onnx, topk=2, tiles=2)
    assert not loc.in_graph                         # raw CAMs: logits and features
    x, geo = loc.prepare(frame)
    assert x.shape[0] == 5 and isinstance(geo, TileGeometry)
    r = loc(frame)
    assert len(r.class_ids) == len(r.boxes) == 2 and r.cams.dtype == np.float32
    assert r.cams.shape[1:] == (14, 14)             # 8x8 CAM cells on 1.75x finer tiles
    assert r.cams.min() >= 0.0 and r.cams.max() == pytest.approx(1.0)
    for boxes in r.boxes:
        assert boxes and all(0 <= x1 < x2 <= 512 and 0 <= y1 < y2 <= 512
                             for x1, y1, x2, y2 in boxes)
    assert r.detections()[0]["label"] == r.labels[0]
    with pytest.raises(OptionError, match=r"tiles must be an integer in \[1, 4\], got 0"):
        Localizer(lite0_onnx, tiles=0)
    with pytest.raises(OptionError, match="tile_merge must be one of max, mean"):
        Localizer(lite0_onnx, tiles=2, tile_merge="sum")


@pytest.mark.parametrize("count", [1, 2])
def test_the_pipeline_writes_tiled_results_for_one_source_and_several(count, photos, tiny_onnx,
                                                                      tmp_path):
    clips = [write_clip(tmp_path / f"c{i}.mp4", photos, 6 + i, size=(320, 240))
             for i in range(count)]
    outs = ["--save-json", "o.jsonl", "--save", "o.mp4"] if count == 1 else [
        "--save-json", "out/", "--save", "out/"]
    r = camloc("--source", *map(str, clips), "--model", str(tiny_onnx), "--tiles", "2",
               "--topk", "2", "--batch", "2", *outs, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(read_video(tmp_path / ("o.mp4" if count == 1 else "out/c1.mp4"))) == 6 + count - 1
    loc = Localizer(tiny_onnx, topk=2, tiles=2)
    for i, clip in enumerate(clips):
        path = tmp_path / ("o.jsonl" if count == 1 else f"out/c{i}.jsonl")
        records = read_jsonl(path)
        assert [x["frame"] for x in records] == list(range(6 + i))
        cap = cv2.VideoCapture(str(clip))
        for rec in records:                        # batched rows split back per frame
            ok, frame = cap.read()
            assert ok
            want = loc(frame).detections()
            assert [d["label"] for d in rec["detections"]] == [d["label"] for d in want]
            assert [d["box"] for d in rec["detections"]] == [d["box"] for d in want]


@pytest.mark.parametrize("value, message", [
    ("0", "argument --tiles: must be in [1, 4], got 0"),
    ("9999", "argument --tiles: must be in [1, 4], got 9999"),
    ("two", "argument --tiles: expected an integer, got 'two'")])
def test_bad_tiles_are_one_line_and_status_2(value, message, tiny_onnx, tmp_path, capsys):
    from realtime import bench, cli, evaluate

    assert cli.main(["--source", "x.mp4", "--model", str(tiny_onnx), "--tiles", value]) == 2
    assert capsys.readouterr().err == f"camloc: error: {message}\n"
    for main, args in ((bench.main, []), (evaluate.main, ["--model", "m.onnx", "--source", ".",
                                                          "--labels", "l.json"])):
        assert main([*args, "--tiles", value]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err
    assert parser.MAX_TILES == tiling.MAX_TILES


def test_evaluate_scores_the_tiled_maps(tiny_set, lite0_onnx, tmp_path):  # noqa: F811
    from realtime.evaluate import main

    out = tmp_path / "m.json"
    assert main(["--model", str(lite0_onnx), "--source", str(tiny_set), "--labels",
                 str(tiny_set / "labels.json"), "--json", str(out), "--tiles", "2"]) == 0
    got = json.loads(out.read_text())
    # as untiled (test_evaluate): at threshold 0 the merged map's box is the whole frame
    assert got["maxboxacc_v2"] == pytest.approx(0.5) and got["best_threshold"] == 0.0
    assert 0.0 <= got["top1_loc"] <= got["top1_cls"] <= 1.0


def test_bench_states_the_cost_of_tiles_against_the_same_model_untiled(photos, tiny_onnx,
                                                                       tmp_path):
    from realtime.bench import format_table, run_bench

    clip = write_clip(tmp_path / "b.mp4", photos, 16, size=(320, 240))
    r = run_bench(str(clip), str(tiny_onnx), frames=16, warmup=2, repeats=1, tiles=2)
    assert r["tiles"] == 2 and set(r["untiled"]) == {"bare_fps", "draw_fps"}
    assert r["untiled"]["bare_fps"] > 0 and r["tiles_cost"]["bare"] > 0
    # a ratio of rounded medians: the cost is rounded to 0.01 (the tiny model's passes are
    # so short that the ratio itself can be anything on a loaded machine)
    assert r["tiles_cost"]["bare"] == pytest.approx(r["untiled"]["bare_fps"] / r["bare_fps"],
                                                    rel=0.02, abs=0.01)
    assert "tiles cost" in format_table(r)
    assert "tiles_cost" not in run_bench(str(clip), str(tiny_onnx), frames=16, warmup=2,
                                         repeats=1)

"""Small objects' boxes: a CAM is the evidence blurred, so at a low threshold a small
object's box is mostly blur; ``blur`` moves the sides in (realtime/model/boxes.py), and the
tiled path sets it (realtime/model/tiling.py ``map_blur``). Synthetic maps with exact
expectations, then a real photo (scikit-image's cat, a tenth of the frame's height, on
grass) with the real ImageNet model on 2x2 tiles."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from realtime import Localizer
from realtime.errors import OptionError
from realtime.model import tiling
from realtime.model.accuracy import iou
from realtime.model.boxes import boxes_from_cam, edge_shift, scale_boxes, shrink_boxes
from realtime.model.cam import normalize_cams
from realtime.model.preprocess import Geometry


def _blurred(size: int, y0: int, x0: int, side: int, sigma: float) -> np.ndarray:
    """A ``size`` x ``size`` map: a square object of ``side`` cells at (y0, x0), blurred by a
    Gaussian of ``sigma`` cells, max 1."""
    cam = np.zeros((size, size), np.float32)
    cam[y0:y0 + side, x0:x0 + side] = 1.0
    cam = cv2.GaussianBlur(cam, (0, 0), sigma)
    return cam / cam.max()


def test_the_shift_is_where_a_blurred_edge_crosses_the_threshold() -> None:
    x = np.linspace(-10, 10, 20001)           # a step at 0 blurred by sigma 2: erfc
    edge = 0.5 * np.array([math.erfc(v / (2 * math.sqrt(2))) for v in x])
    crossing = x[np.argmin(np.abs(edge - 0.3))]
    assert edge_shift(0.3, 2.0) == pytest.approx(crossing, abs=1e-3)
    assert edge_shift(0.5, 2.0) == edge_shift(0.7, 2.0) == edge_shift(0.3, 0.0) == 0.0
    assert edge_shift(0.2, 1.0) > edge_shift(0.3, 1.0) > edge_shift(0.4, 1.0) > 0.0


def test_a_small_blurred_object_is_boxed_at_its_own_size() -> None:
    # a 4-cell object in a 40-cell map: a tenth of the height, blurred by 1.5 cells
    cam, truth = _blurred(40, 18, 10, 4, 1.5), [10, 18, 14, 22]
    plain, = boxes_from_cam(cam, 0.3)[0].tolist()
    sharp, = boxes_from_cam(cam, 0.3, blur=1.5)[0].tolist()
    assert iou(plain, truth) < 0.5           # mostly blur: about 2.3 x the object's side
    assert iou(sharp, truth) >= 0.7
    # a large object keeps its box, now on its edge rather than outside it
    cam, truth = _blurred(40, 8, 10, 16, 1.5), [10, 8, 26, 24]
    plain, = boxes_from_cam(cam, 0.3)[0].tolist()
    sharp, = boxes_from_cam(cam, 0.3, blur=1.5)[0].tolist()
    assert iou(sharp, truth) >= 0.95 and iou(sharp, truth) >= iou(plain, truth)
    # at or above half the peak the contour is on the edge already: nothing moves
    assert np.array_equal(boxes_from_cam(cam, 0.5)[0], boxes_from_cam(cam, 0.5, blur=1.5)[0])


def test_an_object_of_a_tenth_of_the_height_and_width_passes_min_area() -> None:
    cam = np.zeros((20, 20), np.float32)
    cam[5:7, 9:11] = 1.0                      # exactly 0.01 of the map: kept (>=)
    cam[15, 2] = 0.9                          # a smaller strong region: dropped
    boxes, _ = boxes_from_cam(cam, 0.5, min_area=0.01)
    assert boxes.tolist() == [[9.0, 5.0, 11.0, 7.0]]


def test_shrinking_keeps_at_least_one_cell_and_the_frame_edges() -> None:
    boxes = np.array([[2.0, 2.0, 8.0, 6.0], [4.0, 4.0, 4.5, 5.0]])
    out = shrink_boxes(boxes, 1.0)
    assert out.tolist() == [[3.0, 3.0, 7.0, 5.0], [4.0, 4.0, 4.5, 5.0]]
    assert shrink_boxes(boxes, 5.0).tolist()[0] == [4.5, 3.5, 5.5, 4.5]
    # a side on the map's border is the frame's edge, not a blurred contour: it stays
    edge = np.array([[0.0, 2.0, 6.0, 8.0]])
    assert shrink_boxes(edge, 1.0, edge != [0, 0, 10, 8]).tolist() == [[0.0, 3.0, 5.0, 8.0]]
    cam = np.ones((8, 10), np.float32)        # the whole frame at threshold 0: no edge seen
    assert boxes_from_cam(cam, 0.0, blur=2.0)[0].tolist() == [[0.0, 0.0, 10.0, 8.0]]
    with pytest.raises(ValueError, match=r"blur must be >= 0, got -1\.0"):
        boxes_from_cam(np.ones((4, 4), np.float32), 0.3, blur=-1.0)


def _cat_on_grass(cat: np.ndarray, h: int, y: int, x: int) -> tuple[np.ndarray, list[int]]:
    """A 640x360 BGR grass frame with the cat ``h`` px high at (y, x); its true box."""
    from skimage import data

    grass = cv2.resize(data.grass(), (640, 360), interpolation=cv2.INTER_AREA)
    frame = np.repeat(grass[..., None], 3, axis=2)
    w = int(h * cat.shape[1] / cat.shape[0])
    frame[y:y + h, x:x + w] = cv2.resize(cat, (w, h), interpolation=cv2.INTER_AREA)[:, :, ::-1]
    return np.ascontiguousarray(frame), [x, y, x + w, y + h]


@pytest.mark.parametrize("height, y, x", [(36, 200, 300), (54, 150, 500)])
def test_a_small_cat_is_boxed_on_its_class_map_with_tiles(lite0_onnx, photos, height, y, x):
    # 10% and 15% of the frame's height; the ImageNet model does not *name* a cat this
    # small on grass, so the true class's merged map is boxed (GT-known, as evaluate does)
    frame, truth = _cat_on_grass(photos["cat"], height, y, x)
    loc = Localizer(lite0_onnx, device="cpu", tiles=2)
    cat = list(loc.info.labels).index("Egyptian cat")
    xs, geo = loc.prepare(frame)
    _, cams_of = loc.class_maps(*loc.infer(xs), geo)
    cam = normalize_cams(cams_of(np.array([cat])), "max")[0]
    blur = tiling.map_blur(geo)
    assert blur == tiling.BLUR > 0.0

    def best(b: float) -> float:
        cells, _ = boxes_from_cam(cam, loc.threshold, blur=b)
        return max(iou(p, truth) for p in scale_boxes(cells, cam.shape, 360, 640).tolist())

    assert best(0.0) < 0.3 and best(blur) >= 0.5


def test_the_tiled_localizer_takes_the_blur_off_and_the_untiled_one_does_not(lite0_onnx, photos):
    frame = cv2.cvtColor(photos["astronaut"], cv2.COLOR_RGB2BGR)
    loc = Localizer(lite0_onnx, device="cpu", tiles=2)
    r = loc(frame)
    _, geo = loc.prepare(frame)
    cells, _ = boxes_from_cam(r.cams[0], loc.threshold, blur=tiling.map_blur(geo))
    assert r.boxes[0] == scale_boxes(cells, r.cams[0].shape, 512, 512).tolist()
    assert tiling.map_blur(Geometry(512, 512, 256, 256)) == 0.0
    off = Localizer(lite0_onnx, device="cpu", tiles=2, tile_blur=0.0)(frame)
    cells, _ = boxes_from_cam(off.cams[0], loc.threshold)
    assert off.boxes[0] == scale_boxes(cells, off.cams[0].shape, 512, 512).tolist()
    with pytest.raises(OptionError, match="tile_blur must be a number >= 0, got -1"):
        Localizer(lite0_onnx, tiles=2, tile_blur=-1)


def test_the_cli_passes_tile_blur_and_refuses_a_bad_one(lite0_onnx, photos, tmp_path, capsys):
    """``--tile-blur 0`` (a model with sharp maps at a low threshold) reaches the Localizer:
    the JSONL boxes are the ones of ``tile_blur=0``; a negative or non-number is one line
    and status 2, on the CLI, batch and evaluate."""
    from media import read_jsonl
    from test_cli import camloc

    from realtime import batch, cli, evaluate
    from realtime.commands import parser

    image = tmp_path / "a.png"
    frame = cv2.cvtColor(photos["astronaut"], cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(image), frame)
    for blur in ("0", "3.5"):
        r = camloc("--source", str(image), "--model", str(lite0_onnx), "--device", "cpu",
                   "--tiles", "2", "--tile-blur", blur, "--threshold", "0.1",
                   "--save-json", f"b{blur}.jsonl", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        want = Localizer(lite0_onnx, device="cpu", tiles=2, tile_blur=float(blur),
                         threshold=0.1)(cv2.imread(str(image))).detections()
        got = read_jsonl(tmp_path / f"b{blur}.jsonl")[0]["detections"]
        assert [d["box"] for d in got] == [d["box"] for d in want]
    boxes = [[d["box"] for d in read_jsonl(tmp_path / f"b{b}.jsonl")[0]["detections"]]
             for b in ("0", "3.5")]
    assert boxes[0] != boxes[1]  # at threshold 0.1 the blur moves the sides
    for main, args in ((cli.main, ["--source", "x.mp4", "--model", str(lite0_onnx)]),
                       (batch.main, ["x.mp4", "--output", str(tmp_path / "o")]),
                       (evaluate.main, ["--model", "m.onnx", "--source", ".", "--labels",
                                        "l.json"])):
        for bad, message in (("-1", "must be a number >= 0, got -1"),
                             ("wide", "expected a number, got 'wide'")):
            assert main([*args, "--tile-blur", bad]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and f"argument --tile-blur: {message}" in err
    assert parser.TILE_BLUR == tiling.BLUR


def test_a_model_with_its_own_tile_blur(lite0_onnx, photos, tmp_path):
    """A model may store its tiled-map blur (``camloc.tile_blur``: export --train stores 0,
    its maps are sharp); the tiled Localizer and the CLI, on one source and on several, then
    use it unless told otherwise."""
    import shutil

    from media import read_jsonl
    from test_cli import camloc

    from realtime.evaluate import store_threshold

    model = tmp_path / "sharp.onnx"
    shutil.copyfile(lite0_onnx, model)
    store_threshold(model, 0.1, tile_blur=0.0)
    frame = cv2.cvtColor(photos["astronaut"], cv2.COLOR_RGB2BGR)
    loc = Localizer(model, device="cpu", tiles=2)
    assert (loc.threshold, loc.tile_blur) == (0.1, 0.0)
    assert Localizer(model, device="cpu", tiles=2, tile_blur=3.5).tile_blur == 3.5   # asked for
    assert Localizer(lite0_onnx, device="cpu", tiles=2).tile_blur == tiling.BLUR     # none stored
    want = Localizer(lite0_onnx, device="cpu", tiles=2, tile_blur=0.0, threshold=0.1)(frame)
    blurred = Localizer(lite0_onnx, device="cpu", tiles=2, threshold=0.1)(frame)
    assert loc(frame).boxes == want.boxes != blurred.boxes
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), frame)
    r = camloc("--source", str(image), "--model", str(model), "--device", "cpu", "--tiles", "2",
               "--save-json", "o.jsonl", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = read_jsonl(tmp_path / "o.jsonl")[0]["detections"]
    assert [d["box"] for d in got] == [d["box"] for d in Localizer(
        model, device="cpu", tiles=2)(cv2.imread(str(image))).detections()]
    assert [d["box"] for d in got] != [d["box"] for d in blurred.detections()]
    other = tmp_path / "b.png"  # several sources: one run, the stored blur on each of them
    cv2.imwrite(str(other), cv2.flip(frame, 1))
    r = camloc("--source", str(image), str(other), "--model", str(model), "--device", "cpu",
               "--tiles", "2", "--save-json", "many/", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for path in (image, other):
        got = read_jsonl(tmp_path / "many" / f"{path.stem}.jsonl")[0]["detections"]
        assert [d["box"] for d in got] == [d["box"] for d in Localizer(
            model, device="cpu", tiles=2)(cv2.imread(str(path))).detections()]
        assert [d["box"] for d in got] != [d["box"] for d in Localizer(
            lite0_onnx, device="cpu", tiles=2, threshold=0.1)(cv2.imread(str(path))).detections()]

"""python -m realtime.evaluate: metrics on a tiny set of real photos with the real default
model, against values computed by hand; the stored threshold; every bad input exits 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from realtime.evaluate import KEYS, main
from realtime.model.engine import DEFAULT_THRESHOLD, Localizer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory, photos):
    """cat.jpg boxed as the whole frame (class 'Egyptian cat', what the model predicts),
    coffee.jpg with a 2x2-pixel box in a corner no CAM box can match, empty.jpg unlabelled."""
    root = tmp_path_factory.mktemp("evalset")
    for name, key in (("cat.jpg", "cat"), ("coffee.jpg", "espresso"), ("empty.jpg", "rocket")):
        cv2.imwrite(str(root / name), np.ascontiguousarray(photos[key][:, :, ::-1]))
    h, w = photos["cat"].shape[:2]
    coco = {"images": [{"id": 1, "file_name": "cat.jpg", "width": w, "height": h},
                       {"id": 2, "file_name": "coffee.jpg", "width": 600, "height": 400},
                       {"id": 3, "file_name": "empty.jpg", "width": 640, "height": 427}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [0, 0, w, h]},
                            {"id": 2, "image_id": 2, "category_id": 9, "bbox": [0, 0, 2, 2]}],
            "categories": [{"id": 7, "name": "Egyptian cat"}, {"id": 9, "name": "espresso"}]}
    (root / "labels.json").write_text(json.dumps(coco))
    return root


def test_metrics_by_hand(tiny_set, lite0_onnx, tmp_path, capsys):
    out = tmp_path / "m.json"
    rc = main(["--model", str(lite0_onnx), "--source", str(tiny_set), "--labels",
               str(tiny_set / "labels.json"), "--json", str(out)])
    assert rc == 0
    got = json.loads(out.read_text())
    assert list(got) == list(KEYS)
    # At threshold 0 the runtime's box is the whole frame: IoU 1 for the cat, and no box
    # can reach IoU 0.3 with the 2x2 corner box, so BoxAcc is 1/2 at every IoU, best at 0.
    assert got["maxboxacc_v2"] == pytest.approx(0.5)
    assert got["gt_known_loc"] == pytest.approx(0.5)
    assert got["best_threshold"] == 0.0
    # both photos are classified right by the ImageNet model (the export's own check);
    # the unlabelled frame is not scored (no background class); only the cat is localized.
    assert got["top1_cls"] == pytest.approx(1.0)
    assert got["top1_loc"] == pytest.approx(0.5)
    assert "maxboxacc_v2" in capsys.readouterr().out


def test_store_threshold_is_the_runtimes_default(tiny_set, lite0_onnx, tmp_path):
    model = tmp_path / "m.onnx"
    shutil.copy(lite0_onnx, model)
    assert Localizer(model, device="cpu").threshold == DEFAULT_THRESHOLD
    coco = json.loads((tiny_set / "labels.json").read_text())
    coco["annotations"] = coco["annotations"][:1]
    coco["annotations"][0]["bbox"] = [110, 50, 230, 200]  # the cat without its tail: threshold > 0
    (tmp_path / "l.json").write_text(json.dumps(coco))
    out = tmp_path / "m.json"
    assert main(["--model", str(model), "--source", str(tiny_set), "--labels",
                 str(tmp_path / "l.json"), "--json", str(out), "--store-threshold", "-q"]) == 0
    best = json.loads(out.read_text())["best_threshold"]
    assert Localizer(model, device="cpu").threshold == pytest.approx(best)
    assert Localizer(model, device="cpu", threshold=0.55).threshold == 0.55


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "realtime.evaluate", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def _bad_coco(tmp: Path, **change) -> Path:
    coco = {"images": [{"id": 1, "file_name": "cat.jpg"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]}],
            "categories": [{"id": 1, "name": "Egyptian cat"}]}
    coco.update(change)
    path = tmp / f"bad{len(list(tmp.iterdir()))}.json"
    path.write_text(json.dumps(coco))
    return path


def test_bad_inputs_one_line_exit_2(tiny_set, lite0_onnx, tmp_path):
    m, src = str(lite0_onnx), str(tiny_set)
    (tmp_path / "notjson.json").write_text("{oops")
    cases = {
        "not among the model's labels: tench": ["--model", m, "--source", src, "--labels", str(
            _bad_coco(tmp_path, categories=[{"id": 1, "name": "widget"}]))],
        "is not in": ["--model", m, "--source", src, "--labels", str(
            _bad_coco(tmp_path, images=[{"id": 1, "file_name": "nope.jpg"}]))],
        "not JSON": ["--model", m, "--source", src, "--labels", str(tmp_path / "notjson.json")],
        "no image has a box": ["--model", m, "--source", src, "--labels", str(
            _bad_coco(tmp_path, annotations=[]))],
        "cannot read labels": ["--model", m, "--source", src, "--labels", str(tmp_path / "x.json")],
        "not a folder": ["--model", m, "--source", str(tmp_path / "none"), "--labels",
                         str(tiny_set / "labels.json")],
        "needs --model as a .onnx": ["--model", "efficientnet_lite0", "--source", src, "--labels",
                                     str(tiny_set / "labels.json"), "--store-threshold"],
        "model file not found": ["--model", str(tmp_path / "no.onnx"), "--source", src,
                                 "--labels", str(tiny_set / "labels.json")],
        "required": ["--model", m, "--source", src],
    }
    for message, args in cases.items():
        r = _cli(*args)
        assert r.returncode == 2, (message, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (message, r.stderr)


def test_store_threshold_without_onnx_says_how(monkeypatch, tmp_path):
    from realtime.evaluate import EvalError, store_threshold

    monkeypatch.setitem(sys.modules, "onnx", None)  # as in a runtime-only environment
    with pytest.raises(EvalError, match="pip install onnx"):
        store_threshold(tmp_path / "m.onnx", 0.3)


def _evaluate(src: Path, coco: dict, tmp: Path, *extra: str, model: Path | None = None):
    labels = tmp / f"l{len(list(tmp.iterdir()))}.json"
    labels.write_text(json.dumps(coco))
    return _cli("--model", str(model), "--source", str(src), "--labels", str(labels), *extra)


def test_file_names_must_stay_inside_the_source(tiny_set, lite0_onnx, tmp_path):
    """Issue 28: `../../x.png`, an absolute path and a symlink leading out were read."""
    src = tmp_path / "src"
    src.mkdir()
    outside = tmp_path / "secret.jpg"
    shutil.copy(tiny_set / "cat.jpg", outside)
    shutil.copy(tiny_set / "cat.jpg", src / "cat.jpg")
    (src / "link.jpg").symlink_to(outside)
    ann = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100]}]
    cats = [{"id": 1, "name": "Egyptian cat"}]
    for name in ("../secret.jpg", str(outside), "link.jpg", "../" * 12 + str(outside).lstrip("/")):
        r = _evaluate(src, {"images": [{"id": 1, "file_name": name}], "annotations": ann,
                            "categories": cats}, tmp_path, model=lite0_onnx)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1, (name, r.stderr)
        assert "outside --source" in lines[0] and "refusing to read it" in lines[0], lines
    # a tool's own folder in file_name is still found by its base name inside the source
    r = _evaluate(src, {"images": [{"id": 1, "file_name": "/data/export/cat.jpg"}],
                        "annotations": ann, "categories": cats}, tmp_path, "-q",
                  model=lite0_onnx)
    assert r.returncode == 0, r.stderr


def test_bad_boxes_and_unknown_ids_are_named(tiny_set, lite0_onnx, tmp_path):
    """NaN boxes were accepted, boxes outside the image scored 0, a missing category said
    `KeyError 2`, an annotation of an unknown image was dropped."""
    def coco(bbox, image_id=1, category_id=7):
        return {"images": [{"id": 1, "file_name": "cat.jpg"}],
                "annotations": [{"id": 5, "image_id": image_id, "category_id": category_id,
                                 "bbox": bbox}],
                "categories": [{"id": 7, "name": "Egyptian cat"}]}

    h, w = cv2.imread(str(tiny_set / "cat.jpg")).shape[:2]
    cases = {
        "annotation 5 has a bbox that is not finite": coco([float("nan"), 0, 10, 10]),
        "annotation 5 has a bbox that is not four numbers": coco([0, 0, "10", 10]),
        "annotation 5 has an empty bbox": coco([0, 0, 0, 10]),
        "lies outside the image": coco([w + 10, h + 10, 50, 50]),
        "annotation 5: category_id 2 is not among the categories": coco([0, 0, 9, 9],
                                                                         category_id=2),
        "annotation 5: image_id 9 is not among the images": coco([0, 0, 9, 9], image_id=9),
    }
    for message, labels in cases.items():
        r = _evaluate(tiny_set, labels, tmp_path, model=lite0_onnx)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and message in lines[0], (message, r.stderr)
    # partly outside: clipped to the image, with a warning that names it; same figures as
    # the box drawn inside
    out = [tmp_path / "a.json", tmp_path / "b.json"]
    r = _evaluate(tiny_set, coco([-40, -30, w + 80, h + 60]), tmp_path, "--json", str(out[0]),
                  model=lite0_onnx)
    assert r.returncode == 0 and "1 box(es) reach outside their image and were clipped" \
        in r.stderr and "cat.jpg" in r.stderr, r.stderr
    assert _evaluate(tiny_set, coco([0, 0, w, h]), tmp_path, "-q", "--json", str(out[1]),
                     model=lite0_onnx).returncode == 0
    assert json.loads(out[0].read_text()) == json.loads(out[1].read_text())


def test_store_threshold_refuses_a_threshold_that_measured_nothing(tiny_set, lite0_onnx,
                                                                    tmp_path):
    """Only the 2x2 corner box that no CAM box can match: every BoxAcc is 0 and the sweep's
    best is 0.00, which would make every box the whole frame. Refused; the model unchanged."""
    model = tmp_path / "m.onnx"
    shutil.copy(lite0_onnx, model)
    before = model.read_bytes()
    coco = json.loads((tiny_set / "labels.json").read_text())
    coco["annotations"] = coco["annotations"][1:]
    r = _evaluate(tiny_set, coco, tmp_path, "--store-threshold", model=model)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "--store-threshold: not stored (the model is unchanged): no labelled box was " \
           "matched" in lines[0]
    assert model.read_bytes() == before
    assert Localizer(model, device="cpu").threshold == DEFAULT_THRESHOLD

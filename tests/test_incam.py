"""CAMs inside the graph (export/incam.py): equal to realtime.model.cam's numpy ones on real
photos with the real model, used by the engine when present, and old models without
them still run through the numpy path."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from export.incam import INCAM_TOLERANCE, add_incam_file, incam_error
from realtime.model.engine import Localizer
from realtime.model.format import INCAM_OUTPUTS, KEY_TOPK_MAX


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _bgr(photos: dict[str, np.ndarray], name: str) -> np.ndarray:
    return cv2.cvtColor(photos[name], cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="module")
def old_lite0(lite0_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real model as format 1 was before in-graph CAMs: their nodes, outputs and
    metadata key removed."""
    proto = onnx.load(str(lite0_onnx))
    graph = proto.graph
    for n in [n for n in graph.node if n.name.startswith("incam_")]:
        graph.node.remove(n)
    for o in [o for o in graph.output if o.name in INCAM_OUTPUTS]:
        graph.output.remove(o)
    for i in [i for i in graph.initializer if i.name.startswith("incam_")]:
        graph.initializer.remove(i)
    for m in [m for m in proto.metadata_props if m.key == KEY_TOPK_MAX]:
        proto.metadata_props.remove(m)
    onnx.checker.check_model(proto)
    path = tmp_path_factory.mktemp("old") / "lite0-old.onnx"
    onnx.save(proto, str(path))
    return path


def test_export_writes_in_graph_cams(lite0_onnx: Path, photos: dict[str, np.ndarray]) -> None:
    sess = _session(lite0_onnx)
    names = [o.name for o in sess.get_outputs()]
    assert names[:4] == ["logits", "features", "cam_weight", "cam_bias"]  # format 1 kept
    assert names[4:] == list(INCAM_OUTPUTS)
    assert sess.get_modelmeta().custom_metadata_map[KEY_TOPK_MAX] == "10"
    loc = Localizer(lite0_onnx, device="cpu")
    batch = np.concatenate([loc.prepare(_bgr(photos, n))[0] for n in ("cat", "espresso")])
    assert incam_error(sess, batch) < INCAM_TOLERANCE
    scores, ids, cams = sess.run(list(INCAM_OUTPUTS), {"images": batch})
    assert scores.shape == ids.shape == (2, 10) and ids.dtype == np.int64
    h, w = batch.shape[2] // 32, batch.shape[3] // 32                  # stride 32
    assert cams.shape == (2, 10, h, w) and cams.dtype == np.float32
    assert np.all(np.diff(scores, axis=1) <= 0)                        # best first


@pytest.mark.parametrize("name", ["cat", "espresso", "motorcycle", "astronaut", "rocket"])
def test_engine_in_graph_equals_numpy_on_real_photos(lite0_onnx: Path,
                                                     photos: dict[str, np.ndarray],
                                                     name: str) -> None:
    graph = Localizer(lite0_onnx, device="cpu", topk=5)
    numpy_ = Localizer(lite0_onnx, device="cpu", topk=5, incam=False)
    assert graph.in_graph and not numpy_.in_graph
    a, b = graph(_bgr(photos, name)), numpy_(_bgr(photos, name))
    assert a.class_ids.tolist() == b.class_ids.tolist() and a.labels == b.labels
    np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=1e-5)
    np.testing.assert_allclose(a.cams, b.cams, rtol=0, atol=1e-5)
    assert a.cams.dtype == np.float32 and a.cams.max() == pytest.approx(1.0, abs=1e-6)
    assert a.boxes == b.boxes


def test_old_model_runs_through_numpy(old_lite0: Path, lite0_onnx: Path,
                                      photos: dict[str, np.ndarray]) -> None:
    old = Localizer(old_lite0, device="cpu", topk=3)
    new = Localizer(lite0_onnx, device="cpu", topk=3)
    assert not old.in_graph and old.info.topk_max == 0 and new.in_graph
    logits, feats = old.forward(old.prepare(_bgr(photos, "cat"))[0])
    assert logits.shape == (1, 1000) and feats.shape[1] == 1280     # the numpy path's outputs
    a, b = old(_bgr(photos, "cat")), new(_bgr(photos, "cat"))
    assert a.class_ids.tolist() == b.class_ids.tolist() and a.boxes == b.boxes
    np.testing.assert_allclose(a.cams, b.cams, rtol=0, atol=1e-5)


def test_numpy_path_where_the_graph_cannot(lite0_onnx: Path, photos: dict[str, np.ndarray]
                                           ) -> None:
    assert not Localizer(lite0_onnx, device="cpu", normalize="minmax").in_graph
    assert not Localizer(lite0_onnx, device="cpu", topk=11).in_graph   # graph holds 10
    assert Localizer(lite0_onnx, device="cpu", topk=10).in_graph
    # smoothing runs on the small CAMs: the same over a sequence either way
    frames = [_bgr(photos, "cat"), cv2.flip(_bgr(photos, "cat"), 1), _bgr(photos, "cat")]
    a = Localizer(lite0_onnx, device="cpu", topk=2, smooth=0.6)
    b = Localizer(lite0_onnx, device="cpu", topk=2, smooth=0.6, incam=False)
    for f in frames:
        ra, rb = a(f), b(f)
        np.testing.assert_allclose(ra.cams, rb.cams, rtol=0, atol=1e-5)


def test_in_graph_cams_on_a_small_model_and_the_cap(tiny_onnx: Path, tmp_path: Path) -> None:
    path = tmp_path / "tiny.onnx"
    shutil.copy(tiny_onnx, path)
    assert add_incam_file(path, topk_max=10) == 5          # capped at the 5 classes
    sess = _session(path)
    x = np.random.default_rng(0).normal(0, 1, (3, 3, 96, 128)).astype(np.float32)
    assert incam_error(sess, x) < INCAM_TOLERANCE
    with pytest.raises(ValueError, match="already has in-graph CAM outputs"):
        add_incam_file(path)
    loc = Localizer(path, device="cpu", imgsz=128, topk=5)
    assert loc.in_graph and loc.info.topk_max == 5

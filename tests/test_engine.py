"""Localizer end to end: a hand-made tiny ONNX model (exact CAMs and boxes), bad input,
provider planning, and the real EfficientNet-Lite0 on real photos."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from realtime.errors import CamlocError, DeviceError, ModelError
from realtime.model import providers as prov
from realtime.model import zoo
from realtime.model.engine import Localizer, Result
from realtime.model.format import FORMAT, KEY_LABELS, ModelInfo, to_metadata

ROOT = Path(__file__).resolve().parents[1]
RED = (0, 0, 255)  # BGR
CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


def tiny_model(path: Path, outputs: tuple[str, ...] = ("logits", "features", "cam_weight",
               "cam_bias"), labels: list[str] | None = None, drop_meta: str = "") -> Path:
    """A GAP-CNN written by hand: features[k] = ReLU(mean of colour channel k over each 4x4
    patch), logits = 10 * GAP(features) (classes red, green, blue), stride 4."""
    conv = np.zeros((3, 3, 4, 4), np.float32)
    for k in range(3):
        conv[k, k] = 1.0 / 16
    weight = 10.0 * np.eye(3, dtype=np.float32)
    bias = np.zeros(3, np.float32)
    nodes = [
        helper.make_node("Conv", ["images", "conv_w"], ["pre"], strides=[4, 4]),
        helper.make_node("Relu", ["pre"], ["features"]),
        helper.make_node("GlobalAveragePool", ["features"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
        helper.make_node("Identity", ["fc_w"], ["cam_weight"]),
        helper.make_node("Identity", ["fc_b"], ["cam_bias"]),
    ]
    shapes = {"logits": ["N", 3], "features": ["N", 3, "h", "w"], "cam_weight": [3, 3],
              "cam_bias": [3]}
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shapes[n]) for n in outputs],
        [numpy_helper.from_array(conv, "conv_w"), numpy_helper.from_array(weight, "fc_w"),
         numpy_helper.from_array(bias, "fc_b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = to_metadata(ModelInfo(path="", arch="tiny", weights="by hand",
                                 labels=tuple(labels or ["red", "green", "blue"]), color="RGB",
                                 mean=(0, 0, 0), std=(255, 255, 255), input_size=(64, 64),
                                 stride=4, precision="fp32", format=FORMAT))
    meta.pop(drop_meta, None)
    helper.set_model_props(model, meta)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny") / "tiny.onnx")


def red_square(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    frame = np.zeros((h, w, 3), np.uint8)
    frame[y0:y1, x0:x1] = RED
    return frame


# ---- exact behaviour on the hand-made model ---------------------------------------------------

def test_tiny_cam_and_box_by_hand(tiny: Path) -> None:
    loc = Localizer(tiny, device="cpu", imgsz=64, threshold=0.5)
    res = loc(red_square(64, 64, 16, 32, 24, 40))
    assert res.class_ids.tolist() == [0] and res.labels == ["red"]
    # logits: red = 10 * (16 cells of 1 out of 256) = 0.625, others 0
    e = np.exp(0.625)
    assert res.scores[0] == pytest.approx(e / (e + 2), rel=1e-5)
    expected = np.zeros((16, 16), np.float32)
    expected[4:8, 6:10] = 1.0                       # CAM = 10 * F_red, normalised
    np.testing.assert_allclose(res.cams[0], expected, atol=1e-6)
    assert res.boxes == [[[24, 16, 40, 32]]]


def test_tiny_boxes_scale_to_frame_pixels(tiny: Path) -> None:
    loc = Localizer(tiny, device="cpu", imgsz=64, threshold=0.5)
    big = loc(red_square(128, 128, 32, 64, 48, 80))       # halved to 64x64 for the network
    assert big.boxes == [[[48, 32, 80, 64]]]
    wide = Localizer(tiny, device="cpu", imgsz=128, threshold=0.5)
    res = wide(red_square(64, 128, 16, 32, 88, 104))      # aspect kept: 128x64 input
    assert res.cams.shape == (1, 16, 32) and res.boxes == [[[88, 16, 104, 32]]]


def test_split_stages_equal_the_call_and_the_cam_identity_holds(tiny: Path) -> None:
    loc = Localizer(tiny, device="cpu", imgsz=64, topk=3)
    frame = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    x, geo = loc.prepare(frame)
    logits, feats = loc.infer(np.concatenate([x, x]))     # batch of 2
    assert logits.shape == (2, 3) and feats.shape == (2, 3, 16, 16)
    gap = feats[0].mean(axis=(1, 2))
    np.testing.assert_allclose(gap @ loc.weight.T + loc.bias, logits[0], rtol=1e-5, atol=1e-6)
    a, b = loc.postprocess(logits[1], feats[1], geo), loc(frame)
    assert a.class_ids.tolist() == b.class_ids.tolist() and a.boxes == b.boxes
    assert a.class_ids.tolist() == np.argsort(-logits[0], kind="stable").tolist()


def test_detections_schema_and_draw(tiny: Path) -> None:
    loc = Localizer(tiny, device="cpu", imgsz=64, topk=2)
    frame = red_square(64, 64, 16, 32, 24, 40)
    frame[40:56, 40:56] = (0, 255, 0)
    res = loc(frame)
    dets = res.detections()
    assert [d["label"] for d in dets] == ["red", "green"] or [d["label"] for d in dets] == [
        "green", "red"]
    for d in dets:
        assert set(d) == {"class_id", "label", "score", "box"}
        assert isinstance(d["box"][0], int) and isinstance(d["score"], float)
    json.dumps(dets)
    canvas = frame.copy()
    assert res.draw(canvas, hud="10 fps") is canvas
    assert not (canvas == frame).all()
    with pytest.raises(ValueError, match="frame is 32x32 but the result is for 64x64"):
        res.draw(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="index must be between 0 and 1, got 2"):
        res.draw(frame.copy(), index=2)


def test_smoothing_across_frames(tiny: Path) -> None:
    loc = Localizer(tiny, device="cpu", imgsz=64, smooth=0.5)
    first = loc(red_square(64, 64, 0, 16, 0, 16)).cams[0]
    second = loc(red_square(64, 64, 48, 64, 48, 64)).cams[0]
    assert second[0, 0] == pytest.approx(0.5) and second[15, 15] == pytest.approx(0.5)
    assert first[15, 15] == 0.0
    loc.reset()
    assert loc(red_square(64, 64, 48, 64, 48, 64)).cams[0][0, 0] == 0.0


# ---- bad input --------------------------------------------------------------------------------

def test_missing_outputs_say_what_and_how(tmp_path: Path) -> None:
    path = tiny_model(tmp_path / "old.onnx", outputs=("logits", "features"))
    with pytest.raises(ModelError, match=r"output\(s\) cam_weight, cam_bias missing \(the "
                       r"classifier weights .* re-export it with: python -m export --model tiny"):
        Localizer(path, device="cpu")
    path = tiny_model(tmp_path / "nofeat.onnx", outputs=("logits", "cam_weight", "cam_bias"))
    with pytest.raises(ModelError, match=r"output\(s\) features missing \(the per-frame outputs"):
        Localizer(path, device="cpu")


def test_bad_metadata(tmp_path: Path) -> None:
    path = tiny_model(tmp_path / "nolabels.onnx", drop_meta=KEY_LABELS)
    with pytest.raises(ModelError, match="not a camloc model, metadata camloc.labels missing"):
        Localizer(path, device="cpu")
    path = tiny_model(tmp_path / "four.onnx", labels=["a", "b", "c", "d"])
    with pytest.raises(ModelError, match=r"do not match the 4 labels in the metadata"):
        Localizer(path, device="cpu")


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model file not found: .*nope.onnx"):
        Localizer(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf")
    with pytest.raises(ModelError, match="cannot load model .*bad.onnx"):
        Localizer(bad, device="cpu")


def test_zoo_name_without_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMLOC_HOME", str(tmp_path))
    monkeypatch.setattr(zoo.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=r"model 'resnet18' is not in the cache .* building it "
                       r"needs PyTorch: pip install torch torchvision"):
        Localizer("resnet18")


def test_bad_options(tiny: Path) -> None:
    with pytest.raises(ValueError, match=r"topk must be between 1 and the number of classes "
                       r"\(3\), got 4"):
        Localizer(tiny, device="cpu", topk=4)
    with pytest.raises(ValueError, match="unknown device 'tpu': choose one of auto, cpu, cuda"):
        Localizer(tiny, device="tpu")
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\), got 1.5"):
        Localizer(tiny, threshold=1.5)
    with pytest.raises(ValueError, match=r"imgsz must be an integer in \[1, 4096\] or None, got .640."):
        Localizer(tiny, imgsz="640")  # type: ignore[arg-type]
    loc = Localizer(tiny, device="cpu")
    with pytest.raises(TypeError, match="frame dtype must be uint8 or uint16, got float64"):
        loc(np.zeros((8, 8, 3)))
    assert issubclass(ModelError, CamlocError) and issubclass(DeviceError, CamlocError)


def test_explicit_gpu_without_gpu_is_an_error(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prov, "gpu_present", lambda: False)
    with pytest.raises(DeviceError, match="device 'cuda' needs an NVIDIA GPU and driver"):
        Localizer(tiny, device="cuda")
    assert Localizer(tiny, device="auto").provider == CPU


# ---- provider planning (pure) -----------------------------------------------------------------

def test_plan_providers() -> None:
    avail = [TRT, CUDA, CPU]
    assert prov.plan_providers("auto", avail, gpu=False, tensorrt=True) == [CPU]
    assert prov.plan_providers("auto", avail, gpu=True, tensorrt=False) == [
        (CUDA, {"device_id": 0}), CPU]
    trt, cuda, cpu = prov.plan_providers("auto", avail, gpu=True, tensorrt=True)
    assert (cuda, cpu) == ((CUDA, {"device_id": 0}), CPU) and trt[0] == TRT
    assert trt[1]["device_id"] == 0 and trt[1]["trt_engine_cache_enable"] is True
    assert trt[1]["trt_engine_cache_path"].endswith("tensorrt")  # under CAMLOC_HOME
    assert prov.plan_providers("cuda:1", avail, gpu=True, tensorrt=False) == [
        (CUDA, {"device_id": 1}), CPU]
    assert prov.plan_providers("CPU", avail, gpu=True, tensorrt=True) == [CPU]
    assert prov.plan_providers("auto", ["OpenVINOExecutionProvider", CPU], False, False) == [
        "OpenVINOExecutionProvider", CPU]
    with pytest.raises(DeviceError, match="device 'openvino' needs OpenVINOExecutionProvider, "
                       "which this onnxruntime build lacks"):
        prov.plan_providers("openvino", avail, gpu=True, tensorrt=True)
    with pytest.raises(ValueError, match="unknown device 'cpu:1'"):
        prov.parse_device("cpu:1")
    with pytest.raises(DeviceError, match="could not start CUDAExecutionProvider"):
        prov.check_granted("cuda", [(CUDA, {"device_id": 0}), CPU], [CPU])


def test_runtime_never_imports_torch() -> None:
    code = ("import sys, realtime.model.engine, realtime.model.zoo, realtime.model.draw; "
            "from realtime import Localizer; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


# ---- the real model on real photos ------------------------------------------------------------

# hand-annotated object boxes in the untouched photos (x2/y2 exclusive), accepted classes
OBJECTS = {
    "cat": ((0, 0, 395, 300), {"Egyptian cat", "tabby", "tiger cat"}),
    "espresso": ((75, 18, 480, 390), {"espresso", "cup"}),
    "motorcycle": ((92, 70, 686, 452), {"moped", "motor scooter"}),
}


def iou(a: list[int] | tuple, b: list[int] | tuple) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
    return iw * ih / union


@pytest.fixture(scope="module")
def lite0(lite0_onnx: Path) -> Localizer:
    return Localizer(lite0_onnx, device="cpu")


@pytest.mark.parametrize("name", sorted(OBJECTS))
def test_untouched_photos(lite0: Localizer, photos: dict[str, np.ndarray], name: str) -> None:
    box, accepted = OBJECTS[name]
    res = lite0(cv2.cvtColor(photos[name], cv2.COLOR_RGB2BGR))
    assert res.labels[0] in accepted
    found = res.boxes[0][0]
    cx, cy = (found[0] + found[2]) / 2, (found[1] + found[3]) / 2
    assert box[0] <= cx < box[2] and box[1] <= cy < box[3]
    assert iou(found, box) >= 0.4
    assert res.cams.dtype == np.float32 and 0.0 <= res.cams.min() and res.cams.max() == 1.0


@pytest.mark.parametrize("name", ["cat", "espresso"])
def test_pasted_photos_are_found_where_they_are(lite0: Localizer, photos: dict[str, np.ndarray],
                                                name: str) -> None:
    from skimage import data

    box, accepted = OBJECTS[name]
    bg = cv2.resize(cv2.cvtColor(data.grass(), cv2.COLOR_GRAY2BGR), (1280, 720))
    obj = cv2.cvtColor(photos[name], cv2.COLOR_RGB2BGR)
    h = 432
    w = round(h * obj.shape[1] / obj.shape[0])
    obj = cv2.resize(obj, (w, h), interpolation=cv2.INTER_AREA)
    s = h / photos[name].shape[0]
    centres = []
    for x, y in ((60, 100), (1280 - w - 40, 250)):
        frame = bg.copy()
        frame[y:y + h, x:x + w] = obj
        truth = (x + box[0] * s, y + box[1] * s, x + box[2] * s, y + box[3] * s)
        res = lite0(frame)
        assert res.labels[0] in accepted
        assert iou(res.boxes[0][0], truth) >= 0.5
        centres.append((res.boxes[0][0][0] + res.boxes[0][0][2]) / 2)
    assert centres[1] - centres[0] > 400  # the box moved with the object


def test_real_model_cam_identity(lite0: Localizer, photos: dict[str, np.ndarray]) -> None:
    x, _ = lite0.prepare(cv2.cvtColor(photos["cat"], cv2.COLOR_RGB2BGR))
    logits, feats = lite0.infer(x)
    recon = feats[0].mean(axis=(1, 2)) @ lite0.weight.T + lite0.bias
    np.testing.assert_allclose(recon, logits[0], rtol=1e-3, atol=1e-3)
    assert isinstance(lite0(np.zeros((48, 64), np.uint8)), Result)  # tiny grayscale frame


def test_parallelism_gives_cores_to_whole_runs_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert prov.parallelism(CPU, cores=2) == (2, 1)
    assert prov.parallelism(CPU, cores=8) == (4, 2)
    assert prov.parallelism(CPU, cores=1) == (1, 1)
    assert prov.parallelism(CPU, threads=2, cores=2) == (1, 2)   # explicit threads kept
    assert prov.parallelism(CPU, workers=3, cores=2) == (3, 1)   # explicit workers kept
    assert prov.parallelism(CUDA, cores=16) == (2, None)        # GPU: overlap, ORT's threads
    monkeypatch.setattr(prov, "gpu_present", lambda: False)
    assert prov.expected_provider("auto") == CPU
    monkeypatch.setattr(prov, "gpu_present", lambda: True)
    monkeypatch.setattr(prov.ort, "get_available_providers", lambda: [CUDA, CPU])
    assert prov.expected_provider("auto") == CUDA


def test_workers_and_threads_follow_the_granted_provider(tiny: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU is expected (the driver is visible) but the session falls back to the CPU: the
    pipeline gets the CPU's workers and threads, not the GPU's (and an explicit choice wins)."""
    monkeypatch.setattr(prov, "gpu_present", lambda: True)
    monkeypatch.setattr(prov.os, "cpu_count", lambda: 2)
    assert prov.expected_provider("auto") != CPU
    loc, workers = Localizer.for_pipeline(tiny, "auto")
    assert loc.provider == CPU and (workers, loc.threads) == (2, 1)
    assert loc.session.get_session_options().intra_op_num_threads == 1
    assert loc._forward.session is loc.session      # forward runs on the re-opened session
    loc, workers = Localizer.for_pipeline(tiny, "auto", threads=2, workers=3)
    assert (workers, loc.threads) == (3, 2)
    monkeypatch.setattr(prov, "gpu_present", lambda: False)
    loc, workers = Localizer.for_pipeline(tiny, "cpu")
    assert loc.provider == CPU and (workers, loc.threads) == (2, 1)


def test_metadata_round_trip_through_the_format_module(lite0: Localizer) -> None:
    """What export writes (to_metadata) is what the runtime reads back (parse_metadata),
    for the real default model as exported."""
    from realtime.model.format import parse_metadata, to_metadata

    meta = to_metadata(lite0.info)
    assert meta == lite0.session.get_modelmeta().custom_metadata_map
    assert parse_metadata(meta, lite0.info.path) == lite0.info

"""INT8 / FP16 export: agreement with FP32 on held-out real photos, metadata, bad input.

Calibration and held-out sets are different scikit-image photos (export.photos:
CALIB_PHOTOS vs HELDOUT_PHOTOS), each as seeded crops, rescales, mirrors and
brightness changes. The floors below sit a little under what was measured
(docs/EDGE.md: INT8 0.971 top-1 agreement and 0.998 CAM correlation on these 70
held-out frames); they are not tuned to pass.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from export.calib import MIN_CALIB_FRAMES, CalibError, CalibFrame, evenly, read_frames
from export.incam import INCAM_TOLERANCE, incam_error
from export.photos import CALIB_PHOTOS, HELDOUT_PHOTOS, photo_set
from export.quantize import QuantizeError, quantize_onnx
from realtime.model.format import INCAM_OUTPUTS

ROOT = Path(__file__).resolve().parents[1]


def _frames(names, per, seed) -> list[CalibFrame]:
    return [CalibFrame(n, cv2.cvtColor(im, cv2.COLOR_RGB2BGR)) for n, im in photo_set(names, per, seed)]


@pytest.fixture(scope="module")
def heldout() -> list[CalibFrame]:
    return _frames(HELDOUT_PHOTOS, 10, 2)


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory) -> Path:
    """78 calibration frames (13 photos x 6 views) as PNG files, as a user would give them."""
    folder = tmp_path_factory.mktemp("calib")
    for name, rgb in photo_set(CALIB_PHOTOS, 6, 1):
        cv2.imwrite(str(folder / f"{name.replace('#', '_')}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture(scope="module")
def int8(lite0_onnx, calib_dir, heldout, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "lite0.int8.onnx"
    frames = read_frames(calib_dir, 100)
    report = quantize_onnx(lite0_onnx, out, "int8", frames, heldout=heldout, bench_runs=3)
    return out, report


def _meta(path: Path) -> dict[str, str]:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.get_modelmeta().custom_metadata_map


def test_calibration_and_heldout_photos_are_disjoint():
    """No held-out picture is also a calibration picture, by content, not by name (skimage
    serves some photos under two names: cat() is chelsea())."""
    calib = {v.tobytes() for _, v in photo_set(CALIB_PHOTOS, 1)}
    held = {v.tobytes() for _, v in photo_set(HELDOUT_PHOTOS, 1)}
    assert len(calib) == len(CALIB_PHOTOS) and len(held) == len(HELDOUT_PHOTOS)
    assert not calib & held


def test_int8_agrees_with_fp32_on_heldout_real_photos(int8, lite0_onnx):
    path, r = int8
    assert r.heldout_frames == 70 and r.calib_frames == 78
    # Measured 0.971 (68/70) on this project's AMD EPYC (AVX2, no VNNI, no AVX-512) with
    # the portable default (7-bit weights, stem + 3 blocks float); the same export with
    # 8-bit weights gave 0.871 there (the AVX2 U8S8 kernels saturate), all-INT8 0.843,
    # 6 float convs 0.943 (docs/EDGE.md). 7-bit weights cannot saturate on any x86 kernel,
    # so this floor does not depend on the CPU's instruction set, and a quantization that
    # saturates or quantizes the sensitive first blocks falls below it.
    assert r.agreement >= 0.93
    assert r.cam_corr >= 0.99           # measured 0.995
    assert r.cam_corr_min >= 0.95       # measured 0.978
    # the same class's box from the INT8 CAM vs FP32's: measured 0.87-0.95 on four photo
    # sets (docs/EDGE.md); the export refuses below a mean of 0.5
    assert r.box_iou >= 0.75
    assert r.confident_frames > 0 and r.agreement_confident >= 0.9
    assert r.identity_err < 1e-5        # float head: the CAM identity holds exactly
    # measured 2.1x: the convolutions' weights are INT8, the classifier's (a third of the
    # FP32 file) stays float, so that nothing dequantizes it per frame
    assert lite0_onnx.stat().st_size / path.stat().st_size > 1.9
    _assert_float_head(lite0_onnx, path)
    assert r.speed > 0 and "first 9 convs" in ", ".join(r.float_nodes)
    assert r.target == "portable" and "7-bit weights" in r.summary()


def _assert_float_head(fp32: Path, int8: Path) -> None:
    """The INT8 file's classifier: FP32's weight and bias, stored once, read straight by the
    Gemm and the cam_weight/cam_bias outputs: no node runs on them per frame (a
    DequantizeLinear there cost 1.5 ms of 16 per 256x448 frame, docs/EDGE.md)."""
    import onnx
    from onnx import numpy_helper

    def head(path):
        proto = onnx.load(str(path))
        inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
        gemm = next(n for n in proto.graph.node if n.op_type == "Gemm" and "logits" in n.output)
        return proto.graph, inits, gemm

    _, inits32, gemm32 = head(fp32)
    graph, inits, gemm = head(int8)
    for k in (1, 2):
        assert gemm.input[k] in inits, "the Gemm reads a computed tensor, not a constant"
        assert np.array_equal(inits[gemm.input[k]], inits32[gemm32.input[k]])
    for out, k in (("cam_weight", 1), ("cam_bias", 2)):
        (node,) = [n for n in graph.node if out in n.output]
        assert node.op_type == "Identity" and list(node.input) == [gemm.input[k]]
    big = [n for n, a in inits.items() if a.size >= inits[gemm.input[1]].size]
    assert big == [gemm.input[1]], f"the classifier weight is stored more than once: {big}"


def _conv_weight_codes(path: Path) -> np.ndarray:
    """Every INT8 code of the quantized convolution weights."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    inits = {t.name: t for t in proto.graph.initializer}
    codes = [numpy_helper.to_array(inits[n.input[0]]).ravel() for n in proto.graph.node
             if n.op_type == "DequantizeLinear" and n.input[0] in inits
             and inits[n.input[0]].data_type == onnx.TensorProto.INT8]
    assert codes, "no INT8 convolution weights"
    return np.concatenate(codes).astype(np.int32)


@pytest.mark.parametrize("target, low, high", [("portable", 33, 64), ("vnni", 65, 127)])
def test_int8_target_sets_the_weight_bits(tiny_onnx, calib_dir, tmp_path, target, low, high):
    """Portable INT8 keeps weights in 7 bits (|code| <= 64), which the AVX2 U8S8 kernels add
    without saturating on every x86 CPU; vnni uses all 8 bits. Checked in the file itself,
    so it holds whichever kernels this machine has."""
    out = tmp_path / f"tiny.{target}.onnx"
    r = quantize_onnx(tiny_onnx, out, "int8", read_frames(calib_dir, 16), float_first=0,
                      min_agreement=0.0, bench_runs=0, target=target)
    peak = np.abs(_conv_weight_codes(out)).max()
    assert low <= peak <= high, peak
    assert r.target == target
    with pytest.raises(ValueError, match="target must be portable or vnni"):
        quantize_onnx(tiny_onnx, tmp_path / "x.onnx", "int8", read_frames(calib_dir, 16),
                      target="avx2")


def test_int8_of_an_opset_18_model_with_in_graph_cams(tiny_onnx, calib_dir, tmp_path):
    """The tiny model is opset 18 (ReduceMax takes axes as an input there, which the INT8
    pre-processing's shape inference cannot follow): its in-graph CAMs quantize, stay
    float, and still equal numpy's; the weights keep 7 bits."""
    import shutil

    import onnx

    from export.incam import add_incam_file

    src, out = tmp_path / "tiny.onnx", tmp_path / "tiny.int8.onnx"
    shutil.copy(tiny_onnx, src)
    assert add_incam_file(src) == 5
    quantize_onnx(src, out, "int8", read_frames(calib_dir, 16), float_first=0,
                  min_agreement=0.0, bench_runs=0)
    s8 = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in s8.get_outputs()][4:] == list(INCAM_OUTPUTS)
    x = np.random.default_rng(1).normal(0, 1, (2, 3, 64, 96)).astype(np.float32)
    assert incam_error(s8, x) < INCAM_TOLERANCE
    ops = {n.op_type for n in onnx.load(str(out)).graph.node if n.name.startswith("incam_")}
    assert ops and not any("Quant" in o or "Integer" in o for o in ops)
    assert np.abs(_conv_weight_codes(out)).max() <= 64


def test_int8_keeps_the_metadata_and_float_outputs(int8, lite0_onnx):
    path, _ = int8
    m8, m32 = _meta(path), _meta(lite0_onnx)
    assert m8.pop("camloc.precision") == "int8" and m32.pop("camloc.precision") == "fp32"
    assert m8 == m32
    s8 = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    s32 = ort.InferenceSession(str(lite0_onnx), providers=["CPUExecutionProvider"])
    x = np.zeros((1, 3, 64, 96), np.float32)
    outs8 = s8.run(None, {"images": x})
    assert [o.name for o in s8.get_outputs()] == ["logits", "features", "cam_weight", "cam_bias",
                                                  *INCAM_OUTPUTS]
    assert [o.dtype for o in outs8] == [np.float32] * 5 + [np.int64, np.float32]  # topk_ids
    assert incam_error(s8, x) < INCAM_TOLERANCE            # in-graph CAMs stay float
    assert outs8[1].shape == (1, 1280, 2, 3)
    w32, b32 = s32.run(["cam_weight", "cam_bias"], {"images": x})
    w8, b8 = outs8[2], outs8[3]
    assert np.array_equal(b8, b32)
    # per-class INT8 weight: error at most half a step of each row's scale
    assert np.all(np.abs(w8 - w32) <= np.abs(w32).max(1, keepdims=True) / 127 / 2 + 1e-7)


def test_fp16_export_agrees(lite0_onnx, heldout, tmp_path):
    out = tmp_path / "lite0.fp16.onnx"
    r = quantize_onnx(lite0_onnx, out, "fp16", heldout=heldout[::2], bench_runs=2)
    assert r.agreement >= 0.97 and r.cam_corr >= 0.999  # measured 1.000 and 1.0000
    assert r.identity_err < 1e-5
    assert _meta(out)["camloc.precision"] == "fp16"
    s = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert s.get_inputs()[0].type == "tensor(float)"
    assert {o.type for o in s.get_outputs() if o.name != "topk_ids"} == {"tensor(float)"}


def test_read_frames_samples_a_video_evenly(photos, tmp_path):
    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for _ in range(40):
        f = cv2.resize(photos["cat"][:, :, ::-1], (160, 120))
        writer.write(np.ascontiguousarray(f))
    writer.release()
    frames = read_frames(video, 16)
    assert [int(f.name.rsplit("#", 1)[1]) for f in frames] == evenly(40, 16)
    assert frames[0].image.shape == (120, 160, 3)
    assert evenly(40, 16)[0] == 0 and evenly(40, 16)[-1] == 39 and len(evenly(40, 16)) == 16


def test_read_frames_bad_sources(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    for i in range(20):
        (tmp_path / "junk" / f"{i}.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (tmp_path / "few").mkdir()
    for i in range(MIN_CALIB_FRAMES - 1):
        cv2.imwrite(str(tmp_path / "few" / f"{i}.png"), np.full((8, 8, 3), i, np.uint8))
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(CalibError, match="has no readable images"):
        read_frames(tmp_path / "empty")
    with pytest.raises(CalibError, match="has no readable images"):
        read_frames(tmp_path / "junk")
    with pytest.raises(CalibError, match=f"only {MIN_CALIB_FRAMES - 1} readable images; INT8 "
                                         f"calibration needs at least {MIN_CALIB_FRAMES}"):
        read_frames(tmp_path / "few")
    with pytest.raises(CalibError, match="has no readable video frames"):
        read_frames(tmp_path / "notes.mp4")
    with pytest.raises(CalibError, match="not found"):
        read_frames(tmp_path / "missing")


def _export(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "export", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**__import__("os").environ,
                                                       "PYTHONPATH": str(ROOT)})


def test_cli_bad_input_one_line_exit_2_no_file(tmp_path, lite0_onnx):
    (tmp_path / "empty").mkdir()
    (tmp_path / "few").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "few" / f"{i}.png"), np.full((8, 8, 3), i, np.uint8))
    (tmp_path / "plain.onnx").write_bytes(lite0_onnx.read_bytes()[:1000])  # truncated
    cases = [
        (["--int8", "--calib", "empty"], "has no readable images"),
        (["--int8", "--calib", "few"], "has only 3 readable images; INT8 calibration needs at "
                                        "least 16"),
        (["--int8"], "--int8 needs --calib SOURCE"),
        (["--int8", "--calib", "missing.mp4"], "calibration source not found: missing.mp4"),
        (["--fp16", "--model", "plain.onnx"], "plain.onnx"),
        (["--int8-target", "vnni"], "--int8-target is for --int8"),
        (["--fp16", "--int8-target", "vnni"], "--int8-target is for --int8"),
        (["--qat"], "--qat is for --int8"),
        (["--fp16", "--qat"], "--qat is for --int8"),
        (["--int8", "--calib", "empty", "--qat", "--qat-steps", "0"], "--qat-steps of at least 1"),
    ]
    for args, message in cases:
        r = _export("--output", "out.onnx", *args, cwd=tmp_path)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("export: error:"), (args, r.stderr)
        assert message in lines[0], (args, lines[0])
        assert not (tmp_path / "out.onnx").exists()
        assert not list(tmp_path.glob(".out*"))


def test_int8_of_a_model_whose_export_fails_verification(monkeypatch, tmp_path, calib_dir, capsys):
    import export.onnx_export as ox
    from export.cli import main

    def failing(*_a, **_k):
        raise ox.ExportError("verification failed: logits vs torch rel. error 3.1e-02 >= 0.0001")

    monkeypatch.setattr(ox, "export_model", failing)
    out = tmp_path / "m.int8.onnx"
    rc = main(["--model", "efficientnet_lite0", "--output", str(out), "--int8", "--calib",
               str(calib_dir), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "FP32 export of efficientnet_lite0 failed" in err[0] and "verification failed" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_low_agreement_fails_and_leaves_nothing(lite0_onnx, calib_dir, heldout, tmp_path):
    out = tmp_path / "x.onnx"
    with pytest.raises(QuantizeError, match="top-1 agreement with FP32 .* < 1.01 on the .* "
                                            "held-out frames FP32 is sure of"):
        quantize_onnx(lite0_onnx, out, "int8", read_frames(calib_dir, 16), heldout=heldout[:20],
                      float_first=0, min_agreement=1.01, bench_runs=0)
    assert list(tmp_path.iterdir()) == []


def _scramble_weight_scales(path: Path, seed: int = 0) -> None:
    """A broken quantization, as a wrong scale in a quantizer or a kernel would make it:
    every convolution's per-channel weight scale multiplied by a random factor in
    [0.5, 2]. The file stays a valid INT8 model that loads and runs."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    inits = {t.name: t for t in proto.graph.initializer}
    rng = np.random.default_rng(seed)
    for n in proto.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits and n.input[1] in inits \
                and inits[n.input[0]].data_type == onnx.TensorProto.INT8:
            scale = numpy_helper.to_array(inits[n.input[1]])
            inits[n.input[1]].CopyFrom(numpy_helper.from_array(
                (scale * rng.uniform(0.5, 2.0, scale.shape)).astype(scale.dtype), n.input[1]))
    onnx.save(proto, str(path))


def test_broken_int8_is_refused_and_leaves_nothing(lite0_onnx, calib_dir, heldout, tmp_path,
                                                   monkeypatch):
    """The verification passes varied photos (it judges the quantization, not FP32's doubt)
    yet still refuses a really broken quantization, with the default floors."""
    import export.quantize as qz

    make = qz._make_int8

    def broken(fp32, out, *args, **kwargs):
        desc = make(fp32, out, *args, **kwargs)
        _scramble_weight_scales(out)
        return desc

    monkeypatch.setattr(qz, "_make_int8", broken)
    out = tmp_path / "broken.onnx"
    with pytest.raises(QuantizeError, match="verification failed: .*the quantized model is "
                                            "broken") as info:
        quantize_onnx(lite0_onnx, out, "int8", read_frames(calib_dir, 100), heldout=heldout,
                      bench_runs=0)
    assert "CAM correlation with FP32" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_cli_varied_folder_exports_with_default_flags(lite0_onnx, calib_dir, tmp_path):
    """A folder of ordinary varied photos (text, a logo, a colour wheel, microscopy,
    textures, the moon) exports with default flags; the report block names each measure."""
    r = _export("--model", str(lite0_onnx), "--output", "m.onnx", "--int8", "--calib",
                str(calib_dir), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for needle in ("checked against FP32 on 16 held-out frames", "where FP32 is sure",
                   "all frames", "CAM correlation", "box IoU", "CAM identity", "speed"):
        assert needle in r.stdout, (needle, r.stdout)
    assert (tmp_path / "m.onnx").is_file()


def test_report_summary_lines(int8):
    text = int8[1].summary()
    for needle in ("checked against FP32 on 70 held-out frames", "CAM correlation",
                   "box IoU", "smaller than FP32", "speed on this machine"):
        assert needle in text
    json.dumps(int8[1].agreement)


def test_verdict_judges_the_quantization_not_fp32s_doubt(tmp_path):
    """Many all-frame top-1 flips with agreement where FP32 is sure and close CAMs pass;
    any one broken measure fails, naming it; no frame FP32 is sure of leaves the CAMs."""
    from export.verify import QuantizeReport, check

    def report(**kw):
        base = dict(heldout_frames=16, agreement=0.5, confident_frames=4,
                    agreement_confident=1.0, cam_corr=0.99, cam_corr_min=0.9, box_iou=0.9,
                    box_iou_min=0.6, identity_err=1e-7)
        return QuantizeReport(tmp_path / "m.onnx", "int8", "lite0", "portable",
                              **{**base, **kw})

    check(report())
    check(report(confident_frames=0, agreement_confident=None))
    for kw, needle in ((dict(agreement_confident=0.75), "top-1 agreement with FP32 0.750 < 0.8"),
                       (dict(cam_corr=0.85), "CAM correlation with FP32 0.850 < 0.9"),
                       (dict(box_iou=0.3), "box IoU with FP32 0.300 < 0.5"),
                       (dict(identity_err=0.01), "CAM identity rel. error")):
        with pytest.raises(QuantizeError, match="verification failed") as info:
            check(report(**kw))
        assert needle in str(info.value), (kw, str(info.value))
    text = report(confident_frames=0, agreement_confident=None).verification()
    assert "none of them: judged on the CAMs alone" in "\n".join(text)


def test_error_floor_scales_the_variants_own_error():
    """tools/int8_sets.py --floor: FP32's top-2 margins, and agreement with the variant's
    logit error scaled down (a flip at margin 0.15 by an error of 0.2 undone at x0.5)."""
    from tools.int8_sets import error_floor

    ref = [np.array([[1.0, 0.85, 0.0]]), np.array([[2.0, 0.0, 0.0]])]
    var = [np.array([[0.9, 0.95, 0.0]]), np.array([[2.0, 0.1, 0.0]])]  # frame 0 flips
    line = error_floor(ref, var)
    assert "<0.1: 0.00 <0.25: 0.50" in line          # frame 0's margin is 0.15
    assert "x1.0: 0.500" in line and "x0.5: 1.000" in line and "x0.25: 1.000" in line

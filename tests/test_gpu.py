"""The GPU tests: what ONNX Runtime's CUDA provider must do for camloc, on the real model
and real photos. tools/gpu/check runs them on the GPU machine (``-m gpu``).

Each test that can run on the CPU provider too has two variants: ``[cpu]`` runs in the
normal suite, ``[gpu]`` (marker ``gpu``, deselected by pyproject's addopts) on the
device CAMLOC_GPU_DEVICE names (``cuda`` by default; tools/gpu/check --cpu sets
``cpu`` to rehearse). Only meaningful on a GPU: the CUDA provider granted, outputs kept
in device memory, CUDA graphs captured and replayed, FP16 on tensor cores, NVENC; the
CPU variants check the same logic (IO binding, in-graph CAMs, FP16 agreement, the 1080p
file, batching several sources) on the CPU provider.

Models: CAMLOC_GPU_MODELS (the packed folder) when set, else the default model exported
here and its FP16 variant made here; the 1080p clip: CAMLOC_GPU_CLIP, else one written
here.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from export.incam import INCAM_TOLERANCE, incam_error
from realtime import Localizer
from realtime.bench import pipeline_fps
from realtime.model import binding
from realtime.model.format import INCAM_OUTPUTS, INPUT
from realtime.model.providers import PROVIDER_OF, parse_device
from realtime.pipeline.runner import Pipeline

GPU_DEVICE = os.environ.get("CAMLOC_GPU_DEVICE", "cuda")
BOTH = [pytest.param("cpu", id="cpu"), pytest.param(GPU_DEVICE, id="gpu", marks=pytest.mark.gpu)]
PHOTOS = ("cat", "espresso", "motorcycle", "astronaut", "rocket")


def _on_device(provider: str) -> str:
    """OrtValue device name for a session's provider."""
    return "cuda" if provider in (PROVIDER_OF["cuda"], PROVIDER_OF["tensorrt"]) else "cpu"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Lite0 FP32 and FP16, with in-graph CAMs."""
    packed = os.environ.get("CAMLOC_GPU_MODELS")
    if packed and (Path(packed) / "efficientnet_lite0.fp16.onnx").is_file():
        return {"fp32": Path(packed) / "efficientnet_lite0.onnx",
                "fp16": Path(packed) / "efficientnet_lite0.fp16.onnx"}
    from export.fp16 import make_fp16
    from realtime.model.zoo import resolve_model

    fp32 = resolve_model("efficientnet_lite0")
    fp16 = tmp_path_factory.mktemp("fp16") / "lite0.fp16.onnx"
    make_fp16(fp32, fp16)
    return {"fp32": fp32, "fp16": fp16}


@pytest.fixture(scope="module")
def clip1080(photos, tmp_path_factory: pytest.TempPathFactory) -> Path:
    packed = os.environ.get("CAMLOC_GPU_CLIP")
    if packed and Path(packed).is_file():
        return Path(packed)
    from media import write_clip

    return write_clip(tmp_path_factory.mktemp("clip") / "clip1080.mp4", photos, 10,
                      fps=30, size=(1920, 1080))


def _bgr(photos, name: str) -> np.ndarray:
    return cv2.cvtColor(photos[name], cv2.COLOR_RGB2BGR)


def _batches(loc: Localizer, photos) -> list[np.ndarray]:
    """Each photo alone (its own aspect ratio), and all of them at 640x480 as one batch."""
    one = [loc.prepare(_bgr(photos, n))[0] for n in PHOTOS]
    same = [loc.prepare(cv2.resize(_bgr(photos, n), (640, 480)))[0] for n in PHOTOS]
    return [*one, np.concatenate(same)]


@pytest.mark.gpu
def test_provider_granted(models) -> None:
    loc = Localizer(models["fp32"], device=GPU_DEVICE)
    want = PROVIDER_OF[parse_device(GPU_DEVICE)[0]]
    assert loc.session.get_providers()[0] == want
    if want == PROVIDER_OF["cuda"]:     # IO binding, with graphs unless they were refused
        assert isinstance(loc._forward, binding.GraphRunner | binding.BoundRunner)


@pytest.mark.parametrize("device", BOTH)
def test_in_graph_cams_equal_numpy(models, photos, device) -> None:
    loc = Localizer(models["fp32"], device=device)
    for x in _batches(loc, photos):
        assert incam_error(loc.session, x) < INCAM_TOLERANCE   # 1e-4


@pytest.mark.parametrize("device", BOTH)
def test_io_binding_on_device_equals_session_run(models, photos, device) -> None:
    loc = Localizer(models["fp32"], device=device, cuda_graphs=False)
    where = _on_device(loc.provider)
    names = list(INCAM_OUTPUTS)
    bound = binding.BoundRunner(loc.session, names, where)
    for x in _batches(loc, photos):
        want = loc.session.run(names, {INPUT: x})
        b = loc.session.io_binding()                  # outputs left in device memory
        b.bind_cpu_input(INPUT, x)
        for n in names:
            b.bind_output(n, where)
        loc.session.run_with_iobinding(b)
        kept = b.get_outputs()
        assert [v.device_name().lower() for v in kept] == [where] * len(names)
        for got in ([v.numpy() for v in kept], bound(x)):
            np.testing.assert_array_equal(got[1], want[1])               # class ids
            np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-6)
            np.testing.assert_allclose(got[2], want[2], rtol=0, atol=1e-5)


@pytest.mark.gpu
def test_cuda_graphs_capture_and_replay(models, photos, caplog) -> None:
    """Replays equal plain runs for new data and shapes; or the refusal is logged and the
    run goes on."""
    with caplog.at_level(logging.WARNING):
        loc = Localizer(models["fp32"], device=GPU_DEVICE)
        plain = Localizer(models["fp32"], device=GPU_DEVICE, cuda_graphs=False)
        batches = _batches(loc, photos)
        for x in batches + batches[::-1]:
            got, want = loc.forward(x), plain.forward(x)
            np.testing.assert_array_equal(got[1], want[1])
            np.testing.assert_allclose(got[2], want[2], rtol=0, atol=1e-4)
    refused = [r.getMessage() for r in caplog.records if "CUDA graphs refused" in r.getMessage()]
    if loc.provider != PROVIDER_OF["cuda"]:
        assert isinstance(loc._forward, binding.PlainRunner)   # rehearsal: no graphs on CPU
    elif isinstance(loc._forward, binding.GraphRunner) and not loc._forward.refused:
        assert len(loc._forward._slots) == len({x.shape for x in batches}) and not refused
    else:
        assert len(refused) == 1, "graphs not used, and no log line said why"


@pytest.mark.parametrize("device", BOTH)
def test_fp16_agrees_with_fp32(models, photos, device) -> None:
    a = Localizer(models["fp32"], device=device)
    b = Localizer(models["fp16"], device=device)
    assert b.info.precision == "fp16"
    same, corr = 0, []
    for name in PHOTOS:
        ra, rb = a(_bgr(photos, name)), b(_bgr(photos, name))
        if ra.class_ids[0] == rb.class_ids[0]:
            same += 1
            corr.append(np.corrcoef(ra.cams[0].ravel(), rb.cams[0].ravel())[0, 1])
    assert same / len(PHOTOS) >= 0.8          # export's own FP16 check: agreement >= 0.8
    assert min(corr) > 0.99


@pytest.mark.parametrize("device", BOTH)
def test_1080p_file_end_to_end_with_stage_table(models, clip1080, tmp_path, device) -> None:
    loc, workers = Localizer.for_pipeline(models["fp32"], device)
    out = tmp_path / "out.mp4"
    fps, stages = pipeline_fps(loc, str(clip1080), 10, 2, out, 1, workers, "mp4v", 2)
    assert fps > 0
    for k in ("decode", "preprocess", "infer", "draw", "encode"):
        assert stages.get(k) and min(stages[k]) >= 0, k
    cap = cv2.VideoCapture(str(out))
    n, shape = 0, None
    while True:
        ok, f = cap.read()
        if not ok:
            break
        n, shape = n + 1, f.shape
    cap.release()
    assert n == 10 and shape == (1080, 1920, 3)


@pytest.mark.parametrize("device", BOTH)
def test_several_sources_batched_in_one_call(models, clip1080, device) -> None:
    loc = Localizer(models["fp32"], device=device)
    sizes = []
    forward = loc.forward

    def counted(x):          # the real forward; only the batch sizes are noted
        sizes.append(len(x))
        return forward(x)

    loc.forward = counted
    with Pipeline([str(clip1080)] * 3, loc, names=["a", "b", "c"], draw=False, max_frames=4,
                  batch=3) as run:
        for _ in run:
            pass
    assert [f.stats.processed for f in run.feeds] == [4, 4, 4]
    assert max(sizes) == 3 and sum(sizes) == 12


@pytest.mark.gpu
def test_nvenc_through_pyav(models, clip1080, tmp_path) -> None:
    if GPU_DEVICE == "cpu":
        pytest.skip("NVENC needs an NVIDIA GPU (rehearsal on the CPU)")
    av = pytest.importorskip("av", reason="PyAV not installed (tools/gpu/pack --with-av)")
    if "h264_nvenc" not in av.codecs_available:
        pytest.skip("this PyAV wheel's FFmpeg has no h264_nvenc")
    out = tmp_path / "nvenc.mp4"
    r = subprocess.run([sys.executable, "-m", "realtime", "--source", str(clip1080), "--save",
                        str(out), "--codec", "h264_nvenc", "--device", GPU_DEVICE,
                        "--max-frames", "10"], capture_output=True, text=True, timeout=120)
    if r.returncode != 0 and "nvenc" in r.stderr.lower():
        # H100/H200 have no video encoder engine: say so rather than fail
        pytest.skip("NVENC unavailable on this GPU: " + r.stderr.strip().splitlines()[-1])
    assert r.returncode == 0, r.stderr
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 10

"""How the engine calls its session (realtime/binding.py): IO binding and the CUDA-graph
runner's fixed buffers checked on the CPU provider against ``session.run`` exactly;
the GPU-only answers (graphs refused, a TensorRT build that fails) as fakes of ONNX
Runtime's; provider plans, pure."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from realtime.model import binding
from realtime.model import engine as eng
from realtime.model import providers as prov
from realtime.model.engine import Localizer
from realtime.model.format import FRAME_OUTPUTS, INCAM_OUTPUTS

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


@pytest.fixture(scope="module")
def session(lite0_onnx: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(lite0_onnx), providers=[CPU])


@pytest.fixture(scope="module")
def batches(lite0_onnx: Path, photos: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Real photos prepared as the engine does: two shapes, batch 1 and 2."""
    loc = Localizer(lite0_onnx, device="cpu")
    x = {n: loc.prepare(cv2.cvtColor(photos[n], cv2.COLOR_RGB2BGR))[0]
         for n in ("cat", "espresso", "rocket", "motorcycle")}
    return [x["cat"], x["espresso"], np.concatenate([x["cat"], x["espresso"]]), x["motorcycle"]]


def _equal(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("names", [INCAM_OUTPUTS, FRAME_OUTPUTS])
def test_io_binding_equals_session_run(session, batches, names) -> None:
    bound = binding.BoundRunner(session, names, "cpu")
    for x in batches:
        _equal(bound(x), session.run(list(names), {"images": x}))


def test_graph_runner_buffers_equal_session_run(session, batches) -> None:
    runner = binding.GraphRunner(session, INCAM_OUTPUTS, binding.PlainRunner(session, ()),
                                 device="cpu")
    for x in batches + batches[::-1]:        # new data into the same buffers, shapes back
        _equal(runner(x), session.run(list(INCAM_OUTPUTS), {"images": x}))
    shapes = {x.shape for x in batches}
    assert set(runner._slots) == shapes and not runner.refused   # one capture per shape


def test_graph_runner_caps_its_graphs(session, batches) -> None:
    plain = binding.PlainRunner(session, INCAM_OUTPUTS)
    runner = binding.GraphRunner(session, INCAM_OUTPUTS, plain, device="cpu", max_graphs=1)
    for x in batches:
        _equal(runner(x), session.run(list(INCAM_OUTPUTS), {"images": x}))
    assert len(runner._slots) == 1


class RefusingSession:
    """A real session whose bound runs fail as ONNX Runtime's do when the CUDA provider
    cannot capture a graph."""

    def __init__(self, session):
        self.s = session

    def run(self, *a):
        return self.s.run(*a)

    def io_binding(self):
        return self.s.io_binding()

    def run_with_iobinding(self, b, opts=None):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : CUDA graph capture failed\nmore")


def test_refused_graphs_fall_back_with_one_line(session, batches, caplog) -> None:
    fallback = binding.PlainRunner(session, INCAM_OUTPUTS)
    runner = binding.GraphRunner(RefusingSession(session), INCAM_OUTPUTS, fallback, "cpu")
    with caplog.at_level(logging.WARNING, logger="realtime.model.binding"):
        for x in batches:
            _equal(runner(x), session.run(list(INCAM_OUTPUTS), {"images": x}))
    assert runner.refused and not runner._slots
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["CUDA graphs refused ([ONNXRuntimeError] : 1 : FAIL : CUDA graph capture "
                     "failed); running without them"]


def test_engine_runs_without_graphs_when_the_session_refuses(lite0_onnx, monkeypatch,
                                                              caplog) -> None:
    loc = Localizer(lite0_onnx, device="cpu")
    assert isinstance(loc._forward, binding.PlainRunner)      # the CPU: plain session.run

    def refuse(*a):
        raise RuntimeError("This session cannot use the CUDA Graph feature as requested")

    monkeypatch.setattr(eng, "_graph_session", refuse)
    with caplog.at_level(logging.WARNING, logger="realtime.model.engine"):
        runner = loc._runner(loc.session, CUDA)
    assert isinstance(runner, binding.BoundRunner) and runner.device == "cuda"
    assert [r.getMessage() for r in caplog.records] == [
        "CUDA graphs refused (This session cannot use the CUDA Graph feature as requested); "
        "running without them"]
    assert isinstance(loc._runner(loc.session, TRT), binding.TensorrtWatch)
    monkeypatch.setattr(eng, "_graph_session", lambda *a: loc.session)
    assert isinstance(loc._runner(loc.session, CUDA), binding.GraphRunner)
    old = Localizer(lite0_onnx, device="cpu", incam=False)    # features come back: no graphs
    assert isinstance(old._runner(old.session, CUDA), binding.BoundRunner)


def test_tensorrt_watch_reports_the_build_once_per_shape(caplog) -> None:
    calls = []

    def trt(x):
        calls.append(x.shape)
        return [x * 2]

    watch = binding.TensorrtWatch(trt, lambda: pytest.fail("no fallback expected"))
    x = np.ones((1, 3, 64, 96), np.float32)
    with caplog.at_level(logging.WARNING, logger="realtime.model.binding"):
        for _ in range(3):
            np.testing.assert_array_equal(watch(x)[0], x * 2)
        watch(np.ones((2, 3, 64, 96), np.float32))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4 and len(calls) == 4
    assert lines[0] == ("building the TensorRT engine for input 1x3x64x96: the first run can "
                        "take minutes (cached for the next runs)")
    assert lines[1].startswith("TensorRT engine ready in ") and lines[1].endswith(" s")
    assert "2x3x64x96" in lines[2]


def test_failed_tensorrt_build_falls_back_to_cuda(caplog) -> None:
    def trt(x):
        raise RuntimeError("TensorRT EP failed to create engine from network\ndetails")

    opened = []

    def cuda():
        opened.append(1)
        return lambda x: [x + 1]

    watch = binding.TensorrtWatch(trt, cuda)
    x = np.zeros((1, 3, 8, 8), np.float32)
    with caplog.at_level(logging.WARNING, logger="realtime.model.binding"):
        assert watch(x)[0].max() == 1 and watch(x)[0].max() == 1
    assert opened == [1] and watch.fell_back
    assert [r.getMessage() for r in caplog.records][1:] == [
        "TensorRT engine build failed (TensorRT EP failed to create engine from network); "
        "falling back to CUDA"]


def test_tensorrt_that_cannot_start_falls_back_to_cuda(tiny_onnx, monkeypatch, caplog) -> None:
    """Session creation with TensorRT fails (ONNX Runtime's answer, faked): the engine
    retries without it, with one log line."""
    tried = []
    real = ort.InferenceSession

    def fake_session(path, sess_options=None, providers=()):
        names = [p if isinstance(p, str) else p[0] for p in providers]
        tried.append(names)
        if TRT in names:
            raise RuntimeError("TensorRT EP could not be created: libnvinfer.so.10 missing")
        return real(path, sess_options=sess_options, providers=[CPU])

    monkeypatch.setattr(prov, "gpu_present", lambda: True)
    monkeypatch.setattr(prov, "tensorrt_present", lambda: True)
    monkeypatch.setattr(prov, "preload_cuda", lambda: None)
    monkeypatch.setattr(eng.ort, "get_available_providers", lambda: [TRT, CUDA, CPU])
    monkeypatch.setattr(eng.ort, "InferenceSession", fake_session)
    with caplog.at_level(logging.WARNING, logger="realtime.model.engine"):
        loc = Localizer(tiny_onnx, device="auto")
    assert tried == [[TRT, CUDA, CPU], [CUDA, CPU]] and loc.provider == CPU
    assert [r.getMessage() for r in caplog.records] == [
        "TensorRT could not start (TensorRT EP could not be created: libnvinfer.so.10 "
        "missing); running on CUDA"]


def test_plans_for_graphs_and_without_tensorrt() -> None:
    cuda = (CUDA, {"device_id": 1})
    trt = (TRT, {"device_id": 1, "trt_fp16_enable": True})
    assert binding.with_cuda_graph([cuda, CPU]) == [
        (CUDA, {"device_id": 1, "enable_cuda_graph": "1"}), CPU]
    assert cuda == (CUDA, {"device_id": 1})                      # the plan is not changed
    assert binding.with_cuda_graph([CPU]) is None
    assert binding.with_cuda_graph([trt, cuda, CPU]) is None     # TensorRT has its own
    assert prov.without_tensorrt([trt, cuda, CPU]) == [cuda, CPU]
    assert prov.without_tensorrt([cuda, CPU]) is None
    assert prov.without_tensorrt([trt, CPU]) is None             # nothing to fall back to

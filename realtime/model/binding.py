"""How the engine calls its ONNX Runtime session for each batch: a *runner* takes the
input batch (numpy, on the host) and returns the requested outputs (numpy).

- ``PlainRunner``: ``session.run`` (the CPU: nothing to gain from binding);
- ``BoundRunner``: IO binding (CUDA, TensorRT): the input is copied to the device once,
  only the requested outputs come back; with the in-graph CAMs those are a few KB,
  and the [N, C, h, w] features never leave the device;
- ``GraphRunner``: CUDA graphs on top: per input shape, device buffers bound once and
  a captured graph replayed; a new shape (a new source size) captures another graph,
  and a session that refuses graphs falls back to ``BoundRunner`` with one log line;
- ``TensorrtWatch``: around a TensorRT runner, says that the first run of each shape
  builds an engine (minutes, then cached) and how long it took, and falls back to
  CUDA with one log line when the build fails.

All of them work on the CPU provider too (device ``"cpu"``), which is how the tests
check them against ``session.run``; only the device name and the provider option
(``with_cuda_graph``) differ on a GPU.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import onnxruntime as ort

from realtime.errors import first_line
from realtime.model.format import INPUT

__all__ = ["BoundRunner", "GraphRunner", "PlainRunner", "Runner", "TensorrtWatch",
           "with_cuda_graph"]

log = logging.getLogger(__name__)

Runner = Callable[[np.ndarray], list[np.ndarray]]
_GRAPH_ID = "gpu_graph_id"  # ONNX Runtime run option: which captured graph (-1: none)
_CUDA = "CUDAExecutionProvider"


def with_cuda_graph(plan: list[Any]) -> list[Any] | None:
    """The provider plan with CUDA graphs switched on, or None when the plan does not
    start with the CUDA provider (graphs need every node on it)."""
    if not plan or isinstance(plan[0], str) or plan[0][0] != _CUDA:
        return None
    name, options = plan[0]
    return [(name, {**options, "enable_cuda_graph": "1"}), *plan[1:]]


def _run_options(graph_id: int) -> ort.RunOptions:
    opts = ort.RunOptions()
    opts.add_run_config_entry(_GRAPH_ID, str(graph_id))
    return opts


class PlainRunner:
    """``session.run(names, {INPUT: x})``."""

    def __init__(self, session: Any, names: tuple[str, ...] | list[str]):
        self.session, self.names = session, list(names)

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self.names, {INPUT: x})


class BoundRunner:
    """IO binding: input copied to ``device`` once per call, the ``names`` outputs
    allocated there by ONNX Runtime and copied to the host; nothing else comes back.
    A new binding per call, so several worker threads may call it at once."""

    def __init__(self, session: Any, names: tuple[str, ...] | list[str], device: str = "cpu",
                 device_id: int = 0, run_options: ort.RunOptions | None = None):
        self.session, self.names = session, list(names)
        self.device, self.device_id, self.run_options = device, device_id, run_options

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        binding = self.session.io_binding()
        binding.bind_cpu_input(INPUT, np.ascontiguousarray(x))
        for name in self.names:
            binding.bind_output(name, self.device, self.device_id)
        self.session.run_with_iobinding(binding, self.run_options)
        return binding.copy_outputs_to_cpu()


class GraphRunner:
    """CUDA graphs: one captured graph per input shape, on fixed bound buffers.

    Each call copies the batch into that shape's input buffer, replays, and copies the
    (small) outputs back. Calls are serialised (the buffers are shared); at most
    ``max_graphs`` shapes are captured, later shapes run through ``fallback``. Any
    failure of a capture or replay (the provider refused graphs) switches to
    ``fallback`` for good, with one log line.
    """

    def __init__(self, session: Any, names: tuple[str, ...] | list[str], fallback: Runner,
                 device: str = "cuda", device_id: int = 0, max_graphs: int = 8):
        self.session, self.names, self.fallback = session, list(names), fallback
        self.device, self.device_id, self.max_graphs = device, device_id, max_graphs
        self.refused = False
        self._slots: dict[tuple[int, ...], tuple[Any, ...]] = {}
        self._lock = threading.Lock()

    def _bind(self, x: np.ndarray) -> tuple[Any, ...]:
        """Fixed device buffers for this shape (output shapes from one run without a
        graph) and the run options naming its graph."""
        outs = self.session.run(self.names, {INPUT: x}, _run_options(-1))
        x_val = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(x), self.device,
                                                 self.device_id)
        out_vals = [ort.OrtValue.ortvalue_from_shape_and_type(o.shape, o.dtype.type,
                                                              self.device, self.device_id)
                    for o in outs]
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(INPUT, x_val)
        for name, val in zip(self.names, out_vals):
            binding.bind_ortvalue_output(name, val)
        log.debug("CUDA graph %d for input %s", len(self._slots) + 1, x.shape)
        return x_val, binding, out_vals, _run_options(len(self._slots) + 1)

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        with self._lock:
            slot = self._slots.get(x.shape)
            if self.refused or (slot is None and len(self._slots) >= self.max_graphs):
                return self.fallback(x)
            try:
                if slot is None:
                    slot = self._slots[x.shape] = self._bind(x)
                x_val, binding, out_vals, opts = slot
                x_val.update_inplace(np.ascontiguousarray(x))
                self.session.run_with_iobinding(binding, opts)
                return [v.numpy() for v in out_vals]
            except Exception as exc:  # noqa: BLE001 - any refusal: run without graphs
                log.warning("CUDA graphs refused (%s); running without them", first_line(exc))
                self.refused, self._slots = True, {}
                return self.fallback(x)


class TensorrtWatch:
    """Around a TensorRT session's runner: the first run of each input shape builds a
    TensorRT engine, which can take minutes (cached under CAMLOC_HOME afterwards): say
    so before, and how long it took after. If that run fails, ``fallback()`` gives the
    runner to use instead (the engine's CUDA session), once, with one log line."""

    def __init__(self, runner: Runner, fallback: Callable[[], Runner]):
        self.runner, self._fallback = runner, fallback
        self.fell_back = False
        self._seen: set[tuple[int, ...]] = set()
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        if self.fell_back or x.shape in self._seen:
            return self.runner(x)
        with self._lock:  # other workers wait for the build instead of starting another
            if self.fell_back or x.shape in self._seen:
                return self.runner(x)
            log.warning("building the TensorRT engine for input %s: the first run can take "
                        "minutes (cached for the next runs)", "x".join(map(str, x.shape)))
            t0 = time.perf_counter()
            try:
                out = self.runner(x)
            except Exception as exc:  # noqa: BLE001 - a failed build: CUDA instead
                log.warning("TensorRT engine build failed (%s); falling back to CUDA",
                            first_line(exc))
                self.runner, self.fell_back = self._fallback(), True
                return self.runner(x)
            log.warning("TensorRT engine ready in %.1f s", time.perf_counter() - t0)
            self._seen.add(x.shape)
            return out

"""Choose ONNX Runtime execution providers for a device name.

``auto`` tries TensorRT, then CUDA (each only when an NVIDIA GPU is present and
its libraries can load), then OpenVINO, CoreML and DirectML when their builds
are installed, and always ends with the CPU. An explicit device that the
installed onnxruntime cannot provide, or that the session silently dropped, is
a :class:`DeviceError`, never a quiet CPU run.

The planning is pure (``plan_providers``) so it can be tested without hardware.
"""

from __future__ import annotations

import ctypes.util
import glob
import logging
import os
import shutil
from typing import Any

import onnxruntime as ort

from realtime.errors import DeviceError, OptionError
from realtime.model.paths import tensorrt_cache

__all__ = ["DEVICES", "PROVIDER_OF", "check_granted", "expected_provider", "gpu_present",
           "parallelism", "parse_device", "plan_providers", "preload_cuda", "tensorrt_present",
           "without_tensorrt"]

log = logging.getLogger(__name__)

PROVIDER_OF = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "tensorrt", "tensorrt:N", "openvino", "coreml",
           "directml")
_NVIDIA = ("tensorrt", "cuda")
_AUTO_ORDER = ("tensorrt", "cuda", "openvino", "coreml", "directml")

Provider = str | tuple[str, dict[str, Any]]


def parse_device(device: str) -> tuple[str, int]:
    """Split ``"cuda:1"`` into ``("cuda", 1)``; raise OptionError (a ValueError) for
    unknown names."""
    if not isinstance(device, str):
        raise TypeError(f"device must be a string, got {type(device).__name__}")
    name, _, index = device.strip().lower().partition(":")
    ok = name == "auto" or name in PROVIDER_OF
    if ok and index:
        ok = name in _NVIDIA and index.isdigit()
    if not ok:
        raise OptionError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}")
    return name, int(index or 0)


def gpu_present() -> bool:
    """True when an NVIDIA GPU and its driver are visible (cheap: no CUDA init)."""
    if glob.glob("/dev/nvidia[0-9]*") or glob.glob("/proc/driver/nvidia/gpus/*"):
        return True
    if os.name == "nt":  # no /dev on Windows: the driver ships nvidia-smi
        return shutil.which("nvidia-smi") is not None
    return False


def tensorrt_present() -> bool:
    """True when the TensorRT runtime library (libnvinfer) can be found."""
    if ctypes.util.find_library("nvinfer") or ctypes.util.find_library("nvinfer_10"):
        return True
    try:
        import importlib.util
        return importlib.util.find_spec("tensorrt") is not None
    except (ImportError, ValueError):
        return False


def _options(name: str, index: int) -> Provider:
    provider = PROVIDER_OF[name]
    if name == "tensorrt":
        # Building a TensorRT engine takes minutes: keep engines and timings in the
        # camloc cache (one per model, shape range and GPU), and let TensorRT use FP16.
        cache = str(tensorrt_cache())
        return (provider, {"device_id": index, "trt_engine_cache_enable": True,
                           "trt_engine_cache_path": cache, "trt_timing_cache_enable": True,
                           "trt_timing_cache_path": cache, "trt_fp16_enable": True})
    if name in _NVIDIA:
        return (provider, {"device_id": index})
    return provider


def plan_providers(device: str, available: list[str], gpu: bool, tensorrt: bool
                   ) -> list[Provider]:
    """Providers to ask for, best first, always ending with the CPU.

    ``available`` is ``onnxruntime.get_available_providers()``; ``gpu`` and
    ``tensorrt`` say whether the hardware and TensorRT libraries are there.
    """
    name, index = parse_device(device)
    if name == "auto":
        wanted = [n for n in _AUTO_ORDER if PROVIDER_OF[n] in available
                  and (n not in _NVIDIA or gpu) and (n != "tensorrt" or tensorrt)]
        if "tensorrt" in wanted and "cuda" not in wanted and PROVIDER_OF["cuda"] in available:
            wanted.append("cuda")
        return [_options(n, index) for n in wanted] + [PROVIDER_OF["cpu"]]
    if name == "cpu":
        return [PROVIDER_OF["cpu"]]
    if PROVIDER_OF[name] not in available:
        raise DeviceError(f"device {device!r} needs {PROVIDER_OF[name]}, which this onnxruntime "
                          f"build lacks (it has {', '.join(available)}); install the matching "
                          "onnxruntime package (e.g. onnxruntime-gpu) or use --device auto")
    if name in _NVIDIA and not gpu:
        raise DeviceError(f"device {device!r} needs an NVIDIA GPU and driver, and none is "
                          "visible on this machine; use --device cpu or auto")
    plan = [_options(name, index)]
    if name == "tensorrt" and PROVIDER_OF["cuda"] in available:
        plan.append(_options("cuda", index))  # TensorRT hands unsupported nodes to CUDA
    return plan + [PROVIDER_OF["cpu"]]


def without_tensorrt(plan: list[Provider]) -> list[Provider] | None:
    """The plan minus TensorRT when it has TensorRT followed by CUDA (what to try when
    TensorRT fails to start or to build its engine), else None."""
    names = [p if isinstance(p, str) else p[0] for p in plan]
    if PROVIDER_OF["tensorrt"] not in names or PROVIDER_OF["cuda"] not in names:
        return None
    return [p for p, n in zip(plan, names) if n != PROVIDER_OF["tensorrt"]]


def expected_provider(device: str) -> str:
    """The provider a session for ``device`` will most likely get (the plan's first): a
    guess to open it with; the decision is taken on what it really granted."""
    first = plan_providers(device, ort.get_available_providers(), gpu_present(), False)[0]
    return first if isinstance(first, str) else first[0]


def parallelism(provider: str, threads: int | None = None, workers: int | None = None,
                cores: int | None = None) -> tuple[int, int | None]:
    """(inference workers, ONNX Runtime intra-op threads) for a pipeline whose session
    runs on ``provider`` (what the session granted, e.g. ``CPUExecutionProvider``).

    On the CPU the cores go to whole ``session.run`` calls on consecutive frames
    (up to 4 workers) rather than to every layer split across cores: a layer split
    in two waits at each barrier for its slower half, and with the reader, the
    renderer and the encoder sharing the cores that half is often descheduled
    (docs/PERFORMANCE.md: 2 workers x 1 thread gave 1.2x the model throughput of
    1 x 2 here). On a GPU two workers overlap one frame's preparation with the
    other's inference. Explicit ``threads``/``workers`` are kept as given.
    """
    cores = cores or os.cpu_count() or 1
    on_cpu = provider == PROVIDER_OF["cpu"]
    if workers is None:
        workers = max(1, min(4, cores // (threads or 1))) if on_cpu else 2
    if threads is None and on_cpu:
        threads = max(1, cores // workers)
    return workers, threads


def preload_cuda() -> None:
    """Let onnxruntime find CUDA/cuDNN libraries installed by pip, where it can."""
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception as exc:  # noqa: BLE001 - best effort; the session reports the real failure
        log.debug("onnxruntime.preload_dlls() failed: %s", exc)


def check_granted(device: str, planned: list[Provider], granted: list[str]) -> None:
    """Raise DeviceError when an explicitly requested provider did not make it into the session."""
    name, _ = parse_device(device)
    if name in ("auto", "cpu"):
        return
    first = planned[0] if isinstance(planned[0], str) else planned[0][0]
    if first not in granted:
        raise DeviceError(f"device {device!r} was requested but onnxruntime could not start "
                          f"{first} (running: {', '.join(granted)}); check the GPU driver and "
                          "CUDA/TensorRT libraries, or use --device auto")

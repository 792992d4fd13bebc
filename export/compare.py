"""A quantized or FP16 variant against its FP32 model: top-1 agreement (on every frame,
and on the frames FP32 is sure of), correlation of the top class's CAMs, IoU of the boxes
those CAMs give, the CAM identity, and speed (interleaved runs)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from realtime.model.accuracy import iou
from realtime.model.boxes import boxes_from_cam
from realtime.model.cam import softmax
from realtime.model.format import FRAME_OUTPUTS, INPUT, WEIGHT_OUTPUTS

__all__ = ["CONFIDENT_PROB", "Comparison", "compare", "open_session", "run_all", "speed_ratio"]

# FP32 is "sure" of a frame when its top-1 probability reaches this: a top-1 flip between
# two classes FP32 itself rates near 0.1 says nothing about the quantization
CONFIDENT_PROB = 0.5


def open_session(path: Path, threads: int = 0):
    """A CPU ONNX Runtime session on ``path``, fully optimised, quiet; ``threads`` intra-op
    threads (0: ONNX Runtime's default, one per core)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def run_all(session, tensors: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(logits, features) of each tensor (batch 1), as float32 without the batch axis."""
    logits, feats = [], []
    for x in tensors:
        lo, fe = session.run(list(FRAME_OUTPUTS), {INPUT: x})
        logits.append(lo[0].astype(np.float32))
        feats.append(fe[0].astype(np.float32))
    return logits, feats


def _weights(session, stride: int) -> tuple[np.ndarray, np.ndarray]:
    w, b = session.run(list(WEIGHT_OUTPUTS), {INPUT: np.zeros((1, 3, stride, stride), np.float32)})
    return np.asarray(w, np.float32), np.asarray(b, np.float32)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float(np.allclose(a, b))


def _box_iou(cam32: np.ndarray, camq: np.ndarray) -> float:
    """IoU of the first (strongest) box of two CAMs of the same class, the runtime's
    default box rule; 1 when neither map has a box, 0 when only one has."""
    b32, _ = boxes_from_cam(np.maximum(cam32, 0))
    bq, _ = boxes_from_cam(np.maximum(camq, 0))
    if not len(b32) or not len(bq):
        return float(len(b32) == len(bq))
    return iou(b32[0], bq[0])


@dataclass
class Comparison:
    """How a variant's outputs differ from its FP32 model's on the same tensors."""

    agreement: float
    cam_corr: float
    cam_corr_min: float
    identity_err: float
    disagree: list[int]
    confident: int = 0                      # frames whose FP32 top-1 prob >= CONFIDENT_PROB
    agreement_confident: float | None = None  # top-1 agreement on those (None: no such frame)
    box_iou: float = 0.0                    # mean IoU of the top class's box, variant vs FP32
    box_iou_min: float = 0.0


def compare(fp32: Path | object, variant: Path | object, tensors: list[np.ndarray], stride: int,
            reference: tuple[list[np.ndarray], list[np.ndarray]] | None = None,
            outputs: tuple[list[np.ndarray], list[np.ndarray]] | None = None) -> Comparison:
    """Top-1 agreement and CAM correlation of ``variant`` against ``fp32`` on ``tensors``.

    Either argument may be a path or an open session; ``reference`` (FP32 logits and
    features) skips running the FP32 model again, ``outputs`` (the variant's, from
    ``run_all``) the variant."""
    s32 = open_session(fp32) if isinstance(fp32, (str, Path)) else fp32
    sq = open_session(variant) if isinstance(variant, (str, Path)) else variant
    lo32, fe32 = reference if reference is not None else run_all(s32, tensors)
    w32, _ = _weights(s32, stride)
    loq, feq = outputs if outputs is not None else run_all(sq, tensors)
    wq, bq = _weights(sq, stride)
    top32 = [int(np.argmax(v)) for v in lo32]
    sure = [i for i, v in enumerate(lo32) if float(softmax(v).max()) >= CONFIDENT_PROB]
    disagree = [i for i, v in enumerate(loq) if int(np.argmax(v)) != top32[i]]
    cams = [(np.tensordot(w32[c], f32, axes=(0, 0)), np.tensordot(wq[c], fq, axes=(0, 0)))
            for c, f32, fq in zip(top32, fe32, feq)]
    corrs = [_corr(a, b) for a, b in cams]
    ious = [_box_iou(a, b) for a, b in cams]
    ident = max(float(np.max(np.abs(f.mean(axis=(1, 2)) @ wq.T + bq - lo))
                      / max(float(np.max(np.abs(lo))), 1e-12)) for f, lo in zip(feq, loq))
    sure_agree = (1 - len(set(sure) & set(disagree)) / len(sure)) if sure else None
    return Comparison(1 - len(disagree) / len(tensors), float(np.mean(corrs)),
                      float(np.min(corrs)), ident, disagree, len(sure), sure_agree,
                      float(np.mean(ious)), float(np.min(ious)))


def speed_ratio(fp32: Path, variant: Path, x: np.ndarray, runs: int = 30
                ) -> tuple[float, float, float]:
    """(fp32 median ms, variant median ms, fp32/variant), runs interleaved so both see
    the same machine load; warm-up excluded. One intra-op thread: how the runtime runs
    each of its workers on a CPU of up to 4 cores (one worker per core), and a ratio
    that other processes on the machine disturb least."""
    s32, sq = open_session(fp32, 1), open_session(variant, 1)
    for s in (s32, sq, s32, sq, s32, sq):
        s.run(list(FRAME_OUTPUTS), {INPUT: x})
    t32, tq = [], []
    for _ in range(runs):
        for s, acc in ((s32, t32), (sq, tq)):
            t0 = time.perf_counter()
            s.run(list(FRAME_OUTPUTS), {INPUT: x})
            acc.append((time.perf_counter() - t0) * 1e3)
    a, b = statistics.median(t32), statistics.median(tq)
    return a, b, a / b

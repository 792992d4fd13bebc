"""PyTorch GAP-CNN -> one self-contained, self-verifying .onnx file.

The file has input ``images`` (float32 N x 3 x H x W, N/H/W dynamic), outputs
``logits``, ``features`` (what the global pooling consumes), ``cam_weight`` and
``cam_bias`` (the classifier, constant), the in-graph top-k scores, class ids and
CAMs (export/incam.py) and ``camloc.*`` metadata: labels,
normalisation, colour order, native size, stride, architecture, weight source
(see docs/DESIGN.md). It is written to a temporary file beside the target,
verified, and only then moved into place, so a failed export leaves nothing.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.zoo import ZooModel, load_model
from realtime.errors import CamlocError
from realtime.model.format import (
    BACKGROUND_LABEL,
    CAM_BIAS,
    CAM_WEIGHT,
    FORMAT,
    FRAME_OUTPUTS,
    INPUT,
    LOGITS,
    OUTPUTS,
    PRODUCER,
    ModelInfo,
    to_metadata,
)
from realtime.model.paths import cache_path

from .atomic import atomic_output, check_writable
from .gap import GapHead, find_gap_head
from .incam import INCAM_TOLERANCE, add_incam_file, incam_error
from .photos import real_photos

__all__ = ["ExportError", "ExportReport", "default_output", "export_model", "export_zoo_model",
           "write_onnx", "TOLERANCE"]

log = logging.getLogger(__name__)

TOLERANCE = 1e-4  # relative error allowed between ONNX Runtime and PyTorch, FP32


class ExportError(CamlocError, RuntimeError):
    """The export cannot be made as asked (no output path for random weights) or its
    ONNX Runtime output differs from PyTorch's; nothing was left at the output path."""


@dataclass
class ExportReport:
    """What was written and how well it matched PyTorch."""

    path: Path
    arch: str
    weights: str
    num_classes: int
    channels: int
    stride: int
    input_size: tuple[int, int]
    size_bytes: int = 0
    checks: dict[str, float] = field(default_factory=dict)  # name -> relative error
    top1: dict[str, tuple[str, float]] = field(default_factory=dict)  # photo -> (label, p)

    def summary(self) -> str:
        lines = [f"exported {self.arch} ({self.weights}) -> {self.path} "
                 f"[{self.size_bytes / 1e6:.1f} MB, {self.num_classes} classes, "
                 f"features {self.channels} ch at stride {self.stride}, native "
                 f"{self.input_size[0]}x{self.input_size[1]}]"]
        for name, err in self.checks.items():
            lines.append(f"  check {name:<28} rel. error {err:.2e}  ok (< {TOLERANCE:g})")
        for photo, (label, p) in self.top1.items():
            lines.append(f"  top-1 on {photo:<12} {label} ({p:.2f})")
        return "\n".join(lines)


class _CamExport(nn.Module):
    """(images) -> logits, features. The classifier constants are added as graph
    outputs afterwards (``_add_classifier_outputs``) so they are stored once."""

    def __init__(self, head: GapHead):
        super().__init__()
        self.body = head.module
        self.linear = head.linear

    def forward(self, images):
        return self.body(images)


def default_output(name: str) -> Path:
    """Where the runtime looks for zoo model ``name`` (``$CAMLOC_HOME/models``)."""
    return cache_path(name)


def _prepare(photo: np.ndarray, size: tuple[int, int], zm: ZooModel) -> np.ndarray:
    import cv2

    rgb = cv2.resize(photo, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    if zm.color == "BGR":
        rgb = rgb[..., ::-1]
    x = (rgb.astype(np.float32) - np.float32(zm.mean)) / np.float32(zm.std)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def _rel_err(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(got.astype(np.float64) - want)) / max(np.max(np.abs(want)), 1e-12))


def export_zoo_model(model: str = "efficientnet_lite0", output: str | Path | None = None,
                     weights: str | None = "DEFAULT", checkpoint: str | Path | None = None,
                     labels: list[str] | None = None, opset: int = 17) -> ExportReport:
    """Build zoo model ``model`` and write it as a verified .onnx (see ``write_onnx``)."""
    if output is None:
        if weights is None or checkpoint is not None:
            raise ExportError("--output is needed for random weights or a checkpoint "
                              "(the cache holds only the pretrained zoo models)")
        output = default_output(model)
    output = Path(output)
    check_writable(output)
    zm = load_model(model, weights=weights, checkpoint=checkpoint, labels=labels)
    return write_onnx(zm, output, opset=opset)


export_model = export_zoo_model  # the name docs/DESIGN.md promises


def write_onnx(zm: ZooModel, output: str | Path, opset: int = 17) -> ExportReport:
    """Export ``zm`` to ``output`` and verify it; raise ExportError on any failure."""
    output = Path(output)
    check_writable(output)
    head = find_gap_head(zm.module)
    wrapper = _CamExport(head).eval()
    size = zm.input_size
    dummy = torch.from_numpy(_prepare(real_photos()["cat"], size, zm))[None]
    with torch.no_grad():
        _, feats = wrapper(dummy)
    stride = int(round(size[0] / feats.shape[2]))

    logits_name, features_name = FRAME_OUTPUTS
    with atomic_output(output) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper, (dummy,), str(tmp), input_names=[INPUT], output_names=list(FRAME_OUTPUTS),
                dynamic_axes={INPUT: {0: "N", 2: "H", 3: "W"}, logits_name: {0: "N"},
                              features_name: {0: "N", 2: "h", 3: "w"}},
                opset_version=opset, dynamo=False)
        report = ExportReport(output, zm.arch, zm.weights, len(zm.labels), int(feats.shape[1]),
                              stride, size)
        _add_classifier_outputs(tmp, head.linear)
        topk_max = add_incam_file(tmp)
        _add_metadata(tmp, model_info(zm, stride, output, topk_max))
        _verify(tmp, wrapper, zm, report)
    report.size_bytes = output.stat().st_size
    log.debug(report.summary())
    return report


def _add_classifier_outputs(path: Path, linear: nn.Linear) -> None:
    """Expose the classifier as outputs ``cam_weight`` [K, C] and ``cam_bias`` [K].

    When the exported ``Gemm`` that makes the logits holds them as initializers
    (the usual case) the outputs are Identity views of those, so the weights are
    stored once; otherwise they are added as new initializers.
    """
    import onnx
    from onnx import helper, numpy_helper

    proto = onnx.load(str(path))
    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    weight = linear.weight.detach().numpy()
    bias = (linear.bias.detach().numpy() if linear.bias is not None
            else np.zeros(weight.shape[0], np.float32))
    sources = {}
    gemm = next((n for n in graph.node if LOGITS in n.output and n.op_type == "Gemm"), None)
    if gemm is not None and len(gemm.input) == 3:
        trans_b = next((a.i for a in gemm.attribute if a.name == "transB"), 0)
        b_init, c_init = inits.get(gemm.input[1]), inits.get(gemm.input[2])
        if (trans_b == 1 and b_init is not None and c_init is not None
                and np.array_equal(numpy_helper.to_array(b_init), weight)
                and np.array_equal(numpy_helper.to_array(c_init), bias)):
            sources = {CAM_WEIGHT: b_init.name, CAM_BIAS: c_init.name}
    for out, value in ((CAM_WEIGHT, weight), (CAM_BIAS, bias)):
        if out not in sources:
            graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), f"{out}_value"))
            sources[out] = f"{out}_value"
        graph.node.append(helper.make_node("Identity", [sources[out]], [out], name=f"{out}_output"))
        graph.output.append(helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, list(value.shape)))
    onnx.save(proto, str(path))


def model_info(zm: ZooModel, stride: int, path: Path | str = "", topk_max: int = 0
               ) -> ModelInfo:
    """What the runtime will read back from the FP32 export of ``zm`` (``topk_max``: the
    classes its in-graph CAMs cover, 0 for none); a class named ``background`` (a trained
    folder's) is marked so its frames yield no detections."""
    background = zm.labels.index(BACKGROUND_LABEL) if BACKGROUND_LABEL in zm.labels else None
    return ModelInfo(path=str(path), arch=zm.arch, weights=zm.weights, labels=tuple(zm.labels),
                     color=zm.color, mean=tuple(zm.mean), std=tuple(zm.std),
                     input_size=tuple(zm.input_size), stride=stride, precision="fp32",
                     format=FORMAT, topk_max=topk_max, background=background)


def _add_metadata(path: Path, info: ModelInfo) -> None:
    import onnx

    from .graph import write_metadata

    proto = onnx.load(str(path))
    write_metadata(proto, to_metadata(info))
    assert proto.producer_name == PRODUCER
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _verify(path: Path, wrapper: nn.Module, zm: ZooModel, report: ExportReport) -> None:
    """ONNX Runtime vs PyTorch on real photos, and GAP(features) . W^T + b == logits."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    photos = real_photos()
    native = np.stack([_prepare(p, zm.input_size, zm) for p in photos.values()])
    h, w = (s // report.stride * report.stride for s in (192, 320))
    other = np.stack([_prepare(p, (h, w), zm) for p in list(photos.values())[:2]])
    for tag, batch in ((f"native {zm.input_size[0]}x{zm.input_size[1]}, N={len(native)}", native),
                       (f"{h}x{w}, N={len(other)}", other)):
        with torch.no_grad():
            want = [t.numpy() for t in wrapper(torch.from_numpy(batch))]
        logits, feats, weight, bias = session.run(list(OUTPUTS), {INPUT: batch})
        checks = {
            f"logits vs torch ({tag})": _rel_err(logits, want[0]),
            f"features vs torch ({tag})": _rel_err(feats, want[1]),
            f"CAM identity ({tag})": _rel_err(feats.mean(axis=(2, 3)) @ weight.T + bias, logits),
        }
        for name, err in checks.items():
            if not err < TOLERANCE:
                raise ExportError(f"verification failed: {name} relative error {err:.2e} >= {TOLERANCE:g}")
        incam = incam_error(session, batch)  # in-graph top-k and CAMs vs realtime.model.cam
        if not incam < INCAM_TOLERANCE:
            raise ExportError(f"verification failed: in-graph CAMs ({tag}) differ from numpy by "
                              f"{incam:.2e} >= {INCAM_TOLERANCE:g}")
        checks[f"in-graph CAMs vs numpy ({tag})"] = incam
        report.checks.update(checks)
        if batch is native:
            probs = np.exp(logits - logits.max(1, keepdims=True))
            probs /= probs.sum(1, keepdims=True)
            for name, row in zip(photos, probs):
                report.top1[name] = (zm.labels[int(row.argmax())], float(row.max()))

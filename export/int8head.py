"""The INT8 model's classifier head: per-class INT8 weight, dequantized once, read by
both the Gemm that makes ``logits`` and the ``cam_weight`` output (export/quantize.py)."""

from __future__ import annotations

import numpy as np

from realtime.model.format import CAM_BIAS, CAM_WEIGHT, LOGITS

__all__ = ["int8_classifier_weight"]


def int8_classifier_weight(proto) -> None:
    """Store the classifier weight as per-class INT8 + one DequantizeLinear (weight-only).

    The Gemm that makes ``logits`` and the ``cam_weight`` output then both read the
    dequantized tensor (stored once), so the CAM identity stays exact and the
    runtime's CAMs use the very weight the logits use. The optimisation pass may have
    turned the ``cam_weight``/``cam_bias`` Identity outputs into copies of the
    initializers; those copies are dropped here.
    """
    import onnx
    from onnx import helper, numpy_helper

    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    gemm = next((n for n in graph.node if n.op_type == "Gemm" and LOGITS in n.output), None)
    if gemm is None or len(gemm.input) != 3 or gemm.input[1] not in inits \
            or gemm.input[2] not in inits \
            or next((a.i for a in gemm.attribute if a.name == "transB"), 0) != 1:
        return  # an unusual head: leave the float classifier outputs as they are
    name, bias_name = gemm.input[1], gemm.input[2]
    w = numpy_helper.to_array(inits[name]).astype(np.float32)

    def source_of(out: str) -> np.ndarray | None:
        if out in inits:
            return numpy_helper.to_array(inits[out])
        node = next((n for n in graph.node if out in n.output), None)
        if node is not None and node.op_type == "Identity" and node.input[0] in inits:
            return numpy_helper.to_array(inits[node.input[0]])
        return None

    cw, cb = source_of(CAM_WEIGHT), source_of(CAM_BIAS)
    if cw is None or cb is None or not np.array_equal(cw, w) \
            or not np.array_equal(cb, numpy_helper.to_array(inits[bias_name])):
        return
    for out in (CAM_WEIGHT, CAM_BIAS):
        if out in inits:
            graph.initializer.remove(inits[out])
        for node in [n for n in graph.node if out in n.output]:
            graph.node.remove(node)
    scale = np.maximum(np.abs(w).max(axis=1), 1e-12) / 127.0
    q = np.clip(np.round(w / scale[:, None]), -127, 127).astype(np.int8)
    graph.initializer.remove(inits[name])
    graph.initializer.extend([numpy_helper.from_array(q, f"{name}_int8"),
                              numpy_helper.from_array(scale.astype(np.float32), f"{name}_scale"),
                              numpy_helper.from_array(np.zeros(len(scale), np.int8),
                                                      f"{name}_zero")])
    deq = f"{name}_dequantized"
    gemm.input[1] = deq
    graph.node.insert(0, helper.make_node(
        "DequantizeLinear", [f"{name}_int8", f"{name}_scale", f"{name}_zero"], [deq],
        name="cam_weight_dequantize", axis=0))
    # right after the dequantization: the in-graph CAMs (export/incam.py) read cam_weight
    graph.node.insert(1, helper.make_node("Identity", [deq], [CAM_WEIGHT],
                                          name="cam_weight_output"))
    graph.node.insert(2, helper.make_node("Identity", [bias_name], [CAM_BIAS],
                                          name="cam_bias_output"))
    onnx.checker.check_model(proto)

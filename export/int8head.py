"""The INT8 model's classifier head: the FP32 weight, stored once, read by both the Gemm
that makes ``logits`` and the ``cam_weight`` output (export/quantize.py).

The head's weight was stored as per-class INT8 with a DequantizeLinear until wave 4: the
file was 3.6x smaller than FP32 instead of 2.1x, but ONNX Runtime does not fold a
DequantizeLinear into a constant, so every frame dequantized the 1000x1280 weight and
copied it to ``cam_weight``: 1.5 ms of 16 ms per 256x448 frame (docs/EDGE.md).
"""

from __future__ import annotations

import numpy as np

from realtime.model.format import CAM_BIAS, CAM_WEIGHT, LOGITS

__all__ = ["float_classifier_weight"]


def float_classifier_weight(proto) -> bool:
    """Make ``cam_weight`` / ``cam_bias`` Identities of the Gemm's own float initializers.

    The optimisation pass may have turned the ``cam_weight``/``cam_bias`` Identity outputs
    into copies of the initializers (the weight stored twice); the copies are dropped,
    so the file holds the weight once, ONNX Runtime folds the Identities when it loads
    the file (nothing runs per frame), and the CAMs use the very weight the logits use.
    Returns False (and changes nothing) for an unusual head.
    """
    import onnx
    from onnx import helper, numpy_helper

    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    gemm = next((n for n in graph.node if n.op_type == "Gemm" and LOGITS in n.output), None)
    if gemm is None or len(gemm.input) != 3 or gemm.input[1] not in inits \
            or gemm.input[2] not in inits \
            or next((a.i for a in gemm.attribute if a.name == "transB"), 0) != 1:
        return False
    pairs = ((CAM_WEIGHT, gemm.input[1]), (CAM_BIAS, gemm.input[2]))

    def source_of(out: str):
        if out in inits:
            return numpy_helper.to_array(inits[out])
        node = next((n for n in graph.node if out in n.output), None)
        if node is not None and node.op_type == "Identity" and node.input[0] in inits:
            return numpy_helper.to_array(inits[node.input[0]])
        return None

    for out, name in pairs:
        src = source_of(out)
        if src is None or not np.array_equal(src, numpy_helper.to_array(inits[name])):
            return False
    for k, (out, name) in enumerate(pairs):
        if out in inits:
            graph.initializer.remove(inits[out])
        for node in [n for n in graph.node if out in n.output]:
            graph.node.remove(node)
        # first in the graph: the in-graph CAMs (export/incam.py) read cam_weight
        graph.node.insert(k, helper.make_node("Identity", [name], [out], name=f"{out}_output"))
    onnx.checker.check_model(proto)
    return True

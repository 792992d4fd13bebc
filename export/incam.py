"""CAMs inside the graph: softmax, top-k and the selected classes' normalised CAMs as
extra outputs of a camloc .onnx, so a GPU never copies the features back to the host.

Appended after ``logits``, ``features`` and ``cam_weight`` (all kept)::

    topk_scores, topk_ids = TopK(Softmax(logits), k_max)          # [N, k], best first
    w = Gather(cam_weight, topk_ids)                               # [N, k, C]
    r = Relu(MatMul(w, Reshape(features, [N, C, h*w])))            # [N, k, h*w]
    cams = Reshape(r / Max(ReduceMax(r, axis 2), eps), [N, k, h, w])

which is ``realtime.model.cam``'s ``softmax``, ``top_k``, ``compute_cams`` and
``normalize_cams(..., "max")`` (same epsilon; ONNX TopK also puts the lower index
first on ties). At 448x256 the features are 1280 x 8 x 14 floats (0.6 MB) per frame;
these outputs are ``k_max`` x (8 x 14 + 2) floats. ``k_max`` is recorded in the
metadata (``camloc.topk_max``); the runtime slices the ``topk`` it wants.
Everything here is downstream of ``features``, so the FP16 and INT8 variants keep
it in float32 as part of the classifier head (export/graph.py ``head_nodes``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from realtime.model.cam import CAM_EPS, compute_cams, normalize_cams, softmax
from realtime.model.format import (
    CAM_WEIGHT,
    CAMS,
    DEFAULT_TOPK_MAX,
    FEATURES,
    INCAM_OUTPUTS,
    INPUT,
    KEY_TOPK_MAX,
    LOGITS,
    TOPK_IDS,
    TOPK_SCORES,
)

__all__ = ["INCAM_TOLERANCE", "add_incam", "add_incam_file", "incam_error"]

INCAM_TOLERANCE = 1e-5  # max abs difference of scores and CAMs vs realtime.model.cam


def _opset(proto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def add_incam(proto, topk_max: int = DEFAULT_TOPK_MAX) -> int:
    """Append the in-graph CAM nodes and outputs to ``proto`` (in place) and record
    ``camloc.topk_max``; returns the k used (``topk_max`` capped at the class count)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    if any(o.name in INCAM_OUTPUTS for o in graph.output):
        raise ValueError("the model already has in-graph CAM outputs")
    shapes = {o.name: o.type.tensor_type.shape for o in graph.output}
    k_classes = shapes[CAM_WEIGHT].dim[0].dim_value
    k = min(int(topk_max), k_classes) if k_classes else int(topk_max)
    if k < 1:
        raise ValueError(f"topk_max must be >= 1, got {topk_max}")
    p = "incam_"  # prefix of every name added here
    consts = {"k": np.array([k], np.int64), "flat": np.array([0, 0, -1], np.int64),
              "hw_idx": np.array([2, 3], np.int64), "eps": np.array(CAM_EPS, np.float32)}
    if _opset(proto) >= 18:  # ReduceMax takes its axes as an input from opset 18, which
        # onnxruntime's symbolic shape inference (INT8 pre-processing) cannot follow:
        # the largest value along the last axis as TopK k=1 instead (the same number)
        consts["one"] = np.array([1], np.int64)
        reduce_max = helper.make_node("TopK", [p + "relu", p + "one"], [p + "hi", p + "hi_at"],
                                      axis=-1, largest=1, sorted=1, name=p + "hi")
    else:
        reduce_max = helper.make_node("ReduceMax", [p + "relu"], [p + "hi"], axes=[2],
                                      keepdims=1, name=p + "hi")
    graph.initializer.extend(numpy_helper.from_array(v, p + n) for n, v in consts.items())
    node = helper.make_node
    graph.node.extend([
        node("Softmax", [LOGITS], [p + "probs"], axis=-1, name=p + "softmax"),
        node("TopK", [p + "probs", p + "k"], [TOPK_SCORES, TOPK_IDS], axis=-1, largest=1,
             sorted=1, name=p + "topk"),
        node("Gather", [CAM_WEIGHT, TOPK_IDS], [p + "w"], axis=0, name=p + "gather"),
        node("Reshape", [FEATURES, p + "flat"], [p + "f"], name=p + "flatten"),
        node("MatMul", [p + "w", p + "f"], [p + "raw"], name=p + "matmul"),
        node("Relu", [p + "raw"], [p + "relu"], name=p + "relu"),
        reduce_max,
        node("Max", [p + "hi", p + "eps"], [p + "den"], name=p + "den"),
        node("Div", [p + "relu", p + "den"], [p + "norm"], name=p + "div"),
        node("Shape", [FEATURES], [p + "fshape"], name=p + "fshape"),
        node("Gather", [p + "fshape", p + "hw_idx"], [p + "hw"], axis=0, name=p + "hw"),
        node("Shape", [TOPK_IDS], [p + "nk"], name=p + "nk"),
        node("Concat", [p + "nk", p + "hw"], [p + "cshape"], axis=0, name=p + "cshape"),
        node("Reshape", [p + "norm", p + "cshape"], [CAMS], name=p + "reshape"),
    ])
    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    graph.output.extend([
        helper.make_tensor_value_info(TOPK_SCORES, f32, ["N", k]),
        helper.make_tensor_value_info(TOPK_IDS, i64, ["N", k]),
        helper.make_tensor_value_info(CAMS, f32, ["N", k, "h", "w"]),
    ])
    for prop in [m for m in proto.metadata_props if m.key == KEY_TOPK_MAX]:
        proto.metadata_props.remove(prop)
    proto.metadata_props.add(key=KEY_TOPK_MAX, value=str(k))
    return k


def add_incam_file(path: str | Path, topk_max: int = DEFAULT_TOPK_MAX) -> int:
    """``add_incam`` on a file, checked and saved in place."""
    import onnx

    proto = onnx.load(str(path))
    k = add_incam(proto, topk_max)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return k


def incam_error(session, batch: np.ndarray) -> float:
    """Largest absolute difference between the in-graph scores/CAMs of ``session`` and
    realtime.model.cam's numpy ones from the same run's logits and features, for the graph's
    class ids; inf when those are not a top-k of the numpy softmax (up to ties within
    ``INCAM_TOLERANCE``, as random weights give)."""
    names = [LOGITS, FEATURES, CAM_WEIGHT, *INCAM_OUTPUTS]
    logits, feats, weight, scores, ids, cams = session.run(names, {INPUT: batch})
    worst = 0.0
    for lo, fe, sc, ci, ca in zip(logits, feats, scores, ids, cams):
        probs = softmax(lo.astype(np.float32))
        rest = np.delete(probs, ci)
        if (len(set(ci.tolist())) != len(ci) or np.any(np.diff(probs[ci]) > INCAM_TOLERANCE)
                or (rest.size and rest.max() - probs[ci].min() > INCAM_TOLERANCE)):
            return float("inf")
        ref = normalize_cams(compute_cams(fe.astype(np.float32), weight, ci), "max")
        worst = max(worst, float(np.max(np.abs(probs[ci] - sc))),
                    float(np.max(np.abs(ref - ca))))
    return worst

"""Per-layer sensitivity of an INT8 (QDQ) model: how much closer to FP32 it gets when
one convolution alone runs in float.

From the quantized model, each convolution in turn is "un-quantized" by graph surgery
(no new calibration): its weight becomes the dequantized float tensor and its
activation input skips its QuantizeLinear/DequantizeLinear pair. The model is run on a
few calibration frames and compared with FP32 by the mean KL divergence of the class
probabilities; a layer's sensitivity is the KL it removes. The layers with the largest
sensitivity are the ones worth keeping float (export/quantize.py).
"""

from __future__ import annotations

import copy
import logging

import numpy as np

from realtime.model.cam import softmax
from realtime.model.format import INPUT, LOGITS

__all__ = ["floated", "kl_to_fp32", "layer_sensitivity"]

log = logging.getLogger(__name__)


def floated(proto, node_name: str):
    """A copy of the QDQ model ``proto`` with the named node's inputs in float."""
    from onnx import numpy_helper

    proto = copy.deepcopy(proto)
    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    by_out = {o: n for n in graph.node for o in n.output}
    node = next(n for n in graph.node if n.name == node_name)
    for i, name in enumerate(node.input):
        dq = by_out.get(name)
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        src = dq.input[0]
        if src in inits:  # a weight: store its dequantized values as a float initializer
            q = numpy_helper.to_array(inits[src]).astype(np.float32)
            scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float32)
            zero = (numpy_helper.to_array(inits[dq.input[2]]).astype(np.float32)
                    if len(dq.input) > 2 and dq.input[2] else np.zeros_like(scale))
            shape = [-1] + [1] * (q.ndim - 1) if scale.ndim else []
            w = (q - zero.reshape(shape)) * scale.reshape(shape)
            graph.initializer.append(numpy_helper.from_array(w.astype(np.float32),
                                                             f"{name}_float"))
            node.input[i] = f"{name}_float"
        else:
            q = by_out.get(src)
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[i] = q.input[0]
    return proto


def kl_to_fp32(session, tensors: list[np.ndarray], ref_probs: list[np.ndarray]) -> float:
    """Mean KL(FP32 || variant) of the class probabilities over ``tensors``."""
    out = []
    for x, p in zip(tensors, ref_probs):
        q = softmax(session.run([LOGITS], {INPUT: x})[0][0].astype(np.float64))
        out.append(float(np.sum(p * (np.log(p + 1e-12) - np.log(q + 1e-12)))))
    return float(np.mean(out))


def layer_sensitivity(int8_path, fp32_session, tensors: list[np.ndarray],
                      conv_names: list[str]) -> dict[str, float]:
    """conv name -> KL to FP32 removed by running that conv alone in float (larger:
    more sensitive), measured on ``tensors``."""
    import onnx
    import onnxruntime as ort

    ref = [softmax(fp32_session.run([LOGITS], {INPUT: x})[0][0].astype(np.float64))
           for x in tensors]
    opts = ort.SessionOptions()
    opts.log_severity_level = 3

    def kl_of(proto) -> float:
        s = ort.InferenceSession(proto.SerializeToString(), sess_options=opts,
                                 providers=["CPUExecutionProvider"])
        return kl_to_fp32(s, tensors, ref)

    proto = onnx.load(str(int8_path))
    base = kl_of(proto)
    out = {}
    for name in conv_names:
        out[name] = base - kl_of(floated(proto, name))
        log.debug("sensitivity %s: %.4f", name, out[name])
    return out

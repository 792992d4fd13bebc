"""ONNX graph helpers shared by the INT8 and FP16 variants (export/quantize.py,
export/fp16.py): loading, camloc metadata, the classifier head, convolutions."""

from __future__ import annotations

from pathlib import Path

from realtime.errors import CamlocError
from realtime.model.format import CAM_BIAS, CAM_WEIGHT, FEATURES, PRODUCER

__all__ = ["QuantizeError", "conv_nodes", "float_node_names", "head_nodes", "name_nodes", "load_proto",
           "read_metadata", "write_metadata"]

_HEAD_OPS = ("GlobalAveragePool", "ReduceMean", "Flatten", "Reshape", "Squeeze", "Gemm", "MatMul",
             "Add", "Identity")



class QuantizeError(CamlocError, RuntimeError):
    """The FP16/INT8 variant cannot be made from this model, or it disagrees with FP32
    beyond the limits; nothing was left at the output path."""


def load_proto(path: Path):
    """The ModelProto of the .onnx at ``path``."""
    import onnx

    return onnx.load(str(path))


def read_metadata(proto) -> dict[str, str]:
    """The metadata strings of a ModelProto (the ``camloc.*`` keys among them)."""
    return {p.key: p.value for p in proto.metadata_props}


def write_metadata(proto, meta: dict[str, str]) -> None:
    """Replace the metadata of ``proto`` by ``meta`` (from realtime.model.format) and mark it ours."""
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = PRODUCER


def head_nodes(graph) -> list:
    """Nodes downstream of ``features`` up to ``logits`` (pooling + classifier) and the
    Identity nodes that expose ``cam_weight``/``cam_bias``: kept float."""
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    head, frontier, seen = [], [FEATURES], set()
    while frontier:
        t = frontier.pop()
        for n in consumers.get(t, []):
            if n.name in seen:
                continue
            seen.add(n.name)
            head.append(n)
            frontier.extend(n.output)
    head += [n for n in graph.node if set(n.output) & {CAM_WEIGHT, CAM_BIAS}
             and n.name not in seen]
    return head


def conv_nodes(graph) -> list:
    """Conv nodes in graph (topological) order, up to the one feeding ``features``."""
    return [n for n in graph.node if n.op_type == "Conv"]


def name_nodes(graph) -> int:
    """Give every unnamed node a unique name (``<op>_<index>``); returns how many were named.

    Layers are kept float by node name, and exporters may leave names empty: an empty
    name in the exclusion list would keep every unnamed node float."""
    taken = {n.name for n in graph.node}
    named = 0
    for i, n in enumerate(graph.node):
        if not n.name:
            name, k = f"{n.op_type}_{i}", 0
            while name in taken:
                k += 1
                name = f"{n.op_type}_{i}_{k}"
            n.name = name
            taken.add(name)
            named += 1
    return named


def float_node_names(graph, float_first: int, float_last: int) -> tuple[list[str], list[str]]:
    """(names to exclude from quantisation, a short human description)."""
    convs = conv_nodes(graph)
    keep = [n.name for n in head_nodes(graph)]
    desc = ["classifier head (pooling + Gemm)"]
    if float_first:
        keep += [n.name for n in convs[:float_first]]
        desc.append(f"first {float_first} conv" + ("s" if float_first > 1 else ""))
    if float_last:
        keep += [n.name for n in convs[-float_last:]]
        desc.append(f"last {float_last} conv" + ("s" if float_last > 1 else ""))
    # the activation right after a float conv stays float with it (no Q/DQ in between)
    outs = {o for n in graph.node if n.name in keep and n.op_type == "Conv" for o in n.output}
    keep += [n.name for n in graph.node if n.op_type in ("Clip", "Relu") and n.input[0] in outs]
    if float_first:  # a residual Add among the float convs stays float too: quantizing it
        kept = set(keep)  # would quantize its inputs, so the last float block read INT8 input
        produced = {o: n.name for n in graph.node for o in n.output}
        stop = convs[float_first].name if float_first < len(convs) else None
        for n in graph.node:
            if n.name == stop:
                break
            srcs = [produced[i] for i in n.input if i in produced]
            if n.op_type == "Add" and srcs and all(s in kept for s in srcs):
                kept.add(n.name)
                keep.append(n.name)
    return keep, desc

"""FP16 variant of a camloc .onnx: float16 weights and activations, float32 inputs and
outputs (``onnxruntime.transformers.float16`` with ``keep_io_types``); the classifier
head stays float32 so the CAM identity holds."""

from __future__ import annotations

from pathlib import Path

from realtime.model.format import with_precision

from .graph import QuantizeError, head_nodes, read_metadata, write_metadata

__all__ = ["make_fp16"]


def _drop_cast_pairs(graph) -> None:
    """Remove fp32 -> fp16 -> fp32 Cast round trips the converter puts between float32
    nodes (here: inside the classifier head), which would round pooled features and
    logits to float16 for nothing."""
    from onnx import TensorProto

    def to(n) -> int:
        return next((a.i for a in n.attribute if a.name == "to"), -1)

    producer = {o: n for n in graph.node for o in n.output}
    users: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    outputs = {o.name for o in graph.output}
    drop = []
    for second in graph.node:
        first = producer.get(second.input[0]) if second.op_type == "Cast" else None
        if (first is None or first.op_type != "Cast" or to(first) != TensorProto.FLOAT16
                or to(second) != TensorProto.FLOAT):
            continue
        src = first.input[0]
        producer_src = producer.get(src)
        if producer_src is not None and producer_src.op_type == "Cast":
            continue  # the source itself came from float16: the round trip is a real cast
        if second.output[0] in outputs:  # a graph output keeps its name: Identity instead
            second.op_type = "Identity"
            second.input[0] = src
            del second.attribute[:]
            if all(u is second for u in users.get(first.output[0], [])):
                drop.append(first)
            continue
        for n in users.get(second.output[0], []):
            for k, i in enumerate(n.input):
                if i == second.output[0]:
                    n.input[k] = src
        drop.append(second)
        if all(u is second or u in drop for u in users.get(first.output[0], [])) \
                and first.output[0] not in outputs:
            drop.append(first)
    for n in drop:
        if n in graph.node:
            graph.node.remove(n)


def _drop_duplicate_casts(graph) -> None:
    """Keep one of identical Cast nodes: the converter inserts the same float16 -> float32
    Cast (same name, same output) once per float32 consumer of a float16 tensor, and
    ``features`` has several (pooling, in-graph CAMs), which breaks single assignment."""
    seen, drop = set(), []
    for n in graph.node:
        key = (n.op_type, tuple(n.input), tuple(n.output))
        if n.op_type == "Cast" and key in seen:
            drop.append(n)
        seen.add(key)
    for n in drop:
        graph.node.remove(n)


def _toposort(graph) -> None:
    """Reorder ``graph.node`` so every node comes after the producers of its inputs."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        rest = []
        for n in pending:
            if all(i in ready for i in n.input):
                ordered.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise QuantizeError("fp16 conversion produced a graph with a cycle")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def make_fp16(fp32: Path, out: Path) -> list[str]:
    """Write the FP16 variant of ``fp32`` to ``out``; a description of what stays float."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    proto = onnx.load(str(fp32))
    meta = read_metadata(proto)
    head = [n.name for n in head_nodes(proto.graph)]
    proto = convert_float_to_float16(proto, keep_io_types=True, node_block_list=head)
    _drop_duplicate_casts(proto.graph)
    _drop_cast_pairs(proto.graph)
    _toposort(proto.graph)  # the converter appends its input/output casts at the end
    write_metadata(proto, with_precision(meta, "fp16"))
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    return ["classifier head (pooling + Gemm, float32)"]

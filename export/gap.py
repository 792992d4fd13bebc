"""Find the GAP head of any classifier: the tensor the global average pooling
consumes and the linear layer after it, by tracing the module (torch.fx), not
by a table of layer names.

Walking back from the network's output we accept exactly
``linear <- (dropout | flatten | reshape | identity)* <- global average pool <- F``
and rebuild the traced graph so it returns ``(logits, F)``. Anything else
between the pooling and the classifier (an activation, a LayerNorm, a second
linear layer) means the class score is not a linear function of the pooled
features, so a CAM would not explain it: we refuse, naming the culprit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx
from torch import nn
from torch.nn import functional as F

from realtime.errors import CamlocError, first_line

__all__ = ["GapHead", "NotGapError", "find_gap_head"]


class NotGapError(CamlocError, ValueError):
    """The module has no exact CAM (no linear head right after global average pooling)."""


@dataclass
class GapHead:
    """A traced classifier that returns ``(logits, features)`` plus its linear head."""

    module: fx.GraphModule
    linear: nn.Linear
    linear_name: str
    features_name: str  # the traced node the pooling consumes, for reports


_PASS_MODULES = (nn.Dropout, nn.Identity, nn.Flatten, nn.AlphaDropout)
_PASS_FUNCTIONS = {torch.flatten, F.dropout, torch.reshape, torch.squeeze}
_PASS_METHODS = {"flatten", "view", "reshape", "squeeze", "contiguous"}


def _describe(gm: fx.GraphModule, node: fx.Node) -> str:
    """A human name for a node: the module it belongs to and what it does."""
    stack = node.meta.get("nn_module_stack") or {}
    owner = ""
    if stack:
        path, (_, cls) = list(stack.items())[-1]
        owner = f"{path} ({getattr(cls, '__name__', cls)})"
    if node.op == "call_module":
        cls = type(gm.get_submodule(node.target)).__name__
        return f"{node.target} ({cls})"
    what = getattr(node.target, "__name__", str(node.target))
    return f"{owner}: {what}" if owner else what


def _is_global_avg_pool(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        return isinstance(mod, nn.AdaptiveAvgPool2d) and _is_one(mod.output_size)
    if node.op == "call_function" and node.target is F.adaptive_avg_pool2d:
        size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
        return _is_one(size)
    if (node.op == "call_method" and node.target == "mean") or (
            node.op == "call_function" and node.target is torch.mean):
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        dims = tuple(dims) if isinstance(dims, (list, tuple)) else (dims,)
        return sorted(dims) in ([2, 3], [-2, -1])
    return False


def _is_one(size) -> bool:
    if isinstance(size, (list, tuple)):
        return all(s == 1 for s in size)
    return size == 1


def _passes_through(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(gm.get_submodule(node.target), _PASS_MODULES)
    if node.op == "call_function":
        return node.target in _PASS_FUNCTIONS
    if node.op == "call_method":
        return node.target in _PASS_METHODS
    return False


def _first_input(node: fx.Node) -> fx.Node:
    for arg in node.args:
        if isinstance(arg, fx.Node):
            return arg
    raise NotGapError(f"cannot follow the graph through {node.name}")


def find_gap_head(model: nn.Module) -> GapHead:
    """Trace ``model`` and return a module computing ``(logits, features)``.

    Raises ``NotGapError`` with a one-line reason when the head is not
    ``global average pooling -> linear``.
    """
    name = type(model).__name__
    model = model.eval()
    try:
        gm = fx.symbolic_trace(model)
    except Exception as exc:  # noqa: BLE001 - fx raises many kinds
        first = first_line(exc)
        raise NotGapError(f"{name} cannot be traced to find its pooling and classifier ({first})") from exc

    output = next(n for n in gm.graph.nodes if n.op == "output")
    node = output.args[0]
    if not isinstance(node, fx.Node):
        raise NotGapError(f"{name} returns {type(node).__name__}, not one logits tensor")
    if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), nn.Linear):
        raise NotGapError(f"{name} has no linear classifier at its end (it ends in {_describe(gm, node)})")
    linear_node = node
    linear = gm.get_submodule(linear_node.target)

    if not any(_is_global_avg_pool(gm, n) for n in gm.graph.nodes):
        raise NotGapError(f"{name} has no exact CAM: no global average pooling of a feature map "
                          f"feeds its classifier {linear_node.target}")
    node = _first_input(linear_node)
    while not _is_global_avg_pool(gm, node):
        if not _passes_through(gm, node):
            raise NotGapError(f"{name} has no exact CAM: the head after global average pooling is not "
                              f"linear ({_describe(gm, node)} before the classifier {linear_node.target})")
        node = _first_input(node)
    features = _first_input(node)

    output.args = ((linear_node, features),)
    gm.graph.lint()
    gm.recompile()
    return GapHead(gm, linear, str(linear_node.target), features.name)

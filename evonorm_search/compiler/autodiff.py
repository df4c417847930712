"""Pass 1, autodiff: the forward and backward Programs of a layer, from the derivative rules of `op_table`.

The backward of a layer is again element-wise ops and aggregations (an aggregation's rule returns
aggregations over the same axis), so it goes through the same scheduler and code generator as the
forward. The module's affine `y = out * weight + bias` is part of both programs, so `weight` and
`bias` get their gradients like `v0`/`v1`: as per-channel sums of their full-shape gradients.

In eval mode a `batch` aggregation reads its running estimate and passes no gradient, exactly as
the reference module's autograd does.
"""

from __future__ import annotations

import sys

from ..ir import AXES, OPS, Graph, GraphBuilder
from ..ir.graph import Ref
from ..ir.vocabulary import Kind, LeafRole
from .op_table import DERIVATIVES
from .program import Program


class GradBuilder:
    """What derivative rules build with (`b` in `op_table.DERIVATIVES`): constants and calls as `Ref`s."""

    def __init__(self, builder: GraphBuilder):
        self.builder = builder

    def const(self, value: float) -> Ref:
        return self.builder.ref(self.builder.const(value))

    def call(self, op: str, *args: Ref | int, axis: str | None = None) -> Ref:
        return self.builder.call(op, *args, axis=axis)


def _layer(graph: Graph, affine: bool) -> tuple[GraphBuilder, list[int], Ref, Ref]:
    """A builder holding the layer graph (node i of the graph is node i of the program) and its output."""
    # No node limit: the graph was bounded when it was built; its programs are a few times its size.
    b = GraphBuilder(max_nodes=sys.maxsize)
    remap = b.copy_graph(graph)
    assert remap == list(range(len(graph.nodes))), "a canonical graph copies onto itself"
    out = b.ref(remap[graph.output])
    y = out * b.ref(b.leaf("weight")) + b.ref(b.leaf("bias")) if affine else out
    return b, remap, out, y


def forward_program(graph: Graph, *, affine: bool) -> Program:
    b, _, _, y = _layer(graph, affine)
    return Program(tuple(b.nodes), (("y", y.index),), ())


def _accumulate(grads: dict[int, Ref], index: int, contribution: Ref | None) -> None:
    if contribution is None:
        return
    grads[index] = grads[index] + contribution if index in grads else contribution


def backward_program(graph: Graph, *, training: bool, affine: bool) -> Program:
    """dx (stored) and the per-channel sums that give d v0, d v1, d weight and d bias."""
    b, _, out, _ = _layer(graph, affine)
    g = b.ref(b.leaf("grad"))
    sums: list[tuple[str, int]] = []
    if affine:
        sums += [("weight", (g * out).index), ("bias", g.index)]
        g = g * b.ref(b.leaf("weight"))
    grads: dict[int, Ref] = {out.index: g}
    rules = GradBuilder(b)
    for i in reversed(range(len(graph.nodes))):
        node = graph.nodes[i]
        rule = None if OPS[node.op].kind is Kind.LEAF else DERIVATIVES[node.op]
        if i not in grads or rule is None:
            continue
        if node.axis is not None and AXES[node.axis].uses_batch and not training:
            continue  # eval mode: a constant read from the running estimate
        contributions = rule(rules, [b.ref(a) for a in node.args], b.ref(i), grads[i], node.axis)
        for arg, contribution in zip(node.args, contributions, strict=True):
            _accumulate(grads, arg, contribution)
    zero = b.ref(b.const(0.0))
    x_index = next((i for i, n in enumerate(graph.nodes) if n.opdef.role is LeafRole.INPUT), None)
    dx = grads.get(x_index, zero) if x_index is not None else zero
    param_sums = [(p, grads.get(_leaf_index(graph, p), zero).index) for p in graph.parameters]
    return Program(tuple(b.nodes), (("dx", dx.index),), tuple(param_sums + sums))


def _leaf_index(graph: Graph, name: str) -> int:
    return next(i for i, n in enumerate(graph.nodes) if n.op == name)

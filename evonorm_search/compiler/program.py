"""The compiler's IR: a Program is a layer graph plus what a compiled layer needs around it.

A layer `Graph` has one output and knows only the language's leaves. A compiled forward or backward
pass also reads the incoming gradient and the module's affine `weight`/`bias`, writes several
full-shape tensors (the output, or the input gradient) and reduces some expressions to per-channel
sums (parameter gradients). A Program holds exactly that: the same one node type as the layer IR
(`ir.graph.Node`), built with the same hash-consing, plus three compiler inputs and two output lists.

Every node is a tensor of the input's shape (N, C, *spatial) seen as (N, C, S); `node_dims` says
along which of n, c, s its value can vary, which the code generator uses to keep per-channel or
per-sample values out of the inner loops.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..ir import OPS, Graph, Kind
from ..ir.graph import Node, Ref

# Inputs of a compiled layer that are not part of the layer language: name -> dims it varies along.
COMPILER_INPUTS: dict[str, frozenset[str]] = {
    "grad": frozenset("ncs"),  # dL/dy, the gradient flowing into the layer's output
    "weight": frozenset("c"),  # the module's per-channel affine
    "bias": frozenset("c"),
}

# What an aggregation's value varies along, per axis (the statistic is broadcast back over the rest).
AXIS_DIMS: dict[str, frozenset[str]] = {
    "batch": frozenset("c"),
    "layer": frozenset("n"),
    "group": frozenset("nc"),
    "instance": frozenset("nc"),
    "channel": frozenset("ns"),
}

# The dims an aggregation reduces over; an operand constant along all of them has an exact statistic.
REDUCED_DIMS: dict[str, frozenset[str]] = {
    "batch": frozenset("ns"),
    "layer": frozenset("cs"),
    "group": frozenset("cs"),
    "instance": frozenset("s"),
    "channel": frozenset("c"),
}

LEAF_DIMS: dict[str, frozenset[str]] = {"x": frozenset("ncs"), "v0": frozenset("c"), "v1": frozenset("c")}


class CompilerError(ValueError):
    """A graph, input or setting the compiler cannot handle; the message says which and why."""


def _arity(op: str) -> int:
    return 0 if op in COMPILER_INPUTS else OPS[op].arity


def is_aggregation(node: Node) -> bool:
    return node.op in OPS and OPS[node.op].kind is Kind.AGGREGATION


class ProgramBuilder:
    """Hash-consing builder over layer ops and compiler inputs; `Ref` handles work on it as on GraphBuilder."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self._index: dict[Node, int] = {}

    def add_node(self, op: str, args: Iterable[int] = (), axis: str | None = None, value: float | None = None) -> int:
        args = tuple(args)
        if op not in OPS and op not in COMPILER_INPUTS:
            raise CompilerError(f"unknown op {op!r}")
        if len(args) != _arity(op):
            raise CompilerError(f"{op} takes {_arity(op)} argument(s), got {len(args)}")
        if op == "neg" and self.nodes[args[0]].op == "const":
            return self.const(-self.nodes[args[0]].value)  # type: ignore[operator]
        if op == "const":
            value = float(value) + 0.0  # type: ignore[arg-type]  # one zero, one node
        node = Node(op, args, axis, value)
        found = self._index.get(node)
        if found is not None:
            return found
        self.nodes.append(node)
        self._index[node] = len(self.nodes) - 1
        return len(self.nodes) - 1

    def const(self, value: float) -> int:
        return self.add_node("const", (), None, float(value))

    def leaf(self, name: str) -> Ref:
        return Ref(self, self.add_node(name))  # type: ignore[arg-type]

    def ref(self, index: int) -> Ref:
        return Ref(self, index)  # type: ignore[arg-type]

    def call(self, op: str, *args: Ref | int, axis: str | None = None) -> Ref:
        ids = tuple(a.index if isinstance(a, Ref) else a for a in args)
        return Ref(self, self.add_node(op, ids, axis))  # type: ignore[arg-type]

    def copy_graph(self, graph: Graph) -> list[int]:
        remap: list[int] = []
        for n in graph.nodes:
            remap.append(self.add_node(n.op, (remap[a] for a in n.args), n.axis, n.value))
        return remap


@dataclass(frozen=True)
class Program:
    """Nodes in topological order; `stores` are full-shape outputs, `sums` per-channel sums over (n, s)."""

    nodes: tuple[Node, ...]
    stores: tuple[tuple[str, int], ...]
    sums: tuple[tuple[str, int], ...]

    def dims(self) -> list[frozenset[str]]:
        """For every node, the dims (n, c, s) its value varies along."""
        out: list[frozenset[str]] = []
        for node in self.nodes:
            if node.op in COMPILER_INPUTS:
                out.append(COMPILER_INPUTS[node.op])
            elif is_aggregation(node):
                out.append(AXIS_DIMS[node.axis])  # type: ignore[index]
            elif not node.args:
                out.append(LEAF_DIMS.get(node.op, frozenset()))
            else:
                out.append(frozenset().union(*(out[a] for a in node.args)))
        return out

    def uses(self, op: str) -> bool:
        return any(n.op == op for n in self.nodes)


def check_axes_lowered(graph: Graph) -> None:
    """Every axis of the graph needs a lowering; a new axis in the op table must add one here."""
    missing = sorted(a for a in graph.axes if a not in AXIS_DIMS)
    if missing:
        raise CompilerError(f"no Triton lowering for axis/axes {missing}; add them to compiler.program.AXIS_DIMS")

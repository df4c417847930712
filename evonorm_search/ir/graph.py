"""The intermediate representation: one node type, a builder that deduplicates, and the Graph.

A Graph is an immutable DAG of `Node`s in a canonical topological order (post-order from the outputs,
arguments left to right), so two programs that describe the same structure give equal graphs however
they were written or built. Every node is unique (hash-consing), every node is reachable from an
output, and `Graph` validates all of that at construction, so no invalid graph exists at run time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import printer
from .ops import AXES, OPS, OpDef
from .vocabulary import Kind, LeafRole

DEFAULT_MAX_NODES = 1024
GRAPH_FORMAT_VERSION = 1


class GraphError(ValueError):
    """A graph (built in code or loaded from JSON) breaks a structural rule."""


@dataclass(frozen=True, slots=True)
class Node:
    """One primitive applied to earlier nodes. `axis` for aggregations, `value` for constants."""

    op: str
    args: tuple[int, ...] = ()
    axis: str | None = None
    value: float | None = None

    @property
    def opdef(self) -> OpDef:
        return OPS[self.op]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"op": self.op}
        if self.args:
            d["args"] = list(self.args)
        if self.axis is not None:
            d["axis"] = self.axis
        if self.value is not None:
            d["value"] = self.value
        return d


def check_node(node: Node, index: int) -> None:
    """Raise GraphError unless `node` is well formed and only refers to nodes before `index`."""
    opdef = OPS.get(node.op)
    if opdef is None:
        raise GraphError(f"node {index}: unknown op {node.op!r}")
    if len(node.args) != opdef.arity:
        raise GraphError(f"node {index}: {node.op} takes {opdef.arity} argument(s), got {len(node.args)}")
    for a in node.args:
        if not isinstance(a, int) or isinstance(a, bool) or not 0 <= a < index:
            raise GraphError(f"node {index}: argument {a!r} must be the index of an earlier node")
    if opdef.kind is Kind.AGGREGATION:
        if node.axis not in AXES:
            raise GraphError(f"node {index}: {node.op} needs an axis, one of {', '.join(AXES)}; got {node.axis!r}")
    elif node.axis is not None:
        raise GraphError(f"node {index}: {node.op} takes no axis")
    if node.op == "const":
        if not isinstance(node.value, float) or not math.isfinite(node.value):
            raise GraphError(f"node {index}: a constant needs a finite float value, got {node.value!r}")
    elif node.value is not None:
        raise GraphError(f"node {index}: only constants carry a value")


def _canonical_order(nodes: Sequence[Node], outputs: Sequence[int]) -> tuple[tuple[Node, ...], tuple[int, ...]]:
    """Renumber the nodes reachable from `outputs` in post-order, arguments left to right.

    Iterative, so graphs of any depth are safe. Equal structures always come out identical.
    """
    new_index: dict[int, int] = {}
    ordered: list[Node] = []
    for root in outputs:
        stack: list[tuple[int, int]] = [(root, 0)]  # (old index, next argument to visit)
        while stack:
            i, k = stack[-1]
            if i in new_index:
                stack.pop()
                continue
            args = nodes[i].args
            if k < len(args):
                stack[-1] = (i, k + 1)
                if args[k] not in new_index:
                    stack.append((args[k], 0))
                continue
            stack.pop()
            n = nodes[i]
            new_index[i] = len(ordered)
            ordered.append(Node(n.op, tuple(new_index[a] for a in args), n.axis, n.value))
    return tuple(ordered), tuple(new_index[o] for o in outputs)


class Graph:
    """An immutable, validated, deduplicated DAG with one or more outputs.

    Layers written in the DSL have exactly one output (`graph.output`); the compiler builds
    multi-output graphs (for instance the backward pass).
    """

    __slots__ = ("_hash", "nodes", "outputs")

    nodes: tuple[Node, ...]
    outputs: tuple[int, ...]

    def __init__(self, nodes: Sequence[Node], outputs: int | Sequence[int], *, max_nodes: int | None = None):
        outs = (outputs,) if isinstance(outputs, int) else tuple(outputs)
        if not outs:
            raise GraphError("a graph needs at least one output")
        for i, n in enumerate(nodes):
            if not isinstance(n, Node):
                raise GraphError(f"node {i}: expected a Node, got {type(n).__name__}")
            check_node(n, i)
            if n.opdef.role is LeafRole.COMPILER:
                raise GraphError(f"node {i}: {n.op} is an input of compiled programs, not of the layer language")
        for o in outs:
            if not isinstance(o, int) or isinstance(o, bool) or not 0 <= o < len(nodes):
                raise GraphError(f"output {o!r} is not the index of a node")
        # Rebuild through a builder so equal nodes merge and `neg(const)` folds: equal layers must
        # compare equal however their node lists were written.
        b = GraphBuilder(max_nodes=len(nodes) + 1)
        remap: list[int] = []
        for n in nodes:
            remap.append(b.add_node(n.op, tuple(remap[a] for a in n.args), n.axis, n.value))
        ordered, outs = _canonical_order(b.nodes, tuple(remap[o] for o in outs))
        limit = DEFAULT_MAX_NODES if max_nodes is None else max_nodes
        if len(ordered) > limit:
            raise GraphError(f"the graph has {len(ordered)} nodes, more than the limit of {limit}")
        self.nodes = ordered
        self.outputs = outs
        self._hash = hash((self.nodes, self.outputs))

    # -- basic protocol ---------------------------------------------------------------------------

    @property
    def output(self) -> int:
        """The index of the single output of a layer graph."""
        if len(self.outputs) != 1:
            raise GraphError(f"this graph has {len(self.outputs)} outputs; use .outputs")
        return self.outputs[0]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Graph) and self.nodes == other.nodes and self.outputs == other.outputs

    def __hash__(self) -> int:
        return self._hash

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __repr__(self) -> str:
        try:
            return f"Graph({self.to_text()!r})"
        except GraphError:
            return f"Graph(<{len(self.nodes)} nodes, outputs {self.outputs}>)"

    # -- questions about the structure ------------------------------------------------------------

    def uses(self, op_name: str) -> bool:
        return any(n.op == op_name for n in self.nodes)

    @property
    def parameters(self) -> tuple[str, ...]:
        """The trainable per-channel vectors (v0, v1, ...) the graph reads, in table order."""
        used = {n.op for n in self.nodes}
        return tuple(name for name, op in OPS.items() if op.parameter and name in used)

    @property
    def depends_on_x(self) -> bool:
        return self.uses("x")

    @property
    def axes(self) -> frozenset[str]:
        return frozenset(n.axis for n in self.nodes if n.axis is not None)

    def users(self) -> list[list[int]]:
        """For every node, the indices of the nodes that take it as an argument."""
        out: list[list[int]] = [[] for _ in self.nodes]
        for i, n in enumerate(self.nodes):
            for a in n.args:
                out[a].append(i)
        return out

    def depth(self) -> int:
        """The longest path from a leaf to an output, counted in nodes."""
        d: list[int] = []
        for n in self.nodes:
            d.append(1 + max((d[a] for a in n.args), default=0))
        return max(d[o] for o in self.outputs)

    def batch_aggregations(self) -> list[int]:
        """Indices of aggregations over an axis that mixes the batch (`batch`): each keeps a running estimate."""
        return [i for i, n in enumerate(self.nodes) if n.axis is not None and AXES[n.axis].uses_batch]

    def running_buffers(self) -> dict[int, str]:
        """Buffer name of every `batch` aggregation: running_<stat>_<k>, k counting in graph order."""
        return {
            i: f"running_{self.nodes[i].opdef.stat.plane}_{k}"  # type: ignore[union-attr]  # batch aggregations have a stat
            for k, i in enumerate(self.batch_aggregations())
        }

    # -- conversions ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"version": GRAPH_FORMAT_VERSION, "nodes": [n.to_dict() for n in self.nodes]}
        if len(self.outputs) == 1:
            d["output"] = self.outputs[0]
        else:
            d["outputs"] = list(self.outputs)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, max_nodes: int | None = None) -> Graph:
        """Load the JSON form; any malformed input raises GraphError naming the problem."""
        return _graph_from_dict(data, max_nodes)

    def to_text(self) -> str:
        if len(self.outputs) != 1:
            raise GraphError("only single-output graphs have a DSL form")
        return printer.to_text(self)


_NODE_KEYS = {"op", "args", "axis", "value"}
_GRAPH_KEYS = {"version", "nodes", "output", "outputs"}


def _node_from_dict(raw: Any, i: int) -> Node:
    if not isinstance(raw, Mapping):
        raise GraphError(f"node {i}: expected an object, got {type(raw).__name__}")
    extra = set(raw) - _NODE_KEYS
    if extra:
        raise GraphError(f"node {i}: unknown field(s) {sorted(map(str, extra))}")
    op_name = raw.get("op")
    if not isinstance(op_name, str):
        raise GraphError(f"node {i}: 'op' must be a string")
    args = raw.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
        raise GraphError(f"node {i}: 'args' must be a list of node indices")
    axis = raw.get("axis")
    if axis is not None and not isinstance(axis, str):
        raise GraphError(f"node {i}: 'axis' must be a string")
    value = raw.get("value")
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise GraphError(f"node {i}: 'value' must be a number")
        value = float(value)
    return Node(op_name, tuple(args), axis, value)


def _graph_from_dict(data: Any, max_nodes: int | None) -> Graph:
    if not isinstance(data, Mapping):
        raise GraphError(f"a graph must be an object, got {type(data).__name__}")
    extra = set(data) - _GRAPH_KEYS
    if extra:
        raise GraphError(f"unknown field(s) {sorted(map(str, extra))}")
    version = data.get("version", GRAPH_FORMAT_VERSION)
    if version != GRAPH_FORMAT_VERSION:
        raise GraphError(f"unsupported graph format version {version!r} (this release reads {GRAPH_FORMAT_VERSION})")
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise GraphError("'nodes' must be a non-empty list")
    limit = DEFAULT_MAX_NODES if max_nodes is None else max_nodes
    if len(raw_nodes) > limit:
        raise GraphError(f"the graph has {len(raw_nodes)} nodes, more than the limit of {limit}")
    nodes = [_node_from_dict(raw, i) for i, raw in enumerate(raw_nodes)]
    if "output" in data and "outputs" in data:
        raise GraphError("give either 'output' or 'outputs', not both")
    outputs = data.get("outputs", [data["output"]] if "output" in data else None)
    if not isinstance(outputs, list) or not outputs:
        raise GraphError("'output' (an index) or 'outputs' (a list of indices) is required")
    return Graph(nodes, outputs, max_nodes=max_nodes)


# --------------------------------------------------------------------------------------------------
# Building graphs
# --------------------------------------------------------------------------------------------------


class GraphBuilder:
    """Accumulates nodes, deduplicating equal ones; `build` returns the canonical Graph.

    `neg` of a constant folds into the constant, so `-1` has one representation whichever way it
    was written (and printing then parsing a graph gives the same graph back). The compiler builds its
    programs with it too: they may use the compiler's own leaves (grad, weight, bias), which `build`
    rejects, since no layer graph has them.
    """

    def __init__(self, *, max_nodes: int | None = None):
        self.nodes: list[Node] = []
        self._index: dict[Node, int] = {}
        self.max_nodes = DEFAULT_MAX_NODES if max_nodes is None else max_nodes

    def add_node(
        self, op_name: str, args: Iterable[int] = (), axis: str | None = None, value: float | None = None
    ) -> int:
        args = tuple(args)
        if op_name == "neg" and len(args) == 1 and self.nodes[args[0]].op == "const":
            return self.const(-self.nodes[args[0]].value)  # type: ignore[operator]  # a const node has a value
        if op_name == "const" and value is not None:
            value = float(value) + 0.0  # + 0.0 turns -0.0 into 0.0: one zero, one node
        node = Node(op_name, args, axis, value)
        found = self._index.get(node)
        if found is not None:
            return found
        check_node(node, len(self.nodes))
        if len(self.nodes) >= self.max_nodes:
            raise GraphError(f"the graph has more than the limit of {self.max_nodes} nodes")
        self.nodes.append(node)
        self._index[node] = len(self.nodes) - 1
        return len(self.nodes) - 1

    def const(self, value: float) -> int:
        return self.add_node("const", (), None, float(value))

    def leaf(self, name: str) -> int:
        return self.add_node(name)

    def copy_graph(self, graph: Graph) -> list[int]:
        """Add every node of `graph`; returns the new index of each of its nodes."""
        remap: list[int] = []
        for n in graph.nodes:
            remap.append(self.add_node(n.op, (remap[a] for a in n.args), n.axis, n.value))
        return remap

    def ref(self, index: int) -> Ref:
        return Ref(self, index)

    def call(self, op_name: str, *args: Ref | int, axis: str | None = None) -> Ref:
        ids = tuple(a.index if isinstance(a, Ref) else a for a in args)
        return Ref(self, self.add_node(op_name, ids, axis))

    def build(self, outputs: int | Sequence[int]) -> Graph:
        return Graph(self.nodes, outputs, max_nodes=self.max_nodes)


class Ref:
    """A handle on a builder node with arithmetic operators, for writing rules and rewrites."""

    __slots__ = ("builder", "index")

    def __init__(self, builder: GraphBuilder, index: int):
        self.builder = builder
        self.index = index

    def _lift(self, other: Ref | float) -> int:
        return other.index if isinstance(other, Ref) else self.builder.const(other)

    def _bin(self, op_name: str, a: int, b: int) -> Ref:
        return Ref(self.builder, self.builder.add_node(op_name, (a, b)))

    def __add__(self, o: Ref | float) -> Ref:
        return self._bin("add", self.index, self._lift(o))

    def __radd__(self, o: float) -> Ref:
        return self._bin("add", self._lift(o), self.index)

    def __sub__(self, o: Ref | float) -> Ref:
        return self._bin("sub", self.index, self._lift(o))

    def __rsub__(self, o: float) -> Ref:
        return self._bin("sub", self._lift(o), self.index)

    def __mul__(self, o: Ref | float) -> Ref:
        return self._bin("mul", self.index, self._lift(o))

    def __rmul__(self, o: float) -> Ref:
        return self._bin("mul", self._lift(o), self.index)

    def __truediv__(self, o: Ref | float) -> Ref:
        return self._bin("div", self.index, self._lift(o))

    def __rtruediv__(self, o: float) -> Ref:
        return self._bin("div", self._lift(o), self.index)

    def __neg__(self) -> Ref:
        return Ref(self.builder, self.builder.add_node("neg", (self.index,)))

    def __repr__(self) -> str:
        return f"Ref({self.index}: {self.builder.nodes[self.index]})"

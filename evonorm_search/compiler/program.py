"""The compiler's IR: a Program is a layer graph plus what a compiled layer needs around it.

A layer `Graph` has one output and knows only the language's leaves. A compiled forward or backward
pass also reads the incoming gradient and the module's affine `weight`/`bias`, writes several
full-shape tensors (the output, or the input gradient) and reduces some expressions to per-channel
sums (parameter gradients). A Program holds exactly that: the same one node type as the layer IR
(`ir.graph.Node`), built by the same `GraphBuilder` (the compiler's inputs are leaf rows of the op
table with role `LeafRole.COMPILER`), plus two output lists.

Every node is a tensor of the input's shape (N, C, *spatial) seen as (N, C, S); `Program.dims` says
along which of n, c, s its value can vary (a leaf row's `dims`, an axis row's `dims` for an
aggregation), which the code generator uses to keep per-channel or per-sample values out of the inner
loops.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import AXES, OPS
from ..ir.graph import Node
from ..ir.vocabulary import Dim, Kind


class CompilerError(ValueError):
    """A graph, input or setting the compiler cannot handle; the message says which and why."""


def is_aggregation(node: Node) -> bool:
    return OPS[node.op].kind is Kind.AGGREGATION


# Full-shape tensors a kernel may read (x, grad): the leaf rows varying along every dim.
FULL_SIZE_INPUTS = tuple(name for name, row in OPS.items() if row.kind is Kind.LEAF and row.dims == frozenset(Dim))


@dataclass(frozen=True)
class Program:
    """Nodes in topological order; `stores` are full-shape outputs, `sums` per-channel sums over (n, s)."""

    nodes: tuple[Node, ...]
    stores: tuple[tuple[str, int], ...]
    sums: tuple[tuple[str, int], ...]

    def dims(self) -> list[frozenset[Dim]]:
        """For every node, the dims (n, c, s) its value varies along."""
        out: list[frozenset[Dim]] = []
        for node in self.nodes:
            if is_aggregation(node):
                out.append(AXES[node.axis].dims)  # type: ignore[index]  # an aggregation always has an axis
            elif not node.args:
                out.append(OPS[node.op].dims)
            else:
                out.append(frozenset().union(*(out[a] for a in node.args)))
        return out

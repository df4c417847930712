"""Pass 1b, rewrite: rules that turn a Program into an equal one the kernels compute better.

A rule replaces a node by another with the same value, keeping its index (every later pass, and the
variable names of the generated source, refer to nodes by index). Nodes a rewrite leaves unused stay in
the node list; no pass computes them, since passes compute only what their outputs need.

Rules (`GATES`): `g * heaviside(a)` becomes `gate(g, a)` and `g * gt_half(a, b)` becomes
`gate_half(g, a, b)` (the products the derivative rules of relu, max and min build). The gates are
selects, `where(a <= 0, 0, g)`: the gradient is zeroed only where the gate is closed, so NaN or inf in
`g` never leaks through a closed gate as 0 * inf, and a NaN comparison passes `g` on, as autograd does.
"""

from __future__ import annotations

from dataclasses import replace

from ..ir.graph import Node
from .program import Program

# step function -> the gate op computing `g * step(*args)` as `gate(g, *args)`.
GATES = {"heaviside": "gate", "gt_half": "gate_half"}


def _gated(nodes: tuple[Node, ...], node: Node) -> Node | None:
    """`node` as a gate when it multiplies a step function (the right factor is tried first)."""
    if node.op != "mul":
        return None
    left, right = node.args
    for step, other in ((right, left), (left, right)):
        gate = GATES.get(nodes[step].op)
        if gate is not None:
            return Node(gate, (other, *nodes[step].args))
    return None


def gated_products(program: Program) -> Program:
    """Every product of a gradient and a step function as a gate op."""
    nodes = program.nodes
    rewritten = tuple(_gated(nodes, node) or node for node in nodes)
    return replace(program, nodes=rewritten) if rewritten != nodes else program


REWRITES = (gated_products,)


def rewrite(program: Program) -> Program:
    """`program` after every rule of `REWRITES`, in order."""
    for rule in REWRITES:
        program = rule(program)
    return program

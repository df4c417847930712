"""Graph -> DSL text. Parsing the result gives the same Graph back.

Shared subexpressions become named temporaries (`t1 = ...`), and so does any subexpression that would
nest deeper than the parser accepts, so every printable graph also parses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .ops import OPS, format_number
from .vocabulary import Kind

if TYPE_CHECKING:  # `graph` imports this module to print itself: the types only, for annotations
    from .graph import Graph, Node

# Parenthesis nesting a printed expression may reach before a temporary is introduced; well under
# the parser's limit (parser.DEFAULT_MAX_DEPTH) so every printed program parses again.
MAX_INLINE_DEPTH = 24
ATOM = 100


def _precedence(node: Node) -> int:
    if node.value is not None:  # a literal: a negative one is written with a minus
        return OPS["neg"].precedence if node.value < 0 else ATOM
    return OPS[node.op].precedence if OPS[node.op].infix else ATOM


def _choose_names(graph: Graph) -> dict[int, str]:
    """Which nodes get a name: shared non-leaves, and nodes that would nest too deeply inline."""
    users = graph.users()
    named: set[int] = {i for i, n in enumerate(graph.nodes) if len(users[i]) > 1 and n.opdef.kind is not Kind.LEAF}
    depth = [0] * len(graph.nodes)
    for i, n in enumerate(graph.nodes):
        d = 0
        for a in n.args:
            if a not in named and depth[a] >= MAX_INLINE_DEPTH:
                named.add(a)
            d = max(d, 0 if a in named else depth[a])
        depth[i] = d + (1 if n.args else 0)
    named.difference_update(graph.outputs)
    return {i: f"t{k + 1}" for k, i in enumerate(sorted(named))}


def _render(node: Node, arg_text: list[str], arg_prec: list[int]) -> str:
    op = node.opdef
    if op.kind is Kind.LEAF:
        return op.text.format(name=node.op, number=None if node.value is None else format_number(node.value))
    if op.infix and op.arity == 2:
        left = arg_text[0] if arg_prec[0] >= op.precedence else f"({arg_text[0]})"
        right = arg_text[1] if arg_prec[1] > op.precedence else f"({arg_text[1]})"
        return f"{left} {op.infix} {right}"
    if op.infix and op.arity == 1:
        inner = arg_text[0] if arg_prec[0] > op.precedence else f"({arg_text[0]})"
        return f"{op.infix}{inner}"
    if op.kind is Kind.AGGREGATION:
        return f"{node.op}({arg_text[0]}, {node.axis})"
    return f"{node.op}({', '.join(arg_text)})"


def to_text(graph: Graph) -> str:
    """The DSL text of a single-output graph (`Graph.to_text` checks that there is one output)."""
    names = _choose_names(graph)
    text: list[str] = []
    prec: list[int] = []
    lines: list[str] = []
    for i, node in enumerate(graph.nodes):
        arg_text = [names.get(a, text[a]) for a in node.args]
        arg_prec = [ATOM if a in names else prec[a] for a in node.args]
        text.append(_render(node, arg_text, arg_prec))
        prec.append(_precedence(node))
        if i in names:
            lines.append(f"{names[i]} = {text[i]}")
    out = text[graph.output]
    if not lines:
        return out
    return "\n".join([*lines, f"y = {out}"])

"""Symbolic forms of a layer: sympy expression, LaTeX, and the canonical hash.

sympy's automatic canonicalisation (commutative ordering, x*1, x+0, -(-x), collected powers and
terms) makes layers that are equal but written differently map to the same expression, hence the
same hash. Constants become exact decimal rationals, so `x * 0.5` and `x / 2` collide too.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import sympy

from .ir import OPS, Graph, Kind
from .symbolic_ops import SYMPY

HASH_VERSION = "1"
_RECURSION_FOR_SYMPY = 20_000
# sympy works on the formula written out as a tree, where a shared subexpression is repeated at every
# use: a chain of n `a = f(a) + g(a)` lines is a graph of 3n nodes but a formula of 2^n operations, and
# sympy's time grows with the formula. Past this size a layer gets no symbolic form (about 0.3 s here).
MAX_FORMULA_SIZE = 4096


class FormulaTooLarge(ValueError):
    """The layer's formula, written out, is too large for a symbolic form."""


def formula_size(graph: Graph, cap: int = 1 << 40) -> int:
    """Operations in the layer's formula once shared subexpressions are written out (capped at `cap`)."""
    sizes: list[int] = []
    for node in graph.nodes:
        sizes.append(min(cap, 1 + sum(sizes[a] for a in node.args)))
    return sizes[graph.output]


def check_formula_size(graph: Graph, max_size: int = MAX_FORMULA_SIZE) -> None:
    if formula_size(graph, cap=max_size + 1) > max_size:
        raise FormulaTooLarge(
            f"the formula has more than {max_size} operations once shared subexpressions are written out"
        )


_RECURSION_LOCK = threading.Lock()


def ensure_recursion_limit(needed: int = _RECURSION_FOR_SYMPY) -> None:
    """Raise the interpreter's recursion limit to `needed` if it is lower; never lower it.

    sympy walks expression trees recursively, and a graph within the node limit can still be deep. The
    limit is process-wide: raising and restoring it around each call would let one thread restore it
    while another is deep inside sympy (which then fails and falls back to the structural hash, so two
    equal layers get different hashes). So it is raised once, at import, and only ever raised."""
    if sys.getrecursionlimit() >= needed:
        return
    with _RECURSION_LOCK:
        if sys.getrecursionlimit() < needed:
            sys.setrecursionlimit(needed)


ensure_recursion_limit()


@contextmanager
def _deep_recursion() -> Iterator[None]:
    # Someone may have lowered the limit since import; raise it again (never restore it: see above).
    ensure_recursion_limit()
    yield


def _node_exprs(graph: Graph) -> list[sympy.Expr]:
    exprs: list[sympy.Expr] = []
    for node in graph.nodes:
        form, kind = SYMPY[node.op], OPS[node.op].kind
        if kind is Kind.LEAF:
            exprs.append(form(node.value))
        elif kind is Kind.AGGREGATION:
            exprs.append(form(exprs[node.args[0]], node.axis))
        else:
            exprs.append(form(*(exprs[a] for a in node.args)))
    return exprs


def to_sympy(graph: Graph, *, max_size: int = MAX_FORMULA_SIZE) -> sympy.Expr:
    """The layer's output as a sympy expression (before the final affine); FormulaTooLarge past max_size."""
    check_formula_size(graph, max_size)
    with _deep_recursion():
        return _node_exprs(graph)[graph.output]


def latex(graph: Graph, *, max_size: int = MAX_FORMULA_SIZE) -> str:
    """LaTeX of the layer's formula, e.g. `\\frac{x \\sigma\\left(v_{1} x\\right)}{...}`.

    FormulaTooLarge (a ValueError) when the written-out formula exceeds `max_size` operations.
    """
    with _deep_recursion():
        return sympy.latex(to_sympy(graph, max_size=max_size))


def canonical_form(graph: Graph) -> str:
    """A deterministic text of the canonical expression (sympy's srepr).

    Should sympy fail on some exotic expression, or the formula be too large to write out, the graph's
    own canonical text stands in, marked as structural: the hash then still separates different graphs
    and unites equal ones.
    """
    try:
        with _deep_recursion():
            return sympy.srepr(to_sympy(graph))
    except (ValueError, TypeError, ArithmeticError, RecursionError) as e:
        return f"structural[{type(e).__name__}]:{graph.to_text()}"


def canonical_hash(graph: Graph) -> str:
    """Hex SHA-256 of the canonical form: equal for layers equal up to sympy's canonicalisation."""
    digest = hashlib.sha256(f"evonorm-canonical-v{HASH_VERSION}\n{canonical_form(graph)}".encode())
    return digest.hexdigest()


def symbolic_forms(graph: dict, max_size: int = MAX_FORMULA_SIZE) -> tuple[str, str, str]:
    """(canonical form, LaTeX, canonical hash) of a layer given as `Graph.to_dict()`: one picklable call,
    so a service can run it in another process under a time limit. FormulaTooLarge past `max_size`."""
    layer = Graph.from_dict(graph)
    expression = to_sympy(layer, max_size=max_size)
    with _deep_recursion():
        return sympy.srepr(expression), sympy.latex(expression), canonical_hash(layer)

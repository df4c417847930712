"""The search space: which ops, axes and leaves candidate layers may use, and how big they may be.

`random_graph` draws a valid graph from a space; mutations (in `mutation.py`) keep graphs inside it.
Every name comes from the op table, so a new op joins the default space by adding its row.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..ir import AGGREGATIONS, AXES, ELEMENTWISE, OPS, Graph, GraphBuilder, Kind
from ..ir.ops import NAMED_LEAVES
from ..ir.vocabulary import LeafRole

# The layer input and every parameter row of the op table (eps is allowed but not a default).
DEFAULT_LEAVES = tuple(name for name, row in OPS.items() if row.role in (LeafRole.INPUT, LeafRole.PARAMETER))
DEFAULT_CONSTANTS = (1.0,)


class SpaceError(ValueError):
    """A search space that names unknown ops, axes or leaves, or impossible sizes."""


@dataclass(frozen=True)
class SearchSpace:
    """What candidate layers may contain. `max_ops` counts non-leaf nodes."""

    ops: tuple[str, ...] = field(default_factory=lambda: ELEMENTWISE + AGGREGATIONS)
    axes: tuple[str, ...] = field(default_factory=lambda: tuple(AXES))
    leaves: tuple[str, ...] = DEFAULT_LEAVES
    constants: tuple[float, ...] = DEFAULT_CONSTANTS
    min_ops: int = 1
    max_ops: int = 12

    def __post_init__(self) -> None:
        unknown = [o for o in self.ops if o not in ELEMENTWISE + AGGREGATIONS]
        if unknown:
            raise SpaceError(f"unknown op(s) {unknown}; known: {', '.join(ELEMENTWISE + AGGREGATIONS)}")
        if not self.ops:
            raise SpaceError("a search space needs at least one op")
        bad_axes = [a for a in self.axes if a not in AXES]
        if bad_axes:
            raise SpaceError(f"unknown axis/axes {bad_axes}; known: {', '.join(AXES)}")
        if any(OPS[o].kind is Kind.AGGREGATION for o in self.ops) and not self.axes:
            raise SpaceError("aggregations are allowed but no axis is")
        bad_leaves = [leaf for leaf in self.leaves if leaf not in NAMED_LEAVES]
        if bad_leaves:
            known = ", ".join(NAMED_LEAVES)
            raise SpaceError(f"unknown leaf/leaves {bad_leaves}; use {known} (constants go in 'constants')")
        if "x" not in self.leaves:
            raise SpaceError("the leaves must include x")
        if not 1 <= self.min_ops <= self.max_ops:
            raise SpaceError(f"need 1 <= min_ops <= max_ops, got {self.min_ops} and {self.max_ops}")

    @property
    def batch_free(self) -> bool:
        return not any(AXES[a].uses_batch for a in self.axes)

    def allows_constant(self, value: float) -> bool:
        """A listed constant, or the negation of one when `neg` is allowed (graphs fold neg(c) into -c)."""
        return value in self.constants or ("neg" in self.ops and -value in self.constants)

    def op_count(self, graph: Graph) -> int:
        return sum(1 for n in graph.nodes if n.opdef.kind is not Kind.LEAF)

    def violations(self, graph: Graph) -> list[str]:
        """What in `graph` lies outside this space (empty when it fits)."""
        problems: list[str] = []
        for n in graph.nodes:
            if n.opdef.kind is Kind.LEAF:
                if n.op == "const":
                    if not self.allows_constant(n.value):  # type: ignore[arg-type]  # a const node has a value
                        problems.append(f"constant {n.value} is not in the space")
                elif n.op not in self.leaves:
                    problems.append(f"leaf {n.op} is not in the space")
            elif n.op not in self.ops:
                problems.append(f"op {n.op} is not in the space")
            if n.axis is not None and n.axis not in self.axes:
                problems.append(f"axis {n.axis} is not in the space")
        count = self.op_count(graph)
        if count > self.max_ops:
            problems.append(f"{count} ops, more than max_ops={self.max_ops}")
        return sorted(set(problems))

    def contains(self, graph: Graph) -> bool:
        return not self.violations(graph)


def _leaf_ids(space: SearchSpace, b: GraphBuilder) -> list[int]:
    return [b.leaf(name) for name in space.leaves] + [b.const(c) for c in space.constants]


def _pick_input(pool: list[int], rng: random.Random) -> int:
    # Half the time the newest node: grows deep chains as well as wide, shallow graphs.
    return pool[-1] if rng.random() < 0.5 else rng.choice(pool)


def _random_attempt(space: SearchSpace, rng: random.Random) -> Graph:
    b = GraphBuilder()
    pool = _leaf_ids(space, b)
    for _ in range(rng.randint(space.min_ops, space.max_ops)):
        name = rng.choice(space.ops)
        op = OPS[name]
        args = tuple(_pick_input(pool, rng) for _ in range(op.arity))
        axis = rng.choice(space.axes) if op.kind is Kind.AGGREGATION else None
        index = b.add_node(name, args, axis)
        if index not in pool:
            pool.append(index)
    return b.build(pool[-1])


def random_graph(space: SearchSpace, rng: random.Random, *, max_attempts: int = 1000) -> Graph:
    """A random graph of the space whose output depends on x and has at least `min_ops` ops."""
    for _ in range(max_attempts):
        g = _random_attempt(space, rng)
        if g.depends_on_x and space.op_count(g) >= space.min_ops:
            return g
    raise SpaceError(f"no graph depending on x found in {max_attempts} attempts; is the space too narrow?")

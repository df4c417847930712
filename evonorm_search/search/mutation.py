"""Mutations: small strategy objects that edit one graph into another, and the `Mutator` that applies them.

Each mutation works on an editable node list in which every leaf and constant of the space comes
first, so any node may take any leaf, and returns a new `Graph` (or None when it does not apply).
The `Mutator` keeps only children that are valid, depend on x, fit the space and differ from the
parent; after `max_attempts` misses it falls back to a fresh random graph, so it never fails. Given a
`known` test (the search's duplicate index), it also tries again, at most `max_known_retries` times,
when a child is a layer the search already has; past that the last child stands, to be recorded as
the duplicate it is.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..ir import OPS, Graph, GraphError, Kind, Node
from .space import SearchSpace, random_graph

RANDOM_RESTART = "random_restart"


@dataclass
class Editable:
    """A graph's nodes after the space's leaves, with the output index; `first_inner` marks where they end."""

    nodes: list[Node]
    output: int
    first_inner: int

    @classmethod
    def of(cls, graph: Graph, space: SearchSpace) -> Editable:
        leaves = [Node(name) for name in space.leaves] + [Node("const", value=float(c)) for c in space.constants]
        position = {leaf: i for i, leaf in enumerate(leaves)}
        nodes, remap = list(leaves), list[int]()
        for n in graph.nodes:  # the graph's own leaves merge into the prefix, so no edit is a disguised no-op
            node = Node(n.op, tuple(remap[a] for a in n.args), n.axis, n.value)
            if node not in position:
                position[node] = len(nodes)
                nodes.append(node)
            remap.append(position[node])
        return cls(nodes, remap[graph.output], len(leaves))

    def inner(self) -> list[int]:
        """Indices of the op (non-leaf) nodes that feed the output."""
        return [i for i in range(self.first_inner, len(self.nodes)) if self.nodes[i].opdef.kind is not Kind.LEAF]

    def insert(self, position: int, node: Node) -> None:
        """Put `node` at `position`, renumbering later references."""

        def shift(a: int) -> int:
            return a + 1 if a >= position else a

        self.nodes = [Node(n.op, tuple(shift(a) for a in n.args), n.axis, n.value) for n in self.nodes]
        self.nodes.insert(position, node)
        self.output = shift(self.output)

    def edges(self) -> list[tuple[int, int]]:
        """(user, input slot) of every op node's input: where an insertion can go."""
        return [(i, slot) for i in self.inner() for slot in range(len(self.nodes[i].args))]

    def point(self, user: int, slot: int, source: int) -> None:
        """Make input `slot` of node `user` read node `source`."""
        old = self.nodes[user]
        args = list(old.args)
        args[slot] = source
        self.nodes[user] = Node(old.op, tuple(args), old.axis, old.value)

    def build(self) -> Graph | None:
        try:
            return Graph(self.nodes, self.output)
        except GraphError:
            return None


def random_node(space: SearchSpace, rng: random.Random, inputs: Sequence[int], *, first: int | None = None) -> Node:
    """A node of a random op of the space whose inputs come from `inputs` (the first one fixed if given)."""
    op = OPS[rng.choice(space.ops)]
    args = [rng.choice(inputs) for _ in range(op.arity)]
    if first is not None:
        args[rng.randrange(op.arity)] = first
    axis = rng.choice(space.axes) if op.kind is Kind.AGGREGATION else None
    return Node(op.name, tuple(args), axis)


class Mutation(Protocol):
    name: str

    def apply(self, graph: Graph, space: SearchSpace, rng: random.Random) -> Graph | None: ...


class ReplaceOp:
    """Give one op node another op (and axis) of the space, keeping its inputs where the arity allows."""

    name = "replace_op"

    def apply(self, graph: Graph, space: SearchSpace, rng: random.Random) -> Graph | None:
        e = Editable.of(graph, space)
        if not e.inner():
            return None
        i = rng.choice(e.inner())
        old = e.nodes[i]
        op = OPS[rng.choice(space.ops)]
        args = list(old.args[: op.arity]) + [rng.randrange(i) for _ in range(op.arity - len(old.args))]
        axis = rng.choice(space.axes) if op.kind is Kind.AGGREGATION else None
        if (op.name, axis) == (old.op, old.axis):
            return None
        e.nodes[i] = Node(op.name, tuple(args), axis)
        return e.build()


class RewireInput:
    """Point one input of one op node at another earlier node or leaf."""

    name = "rewire_input"

    def apply(self, graph: Graph, space: SearchSpace, rng: random.Random) -> Graph | None:
        e = Editable.of(graph, space)
        if not e.inner():
            return None
        i = rng.choice(e.inner())
        old = e.nodes[i]
        slot = rng.randrange(len(old.args))
        source = rng.randrange(i)
        if source == old.args[slot]:
            return None
        e.point(i, slot, source)
        return e.build()


class InsertNode:
    """Insert a random op on one edge (or after the output); the edge's source becomes one of its inputs."""

    name = "insert_node"

    def apply(self, graph: Graph, space: SearchSpace, rng: random.Random) -> Graph | None:
        e = Editable.of(graph, space)
        edges = e.edges()
        choice = rng.randrange(len(edges) + 1)
        if choice == len(edges):  # after the output
            e.nodes.append(random_node(space, rng, range(len(e.nodes)), first=e.output))
            e.output = len(e.nodes) - 1
            return e.build()
        user, slot = edges[choice]
        source = e.nodes[user].args[slot]
        e.insert(user, random_node(space, rng, range(user), first=source))
        e.point(user + 1, slot, user)  # the user moved to user + 1 and the new node sits at `user`
        return e.build()


class DeleteNode:
    """Remove one op node: its users (and the output) take one of its inputs instead."""

    name = "delete_node"

    def apply(self, graph: Graph, space: SearchSpace, rng: random.Random) -> Graph | None:
        e = Editable.of(graph, space)
        if not e.inner():
            return None
        i = rng.choice(e.inner())
        replacement = rng.choice(e.nodes[i].args)
        e.nodes = [Node(n.op, tuple(replacement if a == i else a for a in n.args), n.axis, n.value) for n in e.nodes]
        if e.output == i:
            e.output = replacement
        return e.build()


class NormalizeNode:
    """Divide one edge's value (or the output) by a statistic of itself: `s` becomes `s / agg(s, axis)`, with
    `agg` a scale statistic of the space (std or rms) and a random axis of the space.

    One step instead of the two single-node insertions it stands for, whose halfway layer (a bare
    statistic, or a division by something unrelated) seldom survives: a small search rarely crosses that
    valley, and normalizing is what this tool searches for. Needs `div` and std or rms in the space."""

    name = "normalize_node"
    SCALES = ("std", "rms")

    def apply(self, graph: Graph, space: SearchSpace, rng: random.Random) -> Graph | None:
        scales = [op for op in self.SCALES if op in space.ops]
        if "div" not in space.ops or not scales:
            return None
        e = Editable.of(graph, space)
        edges = e.edges()
        choice = rng.randrange(len(edges) + 1)
        statistic = Node(rng.choice(scales), (), rng.choice(space.axes))
        if choice == len(edges):  # after the output
            source = e.output
            e.nodes.append(Node(statistic.op, (source,), statistic.axis))
            e.nodes.append(Node("div", (source, len(e.nodes) - 1)))
            e.output = len(e.nodes) - 1
            return e.build()
        user, slot = edges[choice]
        source = e.nodes[user].args[slot]
        e.insert(user, Node(statistic.op, (source,), statistic.axis))
        e.insert(user + 1, Node("div", (source, user)))
        e.point(user + 2, slot, user + 1)  # the user moved to user + 2; the division sits at user + 1
        return e.build()


# The registry a search config's `mutations` names are checked against: adding a mutation is a class
# with `name` and `apply` and its entry here.
MUTATIONS: dict[str, type[Mutation]] = {
    m.name: m for m in (ReplaceOp, RewireInput, InsertNode, DeleteNode, NormalizeNode)
}
# The paper's edits, one node at a time; `normalize_node` is opt-in (a search config's `mutations`).
DEFAULT_MUTATIONS = ("replace_op", "rewire_input", "insert_node", "delete_node")


def make_mutations(names: Sequence[str]) -> list[Mutation]:
    unknown = [n for n in names if n not in MUTATIONS]
    if unknown:
        raise ValueError(f"unknown mutation(s) {unknown}; known: {', '.join(MUTATIONS)}")
    return [MUTATIONS[n]() for n in names]


class Mutator:
    """Applies a uniformly chosen mutation until the child is valid, depends on x, fits and is new."""

    def __init__(
        self,
        space: SearchSpace,
        mutations: Sequence[Mutation] | None = None,
        *,
        max_attempts: int = 100,
        max_known_retries: int = 10,
    ):
        self.space = space
        self.mutations = list(mutations) if mutations is not None else make_mutations(DEFAULT_MUTATIONS)
        if not self.mutations:
            raise ValueError("a Mutator needs at least one mutation")
        if max_known_retries < 0:
            raise ValueError(f"max_known_retries must be >= 0, got {max_known_retries}")
        self.max_attempts = max_attempts
        self.max_known_retries = max_known_retries

    def acceptable(self, child: Graph | None, parent: Graph) -> bool:
        return (
            child is not None
            and child != parent
            and child.depends_on_x
            and self.space.op_count(child) >= self.space.min_ops
            and self.space.contains(child)
        )

    def mutate(
        self, parent: Graph, rng: random.Random, known: Callable[[Graph], bool] | None = None
    ) -> tuple[Graph, str]:
        """(child, name of the mutation that made it); with `known`, a child it accepts is new when it can be."""
        child, name = self._one_child(parent, rng)
        if known is None:
            return child, name
        for _ in range(self.max_known_retries):
            if not known(child):
                break
            child, name = self._one_child(parent, rng)
        return child, name

    def _one_child(self, parent: Graph, rng: random.Random) -> tuple[Graph, str]:
        for _ in range(self.max_attempts):
            mutation = rng.choice(self.mutations)
            child = mutation.apply(parent, self.space, rng)
            if child is not None and self.acceptable(child, parent):
                return child, mutation.name
        return random_graph(self.space, rng), RANDOM_RESTART

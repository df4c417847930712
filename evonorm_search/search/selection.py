"""Selection and proposal strategies: the Pareto tournament, aging evolution and random search.

A strategy's `propose(population, birth, rng)` returns the next candidate. The population is what
the controller passes in: the `population_size` most recently born candidates that have objective
values of their own (aging: when a newer one is evaluated, the oldest leaves). A duplicate, which reuses
its original's objectives, never joins it: one layer cannot fill the population. Random search ignores it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .. import library
from ..ir import Graph
from ..store import Objective
from .mutation import Mutator
from .pareto import pareto_mask
from .space import SearchSpace, random_graph

RANDOM = "random"
SEED_PREFIX = "seed:"


@dataclass(frozen=True)
class Member:
    """An evaluated candidate as selection sees it: objectives in the search's objective order (rung 0,
    the proxies), and `target`, its mean accuracy on the ladder's last rung once every target seed is
    stored (None until then, and always without a ladder)."""

    candidate_id: int
    birth: int
    graph: Graph
    objectives: tuple[float, ...]
    target: float | None = None


@dataclass(frozen=True)
class Proposal:
    """The next candidate: its graph, its parent (None for random or seed candidates) and how it was made."""

    graph: Graph
    parent_id: int | None
    mutation: str


class Selection(Protocol):
    def select(self, population: Sequence[Member], rng: random.Random) -> Member: ...


class ParetoTournament:
    """Sample `size` members without replacement; the parent is uniform over the sample's Pareto front.

    Selection uses the best evidence and never compares numbers from different rungs: when members of the
    sample reached the target rung, the parent is the one of them with the best target mean (ties uniform);
    a member on the target rung beats one that is not, because promotion put it in the top of rung 0
    (as in ASHA, where a rung's results outrank the rungs below). Otherwise the proxies' front decides.
    """

    def __init__(self, size: int, objectives: Sequence[Objective]):
        if size < 1:
            raise ValueError(f"tournament size must be >= 1, got {size}")
        self.size = size
        self.objectives = objectives

    def select(self, population: Sequence[Member], rng: random.Random) -> Member:
        if not population:
            raise ValueError("cannot select from an empty population")
        sample = rng.sample(list(population), min(self.size, len(population)))
        validated = [m for m in sample if m.target is not None]
        if validated:
            best = max(m.target for m in validated if m.target is not None)
            return rng.choice([m for m in validated if m.target == best])
        front = pareto_mask([m.objectives for m in sample], self.objectives)
        return rng.choice([m for m, on_front in zip(sample, front, strict=True) if on_front])


class Strategy(Protocol):
    def propose(self, population: Sequence[Member], birth: int, rng: random.Random) -> Proposal: ...


class AgingEvolution:
    """Steady-state aging evolution: seed layers first, random candidates until the population is full,
    then mutate a tournament-selected parent. `known` (a layer the search already has) makes the mutator
    try again for a new child, a bounded number of times."""

    def __init__(
        self,
        space: SearchSpace,
        population_size: int,
        selection: Selection,
        mutator: Mutator,
        seed_layers: Sequence[str] = (),
        known: Callable[[Graph], bool] | None = None,
    ):
        self.space = space
        self.population_size = population_size
        self.selection = selection
        self.mutator = mutator
        self.seed_layers = list(seed_layers)
        self.known = known

    def propose(self, population: Sequence[Member], birth: int, rng: random.Random) -> Proposal:
        if birth < len(self.seed_layers):
            name = self.seed_layers[birth]
            return Proposal(library.get(name), None, SEED_PREFIX + name)
        if len(population) < self.population_size:
            return Proposal(random_graph(self.space, rng), None, RANDOM)
        parent = self.selection.select(population, rng)
        child, mutation = self.mutator.mutate(parent.graph, rng, self.known)
        return Proposal(child, parent.candidate_id, mutation)


class RandomSearch:
    """The baseline: every candidate is a fresh random graph of the space (seed layers first, if any)."""

    def __init__(self, space: SearchSpace, seed_layers: Sequence[str] = ()):
        self.space = space
        self.seed_layers = list(seed_layers)

    def propose(self, population: Sequence[Member], birth: int, rng: random.Random) -> Proposal:
        if birth < len(self.seed_layers):
            name = self.seed_layers[birth]
            return Proposal(library.get(name), None, SEED_PREFIX + name)
        return Proposal(random_graph(self.space, rng), None, RANDOM)


def aging_population(members: Sequence[Member], size: int) -> list[Member]:
    """The `size` most recently born members (the others have aged out)."""
    return sorted(members, key=lambda m: m.birth)[-size:]

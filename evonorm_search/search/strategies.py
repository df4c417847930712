"""Search strategies as rows: what a config's `mode` names, what each strategy needs, how it is built.

A strategy kind says whether it needs a population (evaluated candidates join an aging population of
`config.population` that it selects parents from) and builds the proposer (`selection.Strategy`) that
gives the next candidate. The controller asks the config's kind (`SearchConfig.strategy()`) and never
reads `mode` itself; the config validates `mode` against `STRATEGIES`. Adding a strategy is one class
here and one entry in `STRATEGIES`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar, Protocol

from ..ir import Graph
from ..store import Objective
from .mutation import Mutator, make_mutations
from .selection import AgingEvolution, ParetoTournament, RandomSearch, Strategy

if TYPE_CHECKING:
    from .config import SearchConfig


class StrategyKind(Protocol):
    name: ClassVar[str]
    # Evaluated candidates join a population of `config.population` that `propose` is handed.
    needs_population: ClassVar[bool]

    def build(
        self, config: SearchConfig, objectives: Sequence[Objective], known: Callable[[Graph], bool] | None
    ) -> Strategy:
        """The proposer; `known` (a layer the search already has) lets it try again for a new child."""
        ...


class Evolution:
    """Aging evolution (the paper's search): a population, a Pareto tournament of `config.tournament`
    picks the parent, one of `config.mutations` makes the child."""

    name: ClassVar[str] = "evolution"
    needs_population: ClassVar[bool] = True

    def build(
        self, config: SearchConfig, objectives: Sequence[Objective], known: Callable[[Graph], bool] | None
    ) -> Strategy:
        space = config.build_space()
        mutator = Mutator(space, make_mutations(config.mutations))
        tournament = ParetoTournament(config.tournament, objectives)
        return AgingEvolution(space, config.population, tournament, mutator, config.space.seed_layers, known)


class RandomSampling:
    """Random search, the baseline evolution must beat: every candidate a fresh random graph; no
    population, tournament or mutation."""

    name: ClassVar[str] = "random"
    needs_population: ClassVar[bool] = False

    def build(
        self, config: SearchConfig, objectives: Sequence[Objective], known: Callable[[Graph], bool] | None
    ) -> Strategy:
        return RandomSearch(config.build_space(), config.space.seed_layers)


STRATEGIES: dict[str, StrategyKind] = {kind.name: kind for kind in (Evolution(), RandomSampling())}

"""Strategies and mutations are registries: a config's names are checked against their keys, and a
throwaway strategy or mutation, one class and one entry, goes through config validation and a search."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import ClassVar

import pytest

from evonorm_search import library
from evonorm_search.ir import Graph, Node
from evonorm_search.search import ConfigError
from evonorm_search.search.mutation import MUTATIONS, Editable
from evonorm_search.search.selection import Member, Proposal
from evonorm_search.search.space import SearchSpace
from evonorm_search.search.strategies import STRATEGIES
from evonorm_search.store import list_candidates

from .conftest import run_to_end, tiny_config


class NegateOutput:
    """A throwaway mutation: the parent's output, negated."""

    name = "negate_output"

    def apply(self, graph: Graph, space: SearchSpace, rng: random.Random) -> Graph | None:
        if "neg" not in space.ops:
            return None
        e = Editable.of(graph, space)
        e.nodes.append(Node("neg", (e.output,)))
        e.output = len(e.nodes) - 1
        return e.build()


class LibraryWalk:
    """A throwaway strategy: the library's layers in order, no population."""

    name: ClassVar[str] = "library_walk"
    needs_population: ClassVar[bool] = False

    def build(self, config, objectives, known):
        return self

    def propose(self, population: Sequence[Member], birth: int, rng: random.Random) -> Proposal:
        assert not population, "a strategy that needs no population is handed none"
        name = library.names()[birth % len(library.names())]
        return Proposal(library.get(name), None, f"library:{name}")


@pytest.fixture
def negate_output(monkeypatch):
    monkeypatch.setitem(MUTATIONS, NegateOutput.name, NegateOutput)


@pytest.fixture
def library_walk(monkeypatch):
    monkeypatch.setitem(STRATEGIES, LibraryWalk.name, LibraryWalk())


def _candidates(store, config):
    search_id, _ = run_to_end(store, config)
    with store.session(readonly=True) as s:
        return sorted(list_candidates(s, search_id, limit=1000).items, key=lambda c: c.birth)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"mode": "evolutoin"},
            "unknown strategy (mode) 'evolutoin' (did you mean 'evolution'?); known: evolution, random",
        ),
        ({"mutations": ["replace_ops"]}, "unknown mutation 'replace_ops' (did you mean 'replace_op'?)"),
        ({"mutations": ["grow"]}, "unknown mutation 'grow'; known: replace_op, rewire_input,"),
    ],
)
def test_unknown_names_are_refused_with_the_registrys_keys(overrides, message):
    with pytest.raises(ConfigError) as info:
        tiny_config(**overrides)
    assert message in str(info.value)


def test_a_registered_mutation_is_accepted_and_makes_the_children(store, negate_output):
    config = tiny_config(budget=6, population=2, tournament=1, mutations=["negate_output"])
    candidates = _candidates(store, config)
    by_id = {c.id: c for c in candidates}
    children = [c for c in candidates if c.parent_id is not None]
    assert children, "the population filled and the strategy mutated"
    space = config.build_space()
    for child in children:
        assert child.mutation == "negate_output"
        parent = Graph.from_dict(by_id[child.parent_id].graph)
        assert Graph.from_dict(child.graph) == NegateOutput().apply(parent, space, random.Random(0))


def test_a_registered_strategy_is_accepted_and_proposes(store, library_walk):
    with pytest.raises(ConfigError, match="did you mean 'library_walk'"):
        tiny_config(mode="library_wlak")
    candidates = _candidates(store, tiny_config(mode="library_walk", budget=3))
    names = library.names()[:3]
    assert [c.mutation for c in candidates] == [f"library:{n}" for n in names]
    assert [c.dsl for c in candidates] == [library.get(n).to_text() for n in names]

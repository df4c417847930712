"""The population holds distinct layers: a duplicate never becomes a member (in the running controller and
in the population read back from the store), the mutator tries again (a bounded number of times) for a
child the search does not have yet, and duplicates still count against the budget, recorded with what
they duplicate."""

from __future__ import annotations

import random

import pytest

import evonorm_search as es
from evonorm_search.search import DuplicateIndex, InProcessEvaluator, Mutator, SearchSpace, random_graph
from evonorm_search.search.controller import build_strategy, create_search, run_search
from evonorm_search.search.selection import AgingEvolution, Member, ParetoTournament
from evonorm_search.store import CandidateStatus, Objective, list_candidates, population

from .conftest import tiny_config

SPACE = SearchSpace(max_ops=6)
ONE_OBJECTIVE = [Objective("accuracy_a", "max")]


class Knows:
    """A `known` test that says yes to the first `yes` children it sees, and counts what it was asked."""

    def __init__(self, yes: int):
        self.yes = yes
        self.seen: list[es.Graph] = []

    def __call__(self, graph: es.Graph) -> bool:
        self.seen.append(graph)
        return len(self.seen) <= self.yes


def test_the_mutator_tries_again_while_the_child_is_known():
    parent = random_graph(SPACE, random.Random(0))
    knows = Knows(yes=2)
    child, _ = Mutator(SPACE).mutate(parent, random.Random(1), knows)
    assert len(knows.seen) == 3 and child == knows.seen[-1]
    assert child != parent and SPACE.contains(child)


def test_the_retries_are_bounded_and_the_last_child_stands():
    parent = random_graph(SPACE, random.Random(0))
    always = Knows(yes=10**6)
    child, name = Mutator(SPACE, max_known_retries=4).mutate(parent, random.Random(1), always)
    assert len(always.seen) == 4  # the first child and three retries were tested; the fifth child stands
    assert child != parent and name
    never = Knows(yes=0)
    Mutator(SPACE).mutate(parent, random.Random(1), never)
    assert len(never.seen) == 1
    with pytest.raises(ValueError, match="max_known_retries must be >= 0"):
        Mutator(SPACE, max_known_retries=-1)


def test_without_a_known_test_mutation_is_unchanged():
    parent = random_graph(SPACE, random.Random(0))
    plain = Mutator(SPACE).mutate(parent, random.Random(5))
    assert Mutator(SPACE).mutate(parent, random.Random(5), Knows(yes=0)) == plain


def test_aging_evolution_asks_the_index_for_known_children():
    parent = es.library.get("evonorm_s0")
    index = DuplicateIndex()
    strategy = AgingEvolution(
        SPACE, 1, ParetoTournament(1, ONE_OBJECTIVE), Mutator(SPACE, max_known_retries=50), known=index.knows
    )
    members = [Member(1, 0, parent, (0.5,))]
    first = strategy.propose(members, 5, random.Random(3)).graph
    index.add(2, es.canonical_hash(first), None)
    again = strategy.propose(members, 5, random.Random(3)).graph  # the same draw, now known: tries again
    assert index.knows(first) and not index.knows(again)


def test_the_controller_wires_the_index_unless_duplicates_are_allowed():
    index = DuplicateIndex()
    objectives = tiny_config().objectives_spec()
    assert build_strategy(tiny_config(), objectives, index).known == index.knows
    allowed = tiny_config(rejection={"duplicates": False, "quality": {"enabled": False}})
    assert build_strategy(allowed, objectives, index).known is None
    assert build_strategy(tiny_config(), objectives).known is None


def test_duplicates_count_and_stay_recorded_but_never_join_the_population(any_store):
    store = any_store
    # Three copies of one layer, then another: with a population of 2, a member list that took duplicates
    # would hold copy 3 and relu; the distinct population is the first evonorm_s0 and relu.
    seeds = ["evonorm_s0", "evonorm_s0", "evonorm_s0", "relu"]
    config = tiny_config(
        budget=10, population=2, tournament=1, space={"seed_layers": seeds}, rejection={"quality": {"enabled": False}}
    )
    search_id = create_search(store, config)
    evaluator = InProcessEvaluator()
    try:
        final = run_search(store, search_id, evaluator, poll_interval=0.05)
    finally:
        evaluator.close()
    with store.session(readonly=True) as s:
        candidates = {c.id: c for c in list_candidates(s, search_id, limit=100).items}
        members = population(s, search_id, 50)
    by_birth = {c.birth: c for c in candidates.values()}
    assert final.proposed == 10 and len(candidates) == 10  # duplicates spend the budget
    assert by_birth[1].duplicate_of == by_birth[2].duplicate_of == by_birth[0].id
    assert by_birth[1].status is CandidateStatus.EVALUATED and by_birth[1].objectives == by_birth[0].objectives
    assert members and all(m.duplicate_of is None for m in members)
    assert {by_birth[1].id, by_birth[2].id}.isdisjoint(m.id for m in members)
    hashes = [m.canonical_hash for m in members]
    assert len(hashes) == len(set(hashes))
    for child in (c for c in candidates.values() if c.parent_id is not None):
        assert candidates[child.parent_id].duplicate_of is None, f"candidate {child.birth} descends from a duplicate"

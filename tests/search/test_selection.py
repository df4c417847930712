"""Pareto tournament, aging evolution, random search, and the objective helpers they stand on."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

import pytest

import evonorm_search as es
from evonorm_search.search import AgingEvolution, Member, Mutator, ParetoTournament, RandomSearch, SearchSpace
from evonorm_search.search.pareto import as_vector, hypervolume, maximise_flags, pareto_mask
from evonorm_search.search.selection import RANDOM, aging_population
from evonorm_search.store import Objective

MAX2 = [Objective("a", "max"), Objective("b", "max")]
MAX_MIN = [Objective("accuracy", "max"), Objective("cost", "min")]
X = es.parse("x")


def members(points):
    return [Member(candidate_id=100 + i, birth=i, graph=X, objectives=tuple(p)) for i, p in enumerate(points)]


def test_pareto_mask_honours_directions_and_keeps_ties():
    points = [(0.9, 0.1), (0.1, 0.9), (0.5, 0.5), (0.4, 0.4), (0.9, 0.1)]
    assert pareto_mask(points, MAX2).tolist() == [True, True, True, False, True]
    # Minimising the second objective: low cost wins.
    assert pareto_mask([(0.9, 5.0), (0.9, 3.0), (0.5, 1.0)], MAX_MIN).tolist() == [False, True, True]
    assert pareto_mask([], MAX2).tolist() == []


def test_hypervolume_against_a_reference():
    assert hypervolume([(0.5, 0.5)], MAX2, [0.0, 0.0]) == pytest.approx(0.25)
    assert hypervolume([(0.5, 0.5), (0.2, 0.9)], MAX2, [0.0, 0.0]) == pytest.approx(0.33)
    assert hypervolume([(0.5, 2.0)], MAX_MIN, [0.0, 4.0]) == pytest.approx(1.0)
    assert hypervolume([], MAX2, [0.0, 0.0]) == 0.0


def test_objective_helpers_name_what_is_wrong():
    assert as_vector({"b": 2, "a": 1}, MAX2) == (1.0, 2.0)
    with pytest.raises(KeyError, match=r"missing: \['b'\]"):
        as_vector({"a": 1}, MAX2)
    with pytest.raises(ValueError, match="direction must be 'max' or 'min'"):
        maximise_flags([Objective("a", "up")])  # type: ignore[arg-type]  # the wrong direction under test


def test_the_tournament_winner_is_always_on_the_samples_front():
    population = members([(0.9, 0.1), (0.1, 0.9), (0.5, 0.5), (0.4, 0.4), (0.2, 0.2), (0.3, 0.1)])
    front_ids = {100, 101, 102}
    whole = ParetoTournament(size=len(population), objectives=MAX2)
    rng = random.Random(0)
    wins = Counter(whole.select(population, rng).candidate_id for _ in range(600))
    assert set(wins) == front_ids
    assert min(wins.values()) > 150  # uniform over the front: about 200 each
    small = ParetoTournament(size=2, objectives=MAX2)
    for _ in range(200):
        winner = small.select(population, rng)
        assert winner in population


def test_the_tournament_honours_a_minimised_objective():
    population = members([(0.8, 10.0), (0.8, 2.0), (0.7, 20.0)])
    t = ParetoTournament(size=3, objectives=MAX_MIN)
    assert {t.select(population, random.Random(s)).candidate_id for s in range(50)} == {101}


def test_the_tournament_reads_the_highest_rung_its_sample_reached():
    """Members on the target rung outrank the rest of the sample whatever their proxy scores (promotion
    put them in rung 0's top); among them the best target mean wins, ties uniform; proxy numbers and
    target numbers are never compared."""
    proxy_best, validated_low, validated_high, validated_tie = members(
        [(0.99, 0.99), (0.1, 0.1), (0.2, 0.2), (0.3, 0.3)]
    )
    validated_low = replace(validated_low, target=0.5)
    validated_high = replace(validated_high, target=0.8)
    validated_tie = replace(validated_tie, target=0.8)
    whole = ParetoTournament(size=4, objectives=MAX2)
    population = [proxy_best, validated_low, validated_high, validated_tie]
    wins = Counter(whole.select(population, random.Random(s)).candidate_id for s in range(300))
    assert set(wins) == {validated_high.candidate_id, validated_tie.candidate_id}
    assert min(wins.values()) > 100  # uniform over the tie
    # A sample without a validated member falls back to the proxies' front.
    assert whole.select([proxy_best, members([(0.1, 0.1)])[0]], random.Random(0)) == proxy_best


def test_tournament_errors():
    with pytest.raises(ValueError, match="tournament size must be >= 1"):
        ParetoTournament(0, MAX2)
    with pytest.raises(ValueError, match="empty population"):
        ParetoTournament(2, MAX2).select([], random.Random(0))


def test_aging_keeps_the_newest_members():
    pool = members([(0.1 * i, 0.0) for i in range(10)])
    random.Random(0).shuffle(pool)
    assert [m.birth for m in aging_population(pool, 4)] == [6, 7, 8, 9]


def test_aging_evolution_seeds_then_fills_randomly_then_mutates_a_tournament_winner():
    space = SearchSpace(max_ops=6)
    strategy = AgingEvolution(
        space, population_size=3, selection=ParetoTournament(2, MAX2), mutator=Mutator(space), seed_layers=["gn_relu"]
    )
    rng = random.Random(0)
    seed = strategy.propose([], 0, rng)
    assert seed.graph == es.library.get("gn_relu") and seed.mutation == "seed:gn_relu" and seed.parent_id is None
    filling = strategy.propose(members([(0.5, 0.5)]), 1, rng)
    assert filling.mutation == RANDOM and filling.parent_id is None and space.contains(filling.graph)
    population = [
        Member(7, 1, es.parse("x * sigmoid(x)"), (0.9, 0.9)),
        Member(8, 2, es.parse("tanh(x)"), (0.1, 0.1)),
        Member(9, 3, es.parse("relu(x)"), (0.2, 0.2)),
    ]
    for _ in range(30):
        child = strategy.propose(population, 4, rng)
        assert child.parent_id in {7, 8, 9}
        parent = next(m for m in population if m.candidate_id == child.parent_id)
        assert child.graph != parent.graph and space.contains(child.graph)


def test_random_search_ignores_the_population():
    space = SearchSpace(max_ops=5)
    strategy = RandomSearch(space, seed_layers=["evonorm_s0"])
    rng = random.Random(3)
    assert strategy.propose([], 0, rng).mutation == "seed:evonorm_s0"
    proposals = [strategy.propose(members([(1.0, 1.0)] * 5), b, rng) for b in range(1, 30)]
    assert all(p.parent_id is None and p.mutation == RANDOM and space.contains(p.graph) for p in proposals)
    assert len({p.graph for p in proposals}) > 20

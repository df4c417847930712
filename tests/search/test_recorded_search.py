"""A short search at a fixed seed gives the candidates and scores recorded here: refactors of the
search (its strategies, mutations and objectives as registries, its write path in groups) keep its
results. A change that moves these on purpose (a new draw order, a different proxy) records them
again and says why.

Evolution runs on one simulated worker (`SimulatedCluster`: scores are a function of the layer's
graph, no training), so its record holds on every CPU: trained near chance, a layer's accuracy after a
few steps moves across a quality threshold between CPU vector paths (recorded on one host, the
evolution's sixth candidate passed on another and every later proposal changed). Random search keeps
real training; its six candidates are static rejections or score far from any threshold."""

from __future__ import annotations

import pytest

from evonorm_search.search.controller import create_search, run_search
from evonorm_search.search.simulated import ManualClock, SimulatedCluster
from evonorm_search.store import list_candidates

from .conftest import run_to_end, tiny_config

EVERY_MUTATION = ["replace_op", "rewire_input", "insert_node", "delete_node", "normalize_node"]

# (birth, DSL text, status, how it was made, objectives rounded to 6 digits)
EVOLUTION_WITH_COST = [
    (
        0,
        "t1 = std(1, batch)\nt2 = var(tanh(min(x, v0) * log(t1)), batch)\ny = relu(t1 + erf(min(t2, t2)))",
        "rejected",
        "random",
        {},
    ),
    (1, "t1 = log(min(v1, v1) + 1)\ny = abs(t1 * x + sigmoid(max(1, -1) / t1))", "rejected", "random", {}),
    (
        2,
        "mean(x, group)",
        "evaluated",
        "random",
        {"accuracy_resnet": 0.4936, "accuracy_mobilenetv2": 0.4728, "cost": 2.0},
    ),
    (
        3,
        "mean(-x, layer)",
        "evaluated",
        "random",
        {"accuracy_resnet": 0.624, "accuracy_mobilenetv2": 0.6496, "cost": 3.0},
    ),
    (
        4,
        "rms(x, channel)",
        "evaluated",
        "random",
        {"accuracy_resnet": 0.5145, "accuracy_mobilenetv2": 0.5337, "cost": 2.0},
    ),
    (5, "t1 = 1 + var(var(v1, group) / min(1, x), layer)\ny = std(min(t1, t1), batch)", "rejected", "random", {}),
    (
        6,
        "sqrt(sqrt(std(log(sqrt(x)), instance)))",
        "evaluated",
        "random",
        {"accuracy_resnet": 0.7118, "accuracy_mobilenetv2": 0.6703, "cost": 6.0},
    ),
    (
        7,
        "mean(rms(-x, group), layer)",
        "evaluated",
        "insert_node",
        {"accuracy_resnet": 0.662, "accuracy_mobilenetv2": 0.6151, "cost": 4.0},
    ),
    (
        8,
        "var(rms(x, channel), group)",
        "evaluated",
        "insert_node",
        {"accuracy_resnet": 0.727, "accuracy_mobilenetv2": 0.7643, "cost": 3.0},
    ),
    (
        9,
        "sqrt(std(log(sqrt(x)), instance))",
        "evaluated",
        "delete_node",
        {"accuracy_resnet": 0.5147, "accuracy_mobilenetv2": 0.5158, "cost": 5.0},
    ),
    (
        10,
        "t1 = rms(-x, group)\ny = max(t1, t1)",
        "evaluated",
        "replace_op",
        {"accuracy_resnet": 0.653, "accuracy_mobilenetv2": 0.6799, "cost": 4.0},
    ),
    (
        11,
        "t1 = -x\nt2 = rms(t1 / std(t1, group), group)\ny = max(t2, t2)",
        "evaluated",
        "normalize_node",
        {"accuracy_resnet": 0.7956, "accuracy_mobilenetv2": 0.8073, "cost": 6.0},
    ),
    (
        12,
        "erf(rms(x, channel))",
        "evaluated",
        "replace_op",
        {"accuracy_resnet": 0.7319, "accuracy_mobilenetv2": 0.7414, "cost": 3.0},
    ),
    (
        13,
        "mean(rms(-x, group), batch)",
        "evaluated",
        "replace_op",
        {"accuracy_resnet": 0.7538, "accuracy_mobilenetv2": 0.7984, "cost": 4.0},
    ),
    (
        14,
        "mean(rms(square(x), group), batch)",
        "evaluated",
        "replace_op",
        {"accuracy_resnet": 0.607, "accuracy_mobilenetv2": 0.599, "cost": 4.0},
    ),
    (
        15,
        "t1 = -x\nt2 = rms(t1 / std(t1, group), group)\ny = v1 + max(t2, t2)",
        "evaluated",
        "insert_node",
        {"accuracy_resnet": 0.7576, "accuracy_mobilenetv2": 0.7523, "cost": 8.0},
    ),
]

RANDOM = [
    (
        0,
        "t1 = std(1, batch)\nt2 = var(tanh(min(x, v0) * log(t1)), batch)\ny = relu(t1 + erf(min(t2, t2)))",
        "rejected",
        "random",
        {},
    ),
    (1, "t1 = log(min(v1, v1) + 1)\ny = abs(t1 * x + sigmoid(max(1, -1) / t1))", "rejected", "random", {}),
    (2, "mean(x, group)", "evaluated", "random", {"accuracy_resnet": 0.55, "accuracy_mobilenetv2": 0.333333}),
    (3, "mean(-x, layer)", "evaluated", "random", {"accuracy_resnet": 0.55, "accuracy_mobilenetv2": 0.333333}),
    (4, "rms(x, channel)", "evaluated", "random", {"accuracy_resnet": 0.333333, "accuracy_mobilenetv2": 0.333333}),
    (5, "t1 = 1 + var(var(v1, group) / min(1, x), layer)\ny = std(min(t1, t1), batch)", "rejected", "random", {}),
]


def _recorded_run(store, **overrides):
    search_id, _ = run_to_end(store, tiny_config(**overrides))
    return _candidates(store, search_id)


def _candidates(store, search_id: int):
    with store.session(readonly=True) as s:
        candidates = sorted(list_candidates(s, search_id, limit=1000).items, key=lambda c: c.birth)
    return [
        (c.birth, c.dsl, str(c.status), c.mutation, {k: round(v, 6) for k, v in (c.objectives or {}).items()})
        for c in candidates
    ]


def _assert_same(got, expected):
    assert [row[:4] for row in got] == [row[:4] for row in expected]
    for (birth, *_, objectives), (_, *_, recorded) in zip(got, expected, strict=True):
        assert objectives == pytest.approx(recorded, abs=2e-6), f"candidate {birth}"


def test_evolution_with_the_cost_objective_gives_the_recorded_candidates(store):
    config = tiny_config(budget=16, population=4, tournament=2, mutations=EVERY_MUTATION, objectives={"cost": "plan"})
    one_worker = SimulatedCluster(1, clock=ManualClock(), time_factor=0.01, seed=0)
    search_id = create_search(store, config)
    run_search(store, search_id, one_worker, poll_interval=0.5)
    got = _candidates(store, search_id)
    _assert_same(got, EVOLUTION_WITH_COST)
    # The record covers four of the five mutations (rewire_input made no child at this seed).
    assert {row[3] for row in got} >= {"random", "insert_node", "delete_node", "replace_op", "normalize_node"}


def test_random_search_gives_the_recorded_candidates(store):
    _assert_same(_recorded_run(store, mode="random", budget=6), RANDOM)

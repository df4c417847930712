"""A short search at a fixed seed gives the candidates and scores recorded here, computed before the
search's strategies, mutations and objectives became registries: refactors of the search keep its
results. Recorded on CPU (one training thread); a change that moves these numbers on purpose (a new
draw order, a different proxy) records them again and says why."""

from __future__ import annotations

import pytest

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
        {"accuracy_resnet": 0.55, "accuracy_mobilenetv2": 0.333333, "cost": 16.0},
    ),
    (
        3,
        "mean(-x, layer)",
        "evaluated",
        "random",
        {"accuracy_resnet": 0.55, "accuracy_mobilenetv2": 0.333333, "cost": 16.0},
    ),
    (
        4,
        "rms(x, channel)",
        "evaluated",
        "random",
        {"accuracy_resnet": 0.333333, "accuracy_mobilenetv2": 0.333333, "cost": 20.0},
    ),
    (5, "t1 = 1 + var(var(v1, group) / min(1, x), layer)\ny = std(min(t1, t1), batch)", "rejected", "random", {}),
    (6, "sqrt(sqrt(std(log(sqrt(x)), instance)))", "rejected", "random", {}),
    (7, "-x", "evaluated", "random", {"accuracy_resnet": 0.583333, "accuracy_mobilenetv2": 0.7, "cost": 20.0}),
    (
        8,
        "mean(mean(-x, layer), channel)",
        "evaluated",
        "insert_node",
        {"accuracy_resnet": 0.55, "accuracy_mobilenetv2": 0.333333, "cost": 16.0},
    ),
    (
        9,
        "mean(log(x), layer)",
        "evaluated",
        "replace_op",
        {"accuracy_resnet": 0.333333, "accuracy_mobilenetv2": 0.316667, "cost": 20.0},
    ),
    (10, "min(x, x)", "evaluated", "replace_op", {"accuracy_resnet": 0.7, "accuracy_mobilenetv2": 0.7, "cost": 20.0}),
    (
        11,
        "min(x / std(x, group), x)",
        "evaluated",
        "normalize_node",
        {"accuracy_resnet": 0.766667, "accuracy_mobilenetv2": 0.716667, "cost": 32.0},
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
    got = _recorded_run(
        store, budget=12, population=4, tournament=2, mutations=EVERY_MUTATION, objectives={"cost": "plan"}
    )
    _assert_same(got, EVOLUTION_WITH_COST)


def test_random_search_gives_the_recorded_candidates(store):
    _assert_same(_recorded_run(store, mode="random", budget=6), RANDOM)

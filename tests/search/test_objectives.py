"""The objective registry: a kind is one row, and the config, the evaluator, the store, scoring, the CLI
and the API follow it; names are built and read in the registry only."""

from __future__ import annotations

import pytest

from evonorm_search.ir import Graph, parse
from evonorm_search.search import InProcessEvaluator
from evonorm_search.search.objectives import (
    OBJECTIVE_KINDS,
    Evaluated,
    ObjectiveKind,
    accuracies,
    describe,
    heading,
    mean_accuracy,
)
from evonorm_search.search.scoring import LayerToScore, score_layers
from evonorm_search.store import CandidateStatus, Objective, get_search, list_candidates, pareto_front
from service.views import objective_out

from .conftest import run_to_end, tiny_config


def _node_count(evaluated: Evaluated, architecture: str | None) -> float:
    return float(len(evaluated.graph.nodes))


# A throwaway kind, measured once per layer and minimised: the number of graph nodes.
NODES = ObjectiveKind(
    name="nodes",
    direction="min",
    label="graph nodes",
    per_architecture=False,
    wanted=lambda config: True,
    reference=lambda config: 100.0,
    value=_node_count,
)


@pytest.fixture
def nodes_kind(monkeypatch):
    monkeypatch.setitem(OBJECTIVE_KINDS, NODES.name, NODES)
    return NODES


def test_a_registered_kind_joins_every_search_config(nodes_kind):
    config = tiny_config()
    assert config.objectives_spec() == [
        Objective("accuracy_resnet", "max", 0.0, "accuracy"),
        Objective("accuracy_mobilenetv2", "max", 0.0, "accuracy"),
        Objective("nodes", "min", 100.0, "nodes"),
    ]
    assert describe(config.objectives_spec()[-1]).label == "graph nodes"


def test_a_registered_kind_is_computed_stored_and_selected_on(store, nodes_kind):
    search_id, _ = run_to_end(store, tiny_config(budget=4, population=2, tournament=1))
    with store.session(readonly=True) as s:
        stored = get_search(s, search_id).objective_specs
        candidates = list_candidates(s, search_id, limit=100).items
        front = pareto_front(s, search_id, ["nodes"])
    assert stored[-1] == Objective("nodes", "min", 100.0, "nodes")
    evaluated = [c for c in candidates if c.status is CandidateStatus.EVALUATED]
    assert evaluated
    for c in evaluated:
        assert c.objectives["nodes"] == len(Graph.from_dict(c.graph).nodes)
        # The mean accuracy reads accuracy objectives only.
        assert mean_accuracy(c.objectives) == pytest.approx(
            (c.objectives["accuracy_resnet"] + c.objectives["accuracy_mobilenetv2"]) / 2
        )
    fewest = min(c.objectives["nodes"] for c in evaluated)
    assert {c.objectives["nodes"] for c in front} == {fewest}


def test_scoring_reports_accuracies_beside_a_registered_kind(nodes_kind):
    config = tiny_config()
    graph = parse("x / std(x, group)")
    evaluator = InProcessEvaluator()
    try:
        (score,) = score_layers([LayerToScore(graph, "norm")], [config.proxy_spec()], evaluator, poll_interval=0.01)
    finally:
        evaluator.close()
    assert score.layer == graph.to_text() and not score.errors
    assert set(score.runs[0].accuracies) == {"resnet", "mobilenetv2"}
    assert score.mean == pytest.approx(sum(score.runs[0].accuracies.values()) / 2)


def test_reports_show_objectives_from_their_rows(nodes_kind):
    values = {"accuracy_resnet": 0.5, "accuracy_mobilenetv2": 0.7, "cost": 20.0, "nodes": 3.0}
    assert accuracies(values) == {"resnet": 0.5, "mobilenetv2": 0.7}
    assert mean_accuracy(values) == pytest.approx(0.6)
    assert mean_accuracy({"cost": 20.0}) is None
    assert [heading(name) for name in values] == ["resnet", "mobilenetv2", "cost", "nodes"]
    # An objective stored without a kind (named by hand through the API) is read by its name.
    assert describe(Objective("accuracy_resnet", "max")).architecture == "resnet"
    assert describe(Objective("nodes", "min")).kind == "nodes"
    assert describe(Objective("latency", "min")).kind is None
    # The API hands the same description to the dashboard.
    shown = objective_out(Objective("nodes", "min", 100.0, "nodes"))
    assert (shown.kind, shown.architecture, shown.label) == ("nodes", None, "graph nodes")

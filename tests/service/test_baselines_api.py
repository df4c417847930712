"""Baselines and validation results through the API: served with their search, kept out of its counts."""

from __future__ import annotations

import math

import pytest

import evonorm_search as es
from evonorm_search import store as st
from evonorm_search.symbolic import canonical_hash

from .conftest import client_for, settings_for
from .factories import populate


def _add_evaluated_baseline(s, search_id: int, index: int, name: str, values: dict[str, float]) -> int:
    graph = es.library.get(name)
    baseline = st.add_baseline(
        s,
        search_id,
        index=index,
        label=name,
        graph=graph.to_dict(),
        dsl=graph.to_text(),
        canonical_hash=canonical_hash(graph),
    )
    st.complete_candidate(s, baseline.id, values)
    return baseline.id


@pytest.fixture
def served(store_url):
    with st.open_store(store_url) as store:
        search = populate(store, candidates=12, seed=3)
        with store.session() as s:
            before = st.search_summary(s, search.id)
            objectives = {name: 0.5 for name in st.get_search(s, search.id).objective_names}
            gn_relu = _add_evaluated_baseline(s, search.id, 0, "gn_relu", objectives)
            front = st.pareto_front(s, search.id)[0].id
            for seed, accuracy in ((1000, 0.6), (1001, 0.8)):
                st.record_validation(
                    s,
                    front,
                    seed=seed,
                    metrics={
                        "resnet": {"accuracy": accuracy, "loss": 1.0},
                        "mobilenetv2": {"accuracy": accuracy - 0.2},
                    },
                    durations={"resnet": 1.0, "mobilenetv2": 2.0},
                )
        with client_for(settings_for(store_url)) as client:
            yield client, search.id, gn_relu, front, before


def test_the_search_serves_its_baselines_outside_its_counts_and_pages(served):
    client, search_id, gn_relu, _, before = served
    status = client.get(f"/api/v1/searches/{search_id}").json()
    assert status["links"]["baselines"] == f"/api/v1/searches/{search_id}/baselines"
    assert status["counts"]["total"] == before.total and status["front_size"] == before.front_size
    baselines = client.get(status["links"]["baselines"]).json()
    assert [(b["id"], b["label"], b["role"], b["status"]) for b in baselines] == [
        (gn_relu, "gn_relu", "baseline", "evaluated")
    ]
    assert baselines[0]["mean_accuracy"] == pytest.approx(0.5)
    pages = client.get(f"/api/v1/searches/{search_id}/candidates", params={"limit": 500}).json()["items"]
    assert gn_relu not in {c["id"] for c in pages} and all(c["role"] == "candidate" for c in pages)
    front = client.get(f"/api/v1/searches/{search_id}/pareto").json()["points"]
    assert gn_relu not in {p["candidate_id"] for p in front}
    assert client.get("/api/v1/searches/987654/baselines").status_code == 404


def test_a_candidate_serves_its_validation_results(served):
    client, _, gn_relu, front, _ = served
    detail = client.get(f"/api/v1/candidates/{front}").json()
    validation = detail["validation"]
    assert validation["seeds"] == [1000, 1001]
    assert validation["per_architecture"]["resnet"]["mean"] == pytest.approx(0.7)
    assert validation["per_architecture"]["resnet"]["std"] == pytest.approx(math.sqrt(0.02))
    assert validation["per_architecture"]["mobilenetv2"]["mean"] == pytest.approx(0.5)
    assert validation["mean"] == pytest.approx(0.6)  # seeds score 0.5 and 0.7
    assert [r["accuracies"]["resnet"] for r in validation["runs"]] == pytest.approx([0.6, 0.8])
    # Rows per seed stay in the evaluation history, and out of the proxy metrics.
    rows = [e for e in detail["evaluations"] if e["phase"] == "validation"]
    assert sorted((e["architecture"], e["attempt"]) for e in rows) == [
        ("mobilenetv2", 1000),
        ("mobilenetv2", 1001),
        ("resnet", 1000),
        ("resnet", 1001),
    ]
    assert all("validation" not in phases for phases in detail["metrics_by_architecture"].values())
    baseline = client.get(f"/api/v1/candidates/{gn_relu}").json()
    assert (baseline["role"], baseline["label"], baseline["validation"]) == ("baseline", "gn_relu", None)


def test_validation_results_of_an_unevaluated_candidate_are_refused(store_url):
    with st.open_store(store_url) as store, store.session() as s:
        search = st.create_search(s, name="x", config={}, objectives=[{"name": "accuracy_a", "direction": "max"}])
        graph = es.library.get("relu")
        pending = st.add_candidate(s, search.id, graph=graph, dsl=graph.to_text(), canonical_hash="h")
        with pytest.raises(st.InvalidInputError, match="only evaluated layers are validated"):
            st.record_validation(s, pending.id, seed=1, metrics={"a": {"accuracy": 0.5}}, durations={})

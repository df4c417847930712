"""Reads over a populated database, on SQLite and PostgreSQL: search list and status, candidate pages,
candidate detail, Pareto fronts, exports."""

from __future__ import annotations

import ast

import pytest
import torch

import evonorm_search as es
from evonorm_search import store as st
from service import repository as repo
from service.formulas import FormulaCache

from .conftest import Populated, client_for, settings_for
from .factories import OBJECTIVES

API = "/api/v1"


def test_search_list_is_newest_first_and_pages_with_cursors(populated: Populated):
    client = populated.client
    first = client.get(f"{API}/searches", params={"limit": 1})
    assert first.status_code == 200
    body = first.json()
    assert [s["id"] for s in body["items"]] == [populated.stopped.id]
    second = client.get(f"{API}/searches", params={"limit": 1, "cursor": body["next_cursor"]}).json()
    assert [s["id"] for s in second["items"]] == [populated.finished.id]
    assert second["next_cursor"] is None
    stopped = client.get(f"{API}/searches", params={"state": "stopped"}).json()["items"]
    assert [s["id"] for s in stopped] == [populated.stopped.id]
    # Stored without kinds (bare names), the objectives are still described by the registry's rows.
    assert stopped[0]["objectives"][0] == {
        "name": "accuracy_resnet",
        "direction": "max",
        "reference": 0.0,
        "kind": "accuracy",
        "architecture": "resnet",
        "label": "accuracy (resnet)",
    }
    assert stopped[0]["objectives"][2] == {
        "name": "cost",
        "direction": "min",
        "reference": 10.0,
        "kind": "cost",
        "architecture": None,
        "label": "cost (bytes per element)",
    }


def test_status_counts_every_candidate_by_status_and_reason(populated: Populated):
    search = populated.finished
    status = populated.client.get(f"{API}/searches/{search.id}").json()
    counts = status["counts"]
    assert status["state"] == "completed"
    assert counts["total"] == counts["finished"] == 40
    assert counts["by_status"]["evaluated"] == counts["evaluated"] == len(search.evaluated)
    assert counts["by_status"]["failed"] == len(search.failed)
    assert counts["by_status"]["pending"] == counts["by_status"]["running"] == 0
    for stage, ids in search.rejected.items():
        assert counts["rejected_by_stage"][str(stage)] == len(ids)
    assert counts["by_status"]["rejected"] == sum(len(ids) for ids in search.rejected.values())
    assert status["progress"] == 1.0
    assert status["estimated_seconds_to_finish"] == 0.0
    assert status["links"]["events"] == f"{API}/searches/{search.id}/events"
    assert status["config"]["name"] == "finished"


def test_status_best_values_honour_each_direction(populated: Populated):
    search = populated.finished
    status = populated.client.get(f"{API}/searches/{search.id}").json()
    values = _evaluated_objectives(populated, search.id)
    for objective in OBJECTIVES:
        name = objective["name"]
        pick = max if objective["direction"] == "max" else min
        assert status["best"][name]["value"] == pick(v[name] for v in values.values())
        assert values[status["best"][name]["candidate_id"]][name] == status["best"][name]["value"]
    assert status["hypervolume"] > 0
    assert 1 <= status["front_size"] <= len(values)


def _evaluated_objectives(populated: Populated, search_id: int) -> dict[int, dict[str, float]]:
    page = populated.client.get(
        f"{API}/searches/{search_id}/candidates", params={"status": "evaluated", "limit": 500}
    ).json()
    return {c["id"]: c["objectives"] for c in page["items"]}


def test_candidate_pages_walk_every_candidate_once_in_birth_order(populated: Populated):
    seen, cursor = [], None
    while True:
        params = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        page = populated.client.get(f"{API}/searches/{populated.finished.id}/candidates", params=params).json()
        seen += [c["birth"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(range(40))


def test_candidates_filter_by_status_and_reason(populated: Populated):
    search = populated.finished
    url = f"{API}/searches/{search.id}/candidates"
    failed = populated.client.get(url, params={"status": "failed"}).json()["items"]
    assert sorted(c["id"] for c in failed) == sorted(search.failed)
    rejected = populated.client.get(url, params={"reason": ["duplicate", "numeric"]}).json()["items"]
    expected = search.rejected[st.RejectionStage.DUPLICATE] + search.rejected[st.RejectionStage.NUMERIC]
    assert sorted(c["id"] for c in rejected) == sorted(expected)
    assert {c["rejection_stage"] for c in rejected} == {"duplicate", "numeric"}
    duplicate = next(c for c in rejected if c["rejection_stage"] == "duplicate")
    assert duplicate["duplicate_of"] == search.evaluated[0]


@pytest.mark.parametrize(("objective", "order"), [("accuracy_resnet", None), ("cost", None), ("cost", "desc")])
def test_candidates_sort_by_any_objective_across_pages(populated: Populated, objective: str, order: str | None):
    url = f"{API}/searches/{populated.finished.id}/candidates"
    values, cursor = [], None
    while True:
        params = {"sort": objective, "limit": 5, **({"order": order} if order else {})}
        page = populated.client.get(url, params={**params, **({"cursor": cursor} if cursor else {})}).json()
        values += [c["objectives"][objective] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    direction = next(o["direction"] for o in OBJECTIVES if o["name"] == objective)
    best_first = direction == "max"
    descending = best_first if order is None else order == "desc"
    assert len(values) == len(populated.finished.evaluated)
    assert values == sorted(values, reverse=descending)


def test_candidate_detail_has_formula_metrics_lineage_and_history(populated: Populated):
    search = populated.finished
    child = next(i for i in search.children if i in search.evaluated)
    detail = populated.client.get(f"{API}/candidates/{child}").json()
    graph = es.Graph.from_dict(detail["graph"])
    assert detail["formula"]["latex"] == es.latex(graph)
    assert detail["formula"]["canonical"] == es.canonical_form(graph)
    assert detail["canonical_hash"] == es.canonical_hash(graph)
    assert set(detail["metrics_by_architecture"]) == {"resnet", "mobilenetv2"}
    assert detail["metrics_by_architecture"]["resnet"]["proxy"]["accuracy"] == detail["objectives"]["accuracy_resnet"]
    assert {(e["architecture"], e["phase"]) for e in detail["evaluations"]} == {
        (a, p) for a in ("resnet", "mobilenetv2") for p in ("quality", "proxy")
    }
    assert detail["lineage"][0]["id"] == detail["parent_id"]
    assert detail["lineage"][-1]["id"] in search.evaluated[:4]  # the root is a library seed layer
    assert detail["mutation"] == {"kind": "replace_op"}
    assert detail["links"]["module"] == f"{API}/candidates/{child}/module.py"


def test_lineage_limit_truncates(populated: Populated):
    child = populated.finished.children[-1]
    full = populated.client.get(f"{API}/candidates/{child}").json()
    none = populated.client.get(f"{API}/candidates/{child}", params={"lineage_limit": 0}).json()
    assert none["lineage"] == [] and none["lineage_truncated"] is True
    assert full["lineage_truncated"] is False and len(full["lineage"]) >= 1


def _dominates(a: dict[str, float], b: dict[str, float], objectives: list[dict]) -> bool:
    better = [
        a[o["name"]] >= b[o["name"]] if o["direction"] == "max" else a[o["name"]] <= b[o["name"]] for o in objectives
    ]
    strictly = [a[o["name"]] != b[o["name"]] for o in objectives]
    return all(better) and any(strictly)


@pytest.mark.parametrize("chosen", [None, ["accuracy_resnet", "accuracy_mobilenetv2"], ["cost", "accuracy_resnet"]])
def test_search_front_is_exactly_the_non_dominated_set(populated: Populated, chosen: list[str] | None):
    search_id = populated.finished.id
    params = {"objective": chosen} if chosen else {}
    front = populated.client.get(f"{API}/searches/{search_id}/pareto", params=params).json()
    names = chosen or [o["name"] for o in OBJECTIVES]
    objectives = [next(o for o in OBJECTIVES if o["name"] == n) for n in names]
    assert [o["name"] for o in front["objectives"]] == names
    values = _evaluated_objectives(populated, search_id)
    expected = {i for i, v in values.items() if not any(_dominates(w, v, objectives) for w in values.values())}
    assert {p["candidate_id"] for p in front["points"]} == expected
    first = objectives[0]
    ordered = [p["objectives"][first["name"]] for p in front["points"]]
    assert ordered == sorted(ordered, reverse=first["direction"] == "max")
    assert all(p["latex"] for p in front["points"])


def test_front_points_of_a_fresh_server_render_formulas_from_the_stored_graphs(populated: Populated):
    """Fronts are read lean (no graphs); a server that has cached no formula yet reads the graphs of the
    points it must render, and renders each point's own layer."""
    with client_for(settings_for(populated.url)) as fresh:
        fronts = [
            fresh.get(f"{API}/searches/{populated.finished.id}/pareto").json(),
            fresh.get(f"{API}/pareto", params={"architecture": ["resnet", "mobilenetv2"]}).json(),
        ]
    with st.open_store(populated.url) as store, store.session(readonly=True) as s:
        for front in fronts:
            assert front["points"]
            for point in front["points"]:
                graph = es.Graph.from_dict(st.get_candidate(s, point["candidate_id"]).graph)
                assert point["latex"] == es.latex(graph)


def test_a_formula_dropped_from_the_cache_after_a_lean_read_reads_its_graph_then(populated: Populated):
    """`graph_reader` serves prefetched graphs, and reads any other from the database when asked."""
    candidate_id = populated.finished.evaluated[0]
    with st.open_store(populated.url) as store:
        with store.session(readonly=True) as s:
            stored = st.get_candidate(s, candidate_id).graph
        prefetched = {-1: {"sentinel": True}}
        graph_of = repo.graph_reader(store, prefetched)
        assert graph_of(-1) is prefetched[-1]
        assert graph_of(candidate_id) == stored
        formulas = FormulaCache(4096)
        calls = []

        def reading() -> dict:
            calls.append(candidate_id)
            return graph_of(candidate_id)

        first = formulas.of_stored("hash-of-it", reading)
        assert first.latex == es.latex(es.Graph.from_dict(stored)) and calls == [candidate_id]
        assert formulas.has("hash-of-it")
        assert formulas.of_stored("hash-of-it", reading) == first and calls == [candidate_id]  # cached: not read


def test_front_across_searches_pools_their_candidates(populated: Populated):
    front = populated.client.get(f"{API}/pareto", params={"architecture": ["resnet", "mobilenetv2"]}).json()
    assert [o["name"] for o in front["objectives"]] == ["accuracy_resnet", "accuracy_mobilenetv2"]
    assert front["search_ids"] == sorted({p["search_id"] for p in front["points"]})
    pooled = {**_evaluated_objectives(populated, populated.finished.id)}
    pooled.update(_evaluated_objectives(populated, populated.stopped.id))
    objectives = OBJECTIVES[:2]
    expected = {i for i, v in pooled.items() if not any(_dominates(w, v, objectives) for w in pooled.values())}
    assert {p["candidate_id"] for p in front["points"]} == expected
    only = populated.client.get(f"{API}/pareto", params={"objective": "cost", "search_id": populated.stopped.id}).json()
    assert only["search_ids"] == [populated.stopped.id]
    assert {p["search_id"] for p in only["points"]} == {populated.stopped.id}


def test_module_export_is_a_standalone_module_that_computes_the_layer(populated: Populated):
    candidate_id = populated.finished.evaluated[0]  # evonorm_s0
    response = populated.client.get(f"{API}/candidates/{candidate_id}/module.py", params={"class_name": "Found"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/x-python")
    assert f'filename="evonorm_candidate_{candidate_id}.py"' in response.headers["content-disposition"]
    tree = ast.parse(response.text)
    assert "Found" in {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    namespace: dict = {}
    exec(compile(tree, "exported.py", "exec"), namespace)
    exported = namespace["Found"](8, groups=2)
    reference = es.NormAct("evonorm_s0", 8, groups=2, backend="torch")
    x = torch.randn(2, 8, 3, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(exported(x), reference(x))


def test_module_export_records_the_candidates_search_and_scores(populated: Populated):
    candidate_id = populated.finished.evaluated[2]
    source = populated.client.get(f"{API}/candidates/{candidate_id}/module.py").text
    namespace: dict = {}
    exec(compile(source, "exported.py", "exec"), namespace)
    provenance = namespace["PROVENANCE"]
    with st.open_store(populated.url) as store, store.session(readonly=True) as s:
        stored = st.get_candidate(s, candidate_id)
        assert (provenance["source"], provenance["search"]) == ("candidate", populated.finished.id)
        assert (provenance["candidate"], provenance["status"]) == (candidate_id, "evaluated")
        assert provenance["objectives"] == stored.objectives and provenance["dsl"] == stored.dsl
    assert f"candidate: {candidate_id}" in namespace["__doc__"]


def test_module_export_default_class_name_and_bad_class_names(populated: Populated):
    candidate_id = populated.finished.evaluated[1]
    default = populated.client.get(f"{API}/candidates/{candidate_id}/module.py")
    assert f"class EvoNormCandidate{candidate_id}(" in default.text
    for bad in ("1abc", "class", "a-b"):
        response = populated.client.get(f"{API}/candidates/{candidate_id}/module.py", params={"class_name": bad})
        assert response.status_code == 422, bad
        assert response.json()["code"] == "invalid_request"

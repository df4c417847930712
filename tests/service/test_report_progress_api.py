"""GET /api/v1/searches/{id}/report: the report `evonorm-search report` writes, served as one HTML page;
GET /api/v1/searches/{id}/progress: the best value so far per objective (the dashboard's progress
chart) with the baselines. An unknown search is a 404 in the API's error shape for both."""

from __future__ import annotations

import html

import pytest

from evonorm_search import store as st
from evonorm_search.search.objectives import accuracy_name
from evonorm_search.search.report import SECTION_TITLES

from .conftest import AUTH, client_for, settings_for
from .factories import ladder_search_database


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    url, search_id = ladder_search_database(tmp_path_factory.mktemp("report-api"))
    with client_for(settings_for(url)) as client:
        yield client, url, search_id


def test_the_report_is_one_self_contained_html_page(served):
    client, url, search_id = served
    response = client.get(f"/api/v1/searches/{search_id}/report", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert all(f"<h2>{html.escape(title)}</h2>" in page for title in SECTION_TITLES)
    assert "http://" not in page and "https://" not in page
    assert page.count('<img src="data:image/png;base64,') >= 3  # two objectives' progress and the front
    with st.open_store(url) as store, store.session(readonly=True) as s:
        front = st.pareto_front(s, search_id)
        baselines = st.baselines_of(s, search_id)
    assert front and all(html.escape(c.dsl.strip()) in page for c in front)
    assert baselines and all(f"vs {b.label}" in page for b in baselines)


def test_the_progress_is_each_change_of_the_best_value_with_the_baselines_beside(served):
    client, url, search_id = served
    response = client.get(f"/api/v1/searches/{search_id}/progress", headers=AUTH)
    assert response.status_code == 200, response.text
    progress = response.json()
    with st.open_store(url) as store, store.session(readonly=True) as s:
        results = st.results_in_commit_order(s, search_id)
        baselines = st.baselines_of(s, search_id)
    assert progress["search"] == search_id and progress["evaluated"] == len(results) > 0
    for objective in progress["objectives"]:
        name = objective["name"]
        values = [values[name] for _, values in results]
        # Replayed by hand: a step wherever a value beats every value before it.
        expected = [
            {"evaluated": i + 1, "candidate_id": results[i][0], "value": v}
            for i, v in enumerate(values)
            if i == 0 or v > max(values[:i])
        ]
        assert objective["steps"] == expected and objective["direction"] == "max"
    assert [o["name"] for o in progress["objectives"]] == [accuracy_name("resnet"), accuracy_name("mobilenetv2")]
    assert progress["baselines"] == [
        {"candidate_id": b.id, "label": b.label, "objectives": b.objectives} for b in baselines
    ]


@pytest.mark.parametrize("resource", ["report", "progress"])
def test_an_unknown_search_has_no_report_and_no_progress(served, resource):
    client, _, _ = served
    response = client.get(f"/api/v1/searches/99/{resource}", headers=AUTH)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["code"] == "not_found" and "99" in body["message"]

"""/healthz, /readyz, /metrics, and the kernel export that waits for the Triton compiler."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

import evonorm_search as es
from evonorm_search import store as st

from .conftest import client_for, settings_for
from .factories import populate


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'evonorm.db'}"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_health_and_readiness(url: str):
    with client_for(settings_for(url)) as client:
        assert client.get("/healthz").json() == {"status": "ok", "version": es.__version__}
        ready = client.get("/readyz").json()
        assert ready["status"] == "ready" and ready["database"] == "sqlite"
        assert ready["schema_revision"] == st.schema_status(url).head


def test_metrics_count_requests_by_route_template_not_by_raw_path(url: str):
    with st.open_store(url) as store:
        search = populate(store, candidates=3)
    with client_for(settings_for(url)) as client:
        for path in (f"/api/v1/searches/{search.id}", "/api/v1/searches/424242", "/no/such/path", "/no/other/path"):
            client.get(path)
        values = samples(client.get("/metrics").text)
    route = "/api/v1/searches/{search_id}"
    ok = ("evonorm_http_requests_total", (("method", "GET"), ("route", route), ("status", "200")))
    missing = ("evonorm_http_requests_total", (("method", "GET"), ("route", route), ("status", "404")))
    unmatched = ("evonorm_http_requests_total", (("method", "GET"), ("route", "<unmatched>"), ("status", "404")))
    assert values[ok] == 1 and values[missing] == 1 and values[unmatched] == 2
    count = ("evonorm_http_request_duration_seconds_count", (("method", "GET"), ("route", route)))
    assert values[count] == 2
    assert values[("evonorm_searches", (("state", "completed"),))] == 1
    assert values[("evonorm_searches", (("state", "running"),))] == 0
    assert values[("evonorm_database_up", ())] == 1


def test_each_app_has_its_own_registry(url: str):
    with client_for(settings_for(url)) as first, client_for(settings_for(url)) as second:
        first.get("/healthz")
        values = samples(second.get("/metrics").text)
    healthz = ("evonorm_http_requests_total", (("method", "GET"), ("route", "/healthz"), ("status", "200")))
    assert healthz not in values


def test_kernel_export_serves_the_compilers_source_of_the_candidate(url: str):
    with st.open_store(url) as store:
        search = populate(store, candidates=1)
    with client_for(settings_for(url)) as client:
        served = client.get(f"/api/v1/candidates/{search.evaluated[0]}/kernels.py")
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("text/x-python")
    assert served.text == es.kernel_source(es.library.get("evonorm_s0"))
    assert "triton" in served.text

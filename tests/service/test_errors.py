"""Whatever a client sends, a 4xx with a JSON message; 5xx only for the server's own trouble."""

from __future__ import annotations

import pytest

from service.settings import Settings

from .conftest import AUTH, client_for, settings_for

API = "/api/v1"


@pytest.fixture
def client(tmp_path):
    with client_for(settings_for(f"sqlite:///{tmp_path / 'evonorm.db'}", max_body_bytes=4096)) as client:
        yield client


def _is_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code and body["message"], body
    return body


@pytest.mark.parametrize(
    ("path", "code"),
    [
        (f"{API}/searches/99", "not_found"),
        (f"{API}/searches/99/candidates", "not_found"),
        (f"{API}/searches/99/pareto", "not_found"),
        (f"{API}/searches/99/events", "not_found"),
        (f"{API}/searches/99/report", "not_found"),
        (f"{API}/searches/99/progress", "not_found"),
        (f"{API}/candidates/99", "not_found"),
        (f"{API}/candidates/99/module.py", "not_found"),
        (f"{API}/pareto?objective=a&search_id=99", "not_found"),
        ("/api/v2/searches", "not_found"),
        ("/static/nothing.js", "not_found"),
    ],
)
def test_unknown_ids_and_paths_are_404(client, path: str, code: str):
    _is_error(client.get(path), 404, code)


@pytest.mark.parametrize(
    "path",
    [
        f"{API}/searches/0",
        f"{API}/searches/-1",
        f"{API}/searches/abc",
        f"{API}/searches/{2**64}",
        f"{API}/candidates/1.5",
        f"{API}/searches?limit=0",
        f"{API}/searches?limit=100000",
        f"{API}/searches?state=paused",
        f"{API}/searches?cursor={'x' * 2000}",
        f"{API}/pareto",
        f"{API}/pareto?search_id=0&objective=a",
        f"{API}/candidates/1?lineage_limit=-1",
    ],
)
def test_malformed_parameters_are_422(client, path: str):
    body = _is_error(client.get(path), 422, "invalid_request")
    assert "Traceback" not in body["message"]


def test_store_level_input_errors_are_422(client):
    client.post(f"{API}/searches", params={"start": "false"}, json={"name": "s", "budget": 2}, headers=AUTH)
    search = client.get(f"{API}/searches").json()["items"][0]["id"]
    for params in ({"cursor": "garbage!"}, {"sort": "no_such_objective"}, {"status": "evaluated", "cursor": "e30"}):
        _is_error(client.get(f"{API}/searches/{search}/candidates", params=params), 422, "invalid_input")
    _is_error(client.get(f"{API}/searches/{search}/pareto", params={"objective": "nope"}), 422, "invalid_input")
    _is_error(client.get(f"{API}/searches", params={"cursor": "garbage!"}), 422, "invalid_input")


def test_wrong_methods_are_405(client):
    _is_error(client.delete(f"{API}/searches"), 405, "method_not_allowed")
    _is_error(client.get(f"{API}/layers/check"), 405, "method_not_allowed")


def test_bodies_over_the_limit_are_413_whether_declared_or_streamed(client):
    big = b"y = x\n" + b"#" * 10_000
    declared = client.post(f"{API}/layers/check", content=big, headers={"Content-Type": "text/plain"})
    body = _is_error(declared, 413, "payload_too_large")
    assert "4096 bytes" in body["message"]

    def chunks():
        for _ in range(10):
            yield b"#" * 1000

    streamed = client.post(f"{API}/layers/check", content=chunks(), headers={"Content-Type": "text/plain"})
    _is_error(streamed, 413, "payload_too_large")
    launch = client.post(f"{API}/searches", content=big, headers={**AUTH, "Content-Type": "application/yaml"})
    _is_error(launch, 413, "payload_too_large")
    assert client.get(f"{API}/searches").json()["items"] == []


def test_an_unreachable_database_is_503_on_reads_and_readiness(tmp_path):
    # A directory where the database file should be: every open fails with the store's message.
    (tmp_path / "evonorm.db").mkdir()
    with client_for(settings_for(f"sqlite:///{tmp_path / 'evonorm.db'}")) as client:
        assert client.get("/healthz").status_code == 200
        ready = _is_error(client.get("/readyz"), 503, "database_unavailable")
        assert "directory" in ready["message"]
        _is_error(client.get(f"{API}/searches"), 503, "database_unavailable")
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert "evonorm_database_up 0.0" in metrics.text


def test_a_bug_is_a_500_with_a_json_body_and_no_details(tmp_path, caplog):
    def broken_launcher(settings: Settings, store):
        raise RuntimeError("secret internal detail")

    settings = settings_for(f"sqlite:///{tmp_path / 'evonorm.db'}")
    with client_for(settings, launcher_factory=broken_launcher) as client:
        response = client.post(f"{API}/searches/1/stop", headers=AUTH)
    body = _is_error(response, 500, "internal_error")
    assert "secret internal detail" not in body["message"]
    assert "secret internal detail" in caplog.text  # the log has it, with the traceback

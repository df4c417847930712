"""Launching, stopping and resuming searches, on SQLite and PostgreSQL (the launcher records; a real
search runs in test_launcher.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml

from evonorm_search import store as st
from evonorm_search.search import SearchConfig
from service.launcher import NoLauncher

from .conftest import AUTH, RecordingApp, client_for, settings_for
from .factories import populate, tiny_config

API = "/api/v1"
YAML = {**AUTH, "Content-Type": "application/yaml"}


def _config_dict(name: str = "api-search") -> dict:
    return tiny_config(name).model_dump(mode="json")


def test_launch_from_json_stores_the_config_and_starts_it(recording_app: RecordingApp):
    response = recording_app.client.post(f"{API}/searches", json=_config_dict(), headers=AUTH)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["state"] == "created" and body["launched"] is True
    assert response.headers["location"] == f"{API}/searches/{body['id']}"
    assert recording_app.calls == [("start", body["id"])]
    status = recording_app.client.get(f"{API}/searches/{body['id']}").json()
    assert SearchConfig.from_mapping(status["config"]) == tiny_config("api-search")
    assert [o["name"] for o in status["objectives"]] == ["accuracy_resnet"]


@pytest.mark.parametrize("content_type", ["application/yaml", "text/yaml", "application/x-yaml; charset=utf-8"])
def test_launch_from_yaml(recording_app: RecordingApp, content_type: str):
    text = yaml.safe_dump(_config_dict("from-yaml"))
    response = recording_app.client.post(
        f"{API}/searches", content=text, headers={**AUTH, "Content-Type": content_type}
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "from-yaml"


def test_launch_with_start_false_only_stores(recording_app: RecordingApp):
    response = recording_app.client.post(
        f"{API}/searches", params={"start": "false"}, json=_config_dict(), headers=AUTH
    )
    assert response.status_code == 201
    assert response.json()["launched"] is False
    assert recording_app.calls == []


def _with_factory(factory: str) -> dict:
    config = _config_dict("own-model")
    config["architectures"] = [{"kind": "python", "factory": factory}]
    return config


def test_a_python_factory_is_refused_unless_its_module_is_allowed(recording_app: RecordingApp, monkeypatch):
    monkeypatch.delenv("EVONORM_ALLOWED_FACTORIES", raising=False)
    response = recording_app.client.post(f"{API}/searches", json=_with_factory("os:system"), headers=AUTH)
    assert response.status_code == 422, response.text
    (problem,) = response.json()["problems"]
    assert problem["field"] == "architectures.0.factory"
    assert "factory 'os:system' is not allowed through the API" in problem["message"]
    assert "EVONORM_ALLOWED_FACTORIES (none: it is empty or unset)" in problem["message"]
    monkeypatch.setenv("EVONORM_ALLOWED_FACTORIES", "lab.models, other")
    refused = recording_app.client.post(f"{API}/searches", json=_with_factory("lab.modelsx:f"), headers=AUTH)
    assert refused.status_code == 422 and "(lab.models, other)" in refused.text
    assert recording_app.calls == []
    accepted = recording_app.client.post(f"{API}/searches", json=_with_factory("lab.models.cnn:f"), headers=AUTH)
    assert accepted.status_code == 201, accepted.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "budget": 0}, "budget"),
        ({"name": "x", "budget": "5"}, "budget"),  # strict: no string-to-number coercion
        ({"name": "x", "tournament": 9, "population": 4}, "config"),
        ({"name": "x", "surprise": 1}, "surprise"),
        ({"budget": 3}, "name"),
    ],
)
def test_invalid_configs_are_422_naming_each_field(recording_app: RecordingApp, body: dict, field: str):
    response = recording_app.client.post(f"{API}/searches", json=body, headers=AUTH)
    assert response.status_code == 422
    error = response.json()
    assert error["code"] == "invalid_config"
    assert any(p["field"] == field for p in error["problems"]), error
    assert recording_app.calls == []
    assert recording_app.client.get(f"{API}/searches").json()["items"] == []  # nothing was stored


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b"name: [unclosed", "application/yaml", 422, "invalid_config"),
        (b"name: a\nname: b\n", "application/yaml", 422, "invalid_config"),  # duplicate key
        (b"- a list\n", "application/yaml", 422, "invalid_config"),
        (b"[1, 2]", "application/json", 422, "invalid_config"),
        (b'{"name": ', "application/json", 422, "invalid_request"),
        (b"\xff\xfe\x00", "application/yaml", 422, "invalid_request"),
        (b"name: x", "text/csv", 415, "unsupported_media_type"),
        (b"[" * 100_000, "application/json", 422, "invalid_request"),  # deeper than Python's recursion limit
        (b"[" * 100_000, "application/yaml", 422, "invalid_request"),
        (b'{"name": "x", "budget": 1' + b"0" * 5000 + b"}", "application/json", 422, "invalid_request"),
        (b"name: x\nbudget: 1" + b"0" * 5000, "application/yaml", 422, "invalid_request"),
        (b'{"name": "x", "budget": NaN}', "application/json", 422, "invalid_config"),
    ],
)
def test_malformed_bodies_are_4xx_with_a_message(recording_app: RecordingApp, content, content_type, status, code):
    response = recording_app.client.post(
        f"{API}/searches", content=content, headers={**AUTH, "Content-Type": content_type}
    )
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert response.json()["message"]


def test_a_yaml_body_naming_a_file_is_text_never_a_path_on_the_server(recording_app: RecordingApp, tmp_path):
    secret = tmp_path / "server-side.yaml"
    secret.write_text(yaml.safe_dump(_config_dict("read-from-disk")))
    response = recording_app.client.post(f"{API}/searches", content=str(secret), headers=YAML)
    assert response.status_code == 422
    assert "read-from-disk" not in response.text
    assert recording_app.client.get(f"{API}/searches").json()["items"] == []


def _search(recording_app: RecordingApp, state: st.SearchState = st.SearchState.CREATED) -> int:
    with st.open_store(recording_app.url) as store:
        return populate(store, candidates=2, final_state=state).id


def test_stop_a_running_search_asks_its_controller_to_stop(recording_app: RecordingApp):
    search_id = _search(recording_app, st.SearchState.RUNNING)
    response = recording_app.client.post(f"{API}/searches/{search_id}/stop", headers=AUTH)
    assert response.status_code == 202
    assert response.json()["state"] == "stopping"
    again = recording_app.client.post(f"{API}/searches/{search_id}/stop", headers=AUTH)
    assert again.status_code == 202 and again.json()["state"] == "stopping"
    assert recording_app.calls == [("stop", search_id), ("stop", search_id)]


def test_stop_a_search_nobody_started_stops_it_at_once(recording_app: RecordingApp):
    search_id = _search(recording_app, st.SearchState.CREATED)
    response = recording_app.client.post(f"{API}/searches/{search_id}/stop", headers=AUTH)
    assert response.status_code == 202 and response.json()["state"] == "stopped"


def test_stop_a_stopped_search_changes_nothing(recording_app: RecordingApp):
    search_id = _search(recording_app, st.SearchState.STOPPED)
    response = recording_app.client.post(f"{API}/searches/{search_id}/stop", headers=AUTH)
    assert response.status_code == 202 and response.json()["state"] == "stopped"


@pytest.mark.parametrize("state", [st.SearchState.COMPLETED, st.SearchState.FAILED])
def test_stop_a_finished_search_is_a_conflict(recording_app: RecordingApp, state):
    search_id = _search(recording_app, state)
    response = recording_app.client.post(f"{API}/searches/{search_id}/stop", headers=AUTH)
    assert response.status_code == 409
    assert response.json()["code"] == "conflict" and str(state) in response.json()["message"]


@pytest.mark.parametrize("state", [st.SearchState.CREATED, st.SearchState.STOPPED, st.SearchState.FAILED])
def test_resume_drives_a_resumable_search_again(recording_app: RecordingApp, state):
    search_id = _search(recording_app, state)
    response = recording_app.client.post(f"{API}/searches/{search_id}/resume", headers=AUTH)
    assert response.status_code == 202, response.text
    assert recording_app.calls == [("resume", search_id)]


def test_resume_refuses_a_running_search_with_a_live_controller(recording_app: RecordingApp):
    search_id = _search(recording_app, st.SearchState.CREATED)
    with st.open_store(recording_app.url) as store, store.session() as s:
        st.claim_controller(s, search_id, host="elsewhere", pid=42, stale_after=timedelta(seconds=60))
        st.set_search_state(s, search_id, st.SearchState.RUNNING)
    response = recording_app.client.post(f"{API}/searches/{search_id}/resume", headers=AUTH)
    assert response.status_code == 409
    assert "elsewhere" in response.json()["message"]
    assert recording_app.calls == []


def test_resume_takes_over_a_running_search_whose_controller_died(recording_app: RecordingApp):
    search_id = _search(recording_app, st.SearchState.CREATED)
    with st.open_store(recording_app.url) as store, store.session() as s:
        long_ago = st.get_search(s, search_id).created_at - timedelta(hours=1)
        st.claim_controller(s, search_id, host="gone", pid=42, stale_after=timedelta(seconds=60), now=long_ago)
        st.set_search_state(s, search_id, st.SearchState.RUNNING)
    response = recording_app.client.post(f"{API}/searches/{search_id}/resume", headers=AUTH)
    assert response.status_code == 202, response.text
    assert recording_app.calls == [("resume", search_id)]


@pytest.mark.parametrize("state", [st.SearchState.COMPLETED])
def test_resume_a_completed_search_is_a_conflict(recording_app: RecordingApp, state):
    search_id = _search(recording_app, state)
    response = recording_app.client.post(f"{API}/searches/{search_id}/resume", headers=AUTH)
    assert response.status_code == 409
    assert "budget is spent" in response.json()["message"]


@pytest.mark.parametrize("action", ["stop", "resume"])
def test_actions_on_unknown_searches_are_404(recording_app: RecordingApp, action: str):
    response = recording_app.client.post(f"{API}/searches/123456/{action}", headers=AUTH)
    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "message": "no search with id 123456", "problems": []}


def test_a_launcher_that_fails_leaves_the_search_stored_and_says_how_to_resume(store_url: str):
    class Unreachable(NoLauncher):
        launches = True

        def start(self, search_id: int) -> None:
            raise OSError("the cluster at ray://head:10001 does not answer")

    with client_for(settings_for(store_url), launcher_factory=lambda _settings, store: Unreachable(store)) as client:
        response = client.post(f"{API}/searches", json=_config_dict("unlucky"), headers=AUTH)
        assert response.status_code == 503
        body = response.json()
        assert body["code"] == "launch_failed" and "does not answer" in body["message"]
        assert "/resume" in body["message"]
        [stored] = client.get(f"{API}/searches").json()["items"]
        assert stored["name"] == "unlucky" and stored["state"] == "created"

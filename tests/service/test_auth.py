"""API keys: who may change searches, who may read, and that keys never leak."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr, ValidationError

from service import Settings
from service.auth import key_matches

from .conftest import AUTH, KEY, OTHER_KEY, client_for, settings_for

API = "/api/v1"
CONFIG = {"name": "auth-test", "budget": 1}


@pytest.fixture
def sqlite(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'evonorm.db'}"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key-but-long-enough"},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": f"Bearer {KEY}x"},
        {"Authorization": f"Bearer {KEY[:-1]}"},
    ],
)
def test_changes_without_a_valid_key_are_401(sqlite: str, headers: dict):
    with client_for(settings_for(sqlite)) as client:
        for method, path in [("post", "/searches"), ("post", "/searches/1/stop"), ("post", "/searches/1/resume")]:
            response = client.request(method, f"{API}{path}", json=CONFIG, headers=headers)
            assert response.status_code == 401, (path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["code"] == "unauthorized"
        assert client.get(f"{API}/searches").json()["items"] == []  # nothing was created


def test_every_configured_key_is_accepted(sqlite: str):
    settings = settings_for(sqlite, api_keys=f"{KEY},{OTHER_KEY}")
    with client_for(settings) as client:
        for key in (KEY, OTHER_KEY):
            response = client.post(f"{API}/searches", json=CONFIG, headers={"Authorization": f"Bearer {key}"})
            assert response.status_code == 201, response.text


def test_without_configured_keys_changes_are_refused_with_403(sqlite: str):
    with client_for(settings_for(sqlite, api_keys="")) as client:
        response = client.post(f"{API}/searches", json=CONFIG, headers=AUTH)
        assert response.status_code == 403
        assert "EVONORM_API_KEYS" in response.json()["message"]
        assert client.get(f"{API}/searches").status_code == 200  # reads stay open


def test_reads_are_public_by_default_and_keyed_when_configured(sqlite: str):
    reads = [f"{API}/searches", f"{API}/searches/1", f"{API}/candidates/1", f"{API}/pareto?objective=a"]
    with client_for(settings_for(sqlite, read_requires_key=True)) as client:
        for path in reads:
            assert client.get(path).status_code == 401, path
        assert client.post(f"{API}/layers/check", json={"dsl": "x"}).status_code == 401
        assert client.get(f"{API}/searches", headers=AUTH).status_code == 200
        assert client.post(f"{API}/layers/check", json={"dsl": "x"}, headers=AUTH).status_code == 200
        # liveness, readiness and the page itself stay open, for probes and for typing the key in
        for path in ("/healthz", "/readyz", "/metrics", "/"):
            assert client.get(path).status_code == 200, path


def test_keys_never_appear_in_responses_or_logs(sqlite: str, caplog):
    caplog.set_level(logging.DEBUG)
    with client_for(settings_for(sqlite)) as client:
        texts = [
            client.post(
                f"{API}/searches", json=CONFIG, headers={"Authorization": "Bearer guessed-key-1234567890"}
            ).text,
            client.post(f"{API}/searches", json=CONFIG, headers=AUTH).text,
            client.get("/metrics").text,
            client.get("/openapi.json").text,
        ]
    for text in [*texts, caplog.text]:
        assert KEY not in text
        assert "guessed-key-1234567890" not in text
    assert KEY not in repr(settings_for(sqlite))


def test_key_matching_compares_whole_keys():
    keys = [SecretStr(KEY), SecretStr(OTHER_KEY)]
    assert key_matches(KEY, keys) and key_matches(OTHER_KEY, keys)
    assert not key_matches(KEY + " ", keys)
    assert not key_matches("", keys)
    assert not key_matches(KEY.upper(), keys)
    assert not key_matches(KEY, [])


def test_keys_come_from_the_environment_split_on_commas_and_spaces(monkeypatch):
    monkeypatch.setenv("EVONORM_API_KEYS", f" {KEY}, {OTHER_KEY}\n")
    monkeypatch.setenv("EVONORM_READ_REQUIRES_KEY", "true")
    settings = Settings()
    assert [k.get_secret_value() for k in settings.api_keys] == [KEY, OTHER_KEY]
    assert settings.read_requires_key is True


def test_short_keys_are_refused_without_echoing_them(monkeypatch):
    monkeypatch.setenv("EVONORM_API_KEYS", f"{KEY},tooshort-secret")
    with pytest.raises(ValidationError) as raised:
        Settings()
    assert "key #2 is shorter than 16 characters" in str(raised.value)
    assert "tooshort-secret" not in str(raised.value)

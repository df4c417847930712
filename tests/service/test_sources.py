"""The API's allow-lists: a launched search reads data files only under EVONORM_DATA_ROOTS and names
factories only from EVONORM_ALLOWED_FACTORIES (both empty by default); anything else is a 422 naming the rule."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.settings import Settings

from .conftest import AUTH, client_for, settings_for
from .factories import tiny_config

API = "/api/v1"


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'api.db'}"


@pytest.fixture
def default_client(sqlite_url: str) -> Iterator[TestClient]:
    with client_for(settings_for(sqlite_url)) as client:
        yield client


def _config(data: dict | None = None, architecture: dict | None = None) -> dict:
    config = tiny_config("sources").model_dump(mode="json")
    if data is not None:
        config["data"] = data
    if architecture is not None:
        config["architectures"] = [architecture]
    return config


def _arrays_file(folder) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.standard_normal((40, 1, 4, 4)).astype(np.float32), y=np.arange(40) % 2)
    return str(path)


def _launch(client: TestClient, config: dict, *, as_yaml: bool = False):
    if as_yaml:
        headers = {**AUTH, "Content-Type": "application/yaml"}
        return client.post(f"{API}/searches?start=false", content=yaml.safe_dump(config), headers=headers)
    return client.post(f"{API}/searches?start=false", json=config, headers=AUTH)


def _refusal(response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "forbidden_source"
    return {p["field"]: p["message"] for p in body["problems"]}


@pytest.mark.parametrize("as_yaml", [False, True])
def test_file_data_is_refused_by_default_naming_the_rule(default_client, tmp_path, as_yaml):
    config = _config({"name": "arrays", "path": _arrays_file(tmp_path)})
    problems = _refusal(_launch(default_client, config, as_yaml=as_yaml))
    assert "EVONORM_DATA_ROOTS" in problems["data.path"] and "is empty" in problems["data.path"]


def test_data_needing_no_files_is_launched_by_default(default_client):
    assert _launch(default_client, _config()).status_code == 201


def test_data_under_a_root_is_launched_and_elsewhere_refused(sqlite_url, tmp_path):
    allowed = _arrays_file(tmp_path / "allowed")
    outside = _arrays_file(tmp_path / "outside")
    (tmp_path / "allowed" / "link").symlink_to(tmp_path / "outside")
    settings = settings_for(sqlite_url, data_roots=str(tmp_path / "allowed"))
    with client_for(settings) as client:
        assert _launch(client, _config({"name": "arrays", "path": allowed})).status_code == 201
        for path in (outside, str(tmp_path / "allowed" / ".." / "outside" / "data.npz"),
                     str(tmp_path / "allowed" / "link" / "data.npz")):  # fmt: skip
            problems = _refusal(_launch(client, _config({"name": "arrays", "path": path})))
            assert "is not under EVONORM_DATA_ROOTS" in problems["data.path"]
        relative = _refusal(_launch(client, _config({"name": "arrays", "path": "allowed/data.npz"})))
        assert "must be absolute" in relative["data.path"]
        # The target task's data is checked as well, and every data set's path fields (cifar10's too).
        config = _config()
        config["validation"]["data"] = {"name": "cifar10", "path": str(tmp_path / "outside")}
        assert "validation.data.path" in _refusal(_launch(client, config))


def test_factories_are_refused_by_default_and_allowed_by_module_prefix(sqlite_url, default_client):
    data = {"name": "python", "factory": "mylab.data:load"}
    problems = _refusal(_launch(default_client, _config(data)))
    assert "EVONORM_ALLOWED_FACTORIES" in problems["data.factory"] and "is empty" in problems["data.factory"]
    with client_for(settings_for(sqlite_url, allowed_factories="mylab, other.pkg")) as client:
        # Allowed: checked before validation, so the factory is neither imported nor called here.
        assert _launch(client, _config(data)).status_code == 201
        refused = _refusal(_launch(client, _config({"name": "python", "factory": "mylabx.data:load"})))
        assert "not from a module prefix in EVONORM_ALLOWED_FACTORIES (mylab, other.pkg)" in refused["data.factory"]


def test_a_factory_anywhere_in_the_architectures_is_checked(default_client):
    """An architecture's `factory` (a `kind: python` entry) is found wherever it sits, before validation."""
    config = _config(architecture={"kind": "python", "factory": "os:system", "kwargs": {"inner": {"factory": "x:y"}}})
    config["validation"]["architectures"] = [{"kind": "python", "factory": "subprocess:run"}]
    problems = _refusal(_launch(default_client, config))
    assert set(problems) == {
        "architectures.0.factory",
        "architectures.0.kwargs.inner.factory",
        "validation.architectures.0.factory",
    }


def test_a_code_folder_is_refused_even_with_every_source_allowed(sqlite_url, tmp_path):
    """`code:` would ship a folder of the API server to the workers: no allow-list lets a request do it."""
    config = _config()
    config["code"] = str(tmp_path)
    settings = settings_for(sqlite_url, data_roots=str(tmp_path), allowed_factories="mylab")
    with client_for(settings) as client:
        problems = _refusal(_launch(client, config))
        assert set(problems) == {"code"} and "ship a folder of this server" in problems["code"]
        del config["code"]
        assert _launch(client, config).status_code == 201


def test_the_allow_lists_are_read_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EVONORM_DATA_ROOTS", f"{tmp_path}/a,{tmp_path}/b c")
    monkeypatch.setenv("EVONORM_ALLOWED_FACTORIES", "mylab other.pkg")
    settings = Settings()
    assert settings.data_roots == (f"{tmp_path}/a", f"{tmp_path}/b c")
    assert settings.allowed_factories == ("mylab", "other.pkg")
    with pytest.raises(ValidationError, match="data roots must be absolute"):
        Settings(data_roots="relative/dir")
    with pytest.raises(ValidationError, match="dotted module names"):
        Settings(allowed_factories="my-lab")


@pytest.mark.parametrize("data", [{"name": {}}, {"name": ["arrays"]}, [], "arrays"])
def test_a_malformed_data_section_is_left_to_validation(default_client, data):
    """The check reads the raw mapping: what it cannot read is not its to refuse (validation answers 422)."""
    response = _launch(default_client, _config(data))
    assert response.status_code == 422 and response.json()["code"] == "invalid_config", response.text

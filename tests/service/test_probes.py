"""Every health probe that docker/ declares (Compose healthchecks, Kubernetes liveness and readiness probes)
names a route the app serves: 200 on a healthy store; readiness fails, and liveness does not, when the
database is gone (a liveness probe that followed the database would restart the pod in a loop)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from .conftest import client_for, settings_for

DOCKER = Path(__file__).resolve().parents[2] / "docker"
PROBE_URL = re.compile(r"https?://[^/\s'\"]+(/[^\s'\")]*)")


def _walk(node: object):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _documents() -> list[tuple[Path, dict]]:
    files = sorted({*DOCKER.rglob("*.yaml"), *DOCKER.rglob("*.yml")})
    return [(path, doc) for path in files for doc in yaml.safe_load_all(path.read_text()) if isinstance(doc, dict)]


def declared_probes() -> list[tuple[str, str, str]]:
    """(file, kind, path) for every HTTP probe in docker/: kind is liveness, readiness or healthcheck."""
    found = []
    for path, document in _documents():
        name = str(path.relative_to(DOCKER))
        for node in _walk(document):
            for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
                if kind in node and "httpGet" in node[kind]:
                    found.append((name, kind.removesuffix("Probe"), node[kind]["httpGet"]["path"]))
            check = node.get("healthcheck")
            if isinstance(check, dict):
                command = " ".join(check["test"]) if isinstance(check["test"], list) else check["test"]
                found += [(name, "healthcheck", url) for url in PROBE_URL.findall(command)]
    return found


def test_docker_declares_the_probes_the_deployments_need():
    probes = declared_probes()
    kinds = {(file, kind) for file, kind, _ in probes}
    assert ("kuberay/evonorm-search.yaml", "liveness") in kinds
    assert ("kuberay/evonorm-search.yaml", "readiness") in kinds
    assert ("compose.yaml", "healthcheck") in kinds
    by_kind = {(file, kind): path for file, kind, path in probes}
    assert by_kind["kuberay/evonorm-search.yaml", "liveness"] == "/healthz"
    assert by_kind["kuberay/evonorm-search.yaml", "readiness"] == "/readyz"
    # Compose's healthcheck gates `depends_on: service_healthy`: healthy must mean ready.
    assert by_kind["compose.yaml", "healthcheck"] == "/readyz"


def test_the_probe_reader_finds_a_probe_to_a_missing_route(tmp_path, monkeypatch):
    manifest = tmp_path / "k.yaml"
    manifest.write_text("spec:\n  containers:\n    - livenessProbe:\n        httpGet: {path: /nowhere, port: 80}\n")
    monkeypatch.setattr(f"{__name__}.DOCKER", tmp_path)
    assert declared_probes() == [("k.yaml", "liveness", "/nowhere")]


@pytest.mark.parametrize("probe", declared_probes(), ids=lambda p: f"{p[0]}:{p[1]}:{p[2]}")
def test_every_declared_probe_is_served_with_200_on_a_healthy_store(probe, tmp_path):
    _file, _kind, path = probe
    with client_for(settings_for(f"sqlite:///{tmp_path / 'evonorm.db'}")) as client:
        response = client.get(path)
    assert response.status_code == 200, f"{probe}: {response.status_code} {response.text[:200]}"


@pytest.mark.parametrize("probe", declared_probes(), ids=lambda p: f"{p[0]}:{p[1]}:{p[2]}")
def test_without_the_database_readiness_fails_and_liveness_holds(probe, tmp_path):
    _file, kind, path = probe
    (tmp_path / "evonorm.db").mkdir()  # a directory where the database file should be: every open fails
    with client_for(settings_for(f"sqlite:///{tmp_path / 'evonorm.db'}")) as client:
        status = client.get(path).status_code
    if kind == "liveness":
        assert status == 200, probe
    else:
        assert status == 503, probe

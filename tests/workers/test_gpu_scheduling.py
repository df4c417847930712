"""GPU scheduling with Ray's own accounting of (fake) GPUs: `training.device: auto` reserves the search's
`workers.gpus_per_evaluation` on a cluster with GPUs and none on a CPU-only one; an evaluation granted no
GPU trains on CPU; `--gpus` / RaySettings override; worker processes are recycled after `max_calls`."""

from __future__ import annotations

import dataclasses

import pytest

import evonorm_search as es
from evonorm_search.search import ConfigError, EvaluationTask
from tests.conftest import collect_outcomes
from workers import RayConnection, RaySettings, WorkerResources, capacity_problem, check_settings
from workers.cluster import default_gpus
from workers.remote import on_granted_device, remote_evaluation

from . import bodies
from .conftest import TINY_SEARCH, tiny_config


def config(device: str = "auto", **workers: object):
    return tiny_config(training={**TINY_SEARCH["training"], "device": device}, workers=workers)


def node(cpus: float, gpus: float = 0.0) -> dict:
    return {"Alive": True, "Resources": {"CPU": cpus, "GPU": gpus}}


# -- the decision, without a cluster -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "cluster_gpus", "fraction", "expected"),
    [
        ("auto", 0.0, None, 0.0),  # a CPU-only cluster trains on CPU
        ("auto", 4.0, None, 1.0),  # a cluster with GPUs: one GPU per evaluation by default
        ("auto", 4.0, 0.25, 0.25),  # small proxies share a GPU
        ("cuda", 0.0, None, 1.0),  # asked for explicitly: reserved even where none is (capacity says so)
        ("cuda", 2.0, 2, 2.0),
        ("cpu", 8.0, 0.5, 0.0),  # never a GPU for a CPU run
    ],
)
def test_gpus_per_evaluation_follow_the_device_and_the_cluster(device, cluster_gpus, fraction, expected):
    workers = {} if fraction is None else {"gpus_per_evaluation": fraction}
    chosen = config(device, **workers)
    assert default_gpus(chosen, cluster_gpus) == expected
    assert RaySettings().resources_for(chosen, cluster_gpus=cluster_gpus).gpus == expected


def test_an_explicit_gpus_setting_wins_over_the_search_and_the_cluster():
    assert RaySettings(gpus=0).resources_for(config("auto"), cluster_gpus=8) == WorkerResources(cpus=1, gpus=0)
    assert RaySettings(gpus=0.5).resources_for(config("cpu"), cluster_gpus=0).gpus == 0.5
    assert RaySettings(max_calls=7).max_calls_for(config(max_calls=3)) == 7
    assert RaySettings().max_calls_for(config(max_calls=3)) == 3


def test_cuda_on_a_cpu_only_cluster_is_a_capacity_problem_with_the_reason():
    resources = RaySettings().resources_for(config("cuda"), cluster_gpus=0)
    connection = RayConnection(None, owned=False, nodes=[node(4)])
    assert "needs 1 CPU and 1 GPU" in capacity_problem(connection, resources)


@pytest.mark.parametrize(
    ("workers", "problem"),
    [
        ({"gpus_per_evaluation": 1.5}, "whole number of GPUs"),
        ({"gpus_per_evaluation": 0}, "greater than 0"),
        ({"max_calls": -1}, "greater than or equal to 0"),
        ({"max_gpus": 1}, "Extra inputs are not permitted"),
    ],
)
def test_bad_worker_settings_are_refused_with_the_field_named(workers, problem):
    with pytest.raises(ConfigError, match=problem) as caught:
        config(**workers)
    assert caught.value.problems[0][0].startswith("workers.")


def test_bad_max_calls_are_refused_before_ray_is_asked():
    with pytest.raises(ValueError, match="max_calls must be a whole number >= 0"):
        check_settings(max_calls=-2)
    with pytest.raises(ValueError, match="max_calls must be a whole number >= 0"):
        remote_evaluation(True)


def task_with(device: str) -> EvaluationTask:
    graph = es.library.get("evonorm_s0").to_dict()
    return EvaluationTask(1, 1, graph, config(device).evaluation_spec())


def test_auto_becomes_the_device_ray_granted_and_explicit_devices_stay():
    assert on_granted_device(task_with("auto"), [0]).spec.training.device == "cuda"
    assert on_granted_device(task_with("auto"), []).spec.training.device == "cpu"
    assert on_granted_device(task_with("cpu"), [0]).spec.training.device == "cpu"
    assert on_granted_device(task_with("cuda"), []).spec.training.device == "cuda"
    original = task_with("auto")
    changed = on_granted_device(original, [])
    assert original.spec.training.device == "auto"  # the task is copied, never changed in place
    assert dataclasses.replace(changed, spec=original.spec) == original


# -- on the test cluster, with a node that declares fake GPUs ------------------------------------------


def run_reporting(resources: WorkerResources, count: int, **kwargs) -> list[dict]:
    from workers import RayEvaluator

    bodies.register()
    ev = RayEvaluator(
        resources, body=bodies.reports_its_process, heartbeat_interval=0.25, heartbeat_timeout=3.0, **kwargs
    )
    seen = []
    try:
        for candidate_id in range(1, count + 1):  # one at a time, so one worker process serves them in turn
            ev.submit(dataclasses.replace(task_with("auto"), candidate_id=candidate_id))
            [outcome] = collect_outcomes(ev, 1)
            assert outcome.status == "evaluated", outcome.error
            seen.append({**outcome.records[0].metrics, "node": outcome.node})
    finally:
        ev.close()
    return seen


@pytest.fixture
def gpu_node(cluster):
    """A third worker node declaring 2 GPUs (Ray schedules on the declaration; no GPU is touched)."""
    node = cluster.cluster.add_node(num_cpus=2, num_gpus=2)
    cluster.cluster.wait_for_nodes()
    try:
        yield node
    finally:
        cluster.cluster.remove_node(node, allow_graceful=True)


@pytest.mark.xdist_group("ray")
def test_on_a_cluster_with_gpus_auto_reserves_a_gpu_and_trains_on_it(gpu_node):
    from workers import connect

    connection = connect()  # the test process is already connected: this reads the cluster
    assert connection.total("GPU") == 2
    resources = RaySettings().resources_for(config("auto", gpus_per_evaluation=0.5), cluster_gpus=2)
    assert resources == WorkerResources(cpus=1, gpus=0.5)
    seen = run_reporting(resources, 2)
    for report in seen:
        assert report["node"].endswith(gpu_node.node_id[:8])  # only the GPU node can run it
        assert report["device"] == "cuda" and len(report["gpu_ids"]) == 1


@pytest.mark.xdist_group("ray")
def test_on_a_cpu_only_cluster_auto_reserves_none_and_trains_on_cpu(cluster):
    from workers import connect

    connection = connect()
    assert connection.total("GPU") == 0
    resources = RaySettings().resources_for(config("auto"), cluster_gpus=connection.total("GPU"))
    assert resources.gpus == 0
    [report] = run_reporting(resources, 1)
    assert report["device"] == "cpu" and report["gpu_ids"] == []


@pytest.mark.xdist_group("ray")
def test_worker_processes_are_recycled_after_max_calls(cluster):
    pids = [report["pid"] for report in run_reporting(WorkerResources(cpus=1), 6, max_calls=2)]
    assert len(pids) == 6
    assert max(pids.count(pid) for pid in set(pids)) <= 2
    kept = [report["pid"] for report in run_reporting(WorkerResources(cpus=1), 4, max_calls=0)]
    assert len(set(kept)) < 4  # without recycling, a warm process serves several evaluations

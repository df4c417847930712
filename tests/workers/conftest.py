"""A real multi-node Ray cluster on this machine, and tiny synthetic searches to run on it.

The cluster (`ray.cluster_utils.Cluster`) is a head without CPUs plus two worker nodes with one CPU
each: every node has its own raylet and worker processes, so removing one kills its workers as a lost
machine would. Everything binds to loopback. Tests that use it carry `pytest.mark.xdist_group("ray")`
so pytest-xdist (`--dist loadgroup`) runs them in one worker, which starts the cluster once.
The store is the local PostgreSQL server (tests/conftest.py: skipped without one, failing under CI).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

# Ray would otherwise bind every node to this machine's network address; tests stay on loopback.
# Set before any Ray process starts; children (CLI drivers in subprocesses) inherit it.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

WORKER_NODES = 2

TINY_SEARCH: dict[str, Any] = {
    "name": "tiny",
    "seed": 3,
    "budget": 8,
    "population": 4,
    "tournament": 2,
    "space": {"max_ops": 4},
    "architectures": [
        {"kind": "resnet", "width": 4, "blocks": [1]},
        {"kind": "mobilenetv2", "width": 4, "blocks": [1], "expansion": 2},
    ],
    "data": {"name": "synthetic", "samples": 64, "synthetic_shape": [1, 4, 4], "synthetic_classes": 2},
    "training": {"steps": 40, "batch_size": 8, "device": "cpu", "threads": 1, "eval_batch_size": 64},
    "rejection": {"quality": {"enabled": False}, "stability": {"enabled": False}},
    # The accounting below counts the budget's candidates; baselines have tests of their own (tests/search).
    "baselines": [],
}


def tiny_config(**changes: Any):
    from evonorm_search.search import SearchConfig

    return SearchConfig.from_mapping({**TINY_SEARCH, **changes})


@dataclass
class RayTestCluster:
    """The running cluster: its address, and worker nodes that tests may remove and add back."""

    cluster: Any
    workers: list[Any] = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.cluster.address

    def add_worker(self) -> Any:
        node = self.cluster.add_node(num_cpus=1)
        self.workers.append(node)
        self.cluster.wait_for_nodes()
        return node

    def remove_worker(self, node: Any) -> None:
        self.workers.remove(node)
        self.cluster.remove_node(node, allow_graceful=False)

    def worker_with_id_prefix(self, prefix: str) -> Any:
        return next(n for n in self.workers if n.node_id.startswith(prefix))


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayTestCluster]:
    """The session's cluster; this test process is connected to it as a driver."""
    ray = pytest.importorskip("ray")
    import ray._private.ray_constants as ray_constants
    from ray.cluster_utils import Cluster

    ray_constants.ENABLE_RAY_CLUSTER = False  # in case Ray was imported before the variable above was set

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    harness = RayTestCluster(cluster)
    try:
        for _ in range(WORKER_NODES):
            harness.add_worker()
        ray.init(address=cluster.address, logging_level="WARNING")
        yield harness
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture
def cluster(ray_cluster: RayTestCluster) -> RayTestCluster:
    """The cluster with its two worker nodes (a test that removed one gets it back)."""
    while len(ray_cluster.workers) < WORKER_NODES:
        ray_cluster.add_worker()
    return ray_cluster


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[Any]:
    from evonorm_search.store import open_store

    with open_store(postgres_url) as store:
        yield store

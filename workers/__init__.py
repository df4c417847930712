"""Evaluations on Ray: the `RayEvaluator` (`ray_evaluator.py`), connecting to a cluster and the API's
Ray launcher (`cluster.py`), and search control.

    from workers import connect, RayEvaluator
    connection = connect("head:6379", store=store)   # or connect() for a local Ray
    run_search(store, search_id, RayEvaluator(WorkerResources(cpus=1, gpus=0.25)))

See docs/cluster.md for clusters (Docker Compose, KubeRay) and fault tolerance.
"""

from evonorm_search.search.lifecycle import controller_alive, request_stop, wait_until_stopped

from .cluster import (
    ADDRESS_VARIABLE,
    ClusterError,
    RayConnection,
    RayLauncher,
    RaySettings,
    capacity_problem,
    check_store,
    connect,
    open_evaluator,
    resolve_address,
)
from .heartbeat import HeartbeatBoard, Liveness
from .ray_evaluator import RayEvaluator, check_settings
from .resources import WorkerResources

__all__ = [
    "ADDRESS_VARIABLE",
    "ClusterError",
    "HeartbeatBoard",
    "Liveness",
    "RayConnection",
    "RayEvaluator",
    "RayLauncher",
    "RaySettings",
    "WorkerResources",
    "capacity_problem",
    "check_settings",
    "check_store",
    "connect",
    "controller_alive",
    "open_evaluator",
    "request_stop",
    "resolve_address",
    "wait_until_stopped",
]

"""Whole searches on the multi-node cluster with PostgreSQL as the shared store: a search completes, and a
worker node removed in the middle of an evaluation loses nothing. Also: a SQLite file is refused there."""

from __future__ import annotations

import threading

import pytest

from evonorm_search.search.controller import create_search, run_search
from tests.conftest import wait_until

from .accounting import assert_fully_accounted
from .conftest import TINY_SEARCH, tiny_config

pytestmark = [pytest.mark.xdist_group("ray"), pytest.mark.postgres]

ARCHITECTURES = ["resnet", "mobilenetv2"]


def ray_evaluator():
    from workers import RayEvaluator, WorkerResources

    return RayEvaluator(WorkerResources(cpus=1), heartbeat_interval=0.25, heartbeat_timeout=10.0)


def test_a_search_completes_on_the_cluster(cluster, pg_store):
    config = tiny_config()
    search_id = create_search(pg_store, config)
    ev = ray_evaluator()
    try:
        final = run_search(pg_store, search_id, ev, poll_interval=0.2, heartbeat_interval=1.0)
    finally:
        ev.close()
    assert final.state == "completed" and final.proposed == config.budget
    facts = assert_fully_accounted(pg_store, search_id, budget=config.budget, architectures=ARCHITECTURES)
    assert facts["originals"], "the tiny search evaluated nothing"
    nodes = {e.node.split("/")[1] for e in facts["evaluations"]}
    assert nodes and nodes <= {w.node_id[:8] for w in cluster.workers}  # never the head: it has no CPUs


def test_removing_a_worker_node_mid_search_loses_nothing(cluster, pg_store):
    # Long enough evaluations (seconds each, even on a fast machine) that the one picked below is still
    # running when its node goes; with short ones it may finish first, and nothing would need a retry.
    config = tiny_config(budget=4, training={**TINY_SEARCH["training"], "steps": 1500})
    search_id = create_search(pg_store, config)
    ev = ray_evaluator()
    outcome: dict[str, object] = {}
    controller = threading.Thread(
        target=lambda: outcome.update(final=run_search(pg_store, search_id, ev, poll_interval=0.2)), daemon=True
    )
    controller.start()
    try:
        victim = _node_running_an_evaluation(cluster, ev)
        cluster.remove_worker(victim)
        controller.join(timeout=300)
    finally:
        ev.close()
    assert not controller.is_alive(), "the search did not finish after losing a node"
    assert outcome["final"].state == "completed"
    facts = assert_fully_accounted(pg_store, search_id, budget=config.budget, architectures=ARCHITECTURES)
    retried = [e for e in facts["evaluations"] if e.metrics["worker_try"] > 1]
    where = {(e.candidate_id, e.node, e.metrics["worker_try"]) for e in facts["evaluations"]}
    assert retried, f"the evaluation on the removed node should have been retried on the other one: {where}"
    survivor = cluster.workers[0].node_id[:8]
    assert all(e.node.endswith(survivor) for e in retried)


def test_a_sqlite_store_is_refused_on_a_multi_node_cluster(cluster, tmp_path):
    from evonorm_search.store import open_store
    from workers import ClusterError, connect

    with open_store(f"sqlite:///{tmp_path / 'evonorm.db'}") as store, pytest.raises(ClusterError) as refused:
        connect(cluster.address, store=store)
    message = str(refused.value)
    assert "3 nodes" in message and "SQLite" in message and "Use PostgreSQL" in message
    import ray

    assert ray.is_initialized()  # a connection this process already had is left alone


def _node_running_an_evaluation(cluster, ev, limit: float = 120.0):
    """The worker node of an evaluation that has just started (so removing it interrupts the evaluation)."""

    def node_just_started():
        for seen in ev.in_flight().values():
            if seen is not None and seen.running_for < 1.0:
                return cluster.worker_with_id_prefix(seen.node.split("/")[1])
        return None

    return wait_until(node_just_started, limit=limit, what="an evaluation starting on a worker node")


def test_the_api_services_ray_launcher_drives_and_stops_a_search_on_the_cluster(cluster, pg_store):
    from evonorm_search.store import ConflictError, SearchState, get_search, search_summary
    from service.launcher import make_launcher
    from service.settings import Settings
    from workers import RayLauncher

    chosen = make_launcher(Settings(launcher="auto"), pg_store)  # the default when workers is installed
    assert isinstance(chosen, RayLauncher)
    chosen.close()

    search_id = create_search(pg_store, tiny_config(name="served", budget=10_000))  # runs until stopped
    launcher = RayLauncher(pg_store, address=cluster.address, poll_interval=0.1)
    try:
        launcher.start(search_id)
        with pytest.raises(ConflictError, match="already running in this server"):
            launcher.resume(search_id)
        wait_until(lambda: _summary(pg_store, search_id, search_summary).evaluated >= 2)
        launcher.stop(search_id)
        wait_until(lambda: _summary(pg_store, search_id, search_summary).search.state is SearchState.STOPPED)
    finally:
        launcher.close()
    assert launcher.running() == []
    with pg_store.session(readonly=True) as s:
        assert get_search(s, search_id).state is SearchState.STOPPED
    import ray

    assert ray.is_initialized()  # the launcher used this process's connection and left it open


def _summary(store, search_id, search_summary):
    with store.session(readonly=True) as s:
        return search_summary(s, search_id)

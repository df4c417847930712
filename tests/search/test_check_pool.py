"""The check pool: cheap checks computed ahead in other processes give the verdicts the controller's own
chain gives, so a search stores the same candidates with the pool, without it, and when the pool dies
mid-run."""

from __future__ import annotations

import os
import random
import signal

import pytest

from evonorm_search import parse
from evonorm_search.enums import RejectionStage
from evonorm_search.search.check_pool import CheckPool
from evonorm_search.search.controller import Controller, build_checks, create_search
from evonorm_search.search.rejection import DuplicateIndex
from evonorm_search.search.simulated import ManualClock, SimulatedCluster
from evonorm_search.search.space import random_graph
from evonorm_search.store import list_candidates, open_store
from tests.conftest import wait_until

from .conftest import tiny_config

EVERY_MUTATION = ["replace_op", "rewire_input", "insert_node", "delete_node", "normalize_node"]

pytestmark = pytest.mark.timeout(600)


def _evolving_config():
    # A population of 6 fills after a few results, so most proposals are mutations chosen by tournament:
    # speculation meets population changes and duplicate retries, not only random graphs.
    return tiny_config(budget=60, population=6, tournament=2, mutations=EVERY_MUTATION)


def _stored(store, search_id: int) -> list[tuple]:
    with store.session(readonly=True) as s:
        candidates = sorted(list_candidates(s, search_id, limit=1000).items, key=lambda c: c.birth)
    return [
        (
            c.birth,
            c.dsl,
            str(c.status),
            c.mutation,
            c.parent_id,
            c.canonical_hash,
            c.fingerprint,
            c.rejection_stage,
            c.rejection_reason,
            c.duplicate_of,
            c.objectives,
            sorted(c.check_seconds or {}),
        )
        for c in candidates
    ]


def _run(tmp_path, name: str, check_workers: int, *, on_progress=None) -> tuple[list[tuple], Controller]:
    store = open_store(f"sqlite:///{tmp_path / name}")
    try:
        search_id = create_search(store, _evolving_config())
        cluster = SimulatedCluster(6, clock=ManualClock(), time_factor=0.01, seed=0)
        # A long poll interval: no fill is cut short by the wall clock, so which outcomes each proposal
        # sees depends on the simulated clock alone and the two runs can be compared candidate by candidate.
        controller = Controller(store, search_id, cluster, poll_interval=60.0, check_workers=check_workers)
        if on_progress is not None:
            controller.progress = lambda progress: on_progress(controller, progress)
        controller.run()
        return _stored(store, search_id), controller
    finally:
        store.close()


def test_a_search_with_a_check_pool_stores_the_candidates_it_stores_without_one(tmp_path):
    alone, _ = _run(tmp_path, "alone.db", check_workers=0)
    pooled, controller = _run(tmp_path, "pooled.db", check_workers=2)
    assert pooled == alone
    pool = controller.check_pool
    assert pool is not None and pool.broken is None
    # Every proposal asked the pool once; most found their checks done ahead (a miss is a mutation that
    # retried for a child the index learned meanwhile, checked in the controller).
    assert pool.hits + pool.misses == len(pooled)
    assert pool.hits >= 0.9 * len(pooled)
    # The run covers what the pool computes: static and stability rejections, layers that train, and
    # mutations of tournament winners as well as random graphs.
    assert {row[7] for row in pooled} >= {RejectionStage.STATIC, RejectionStage.STABILITY, None}
    assert sum(row[2] == "evaluated" for row in pooled) >= 10
    assert sum(row[3] != "random" for row in pooled) >= 30


def test_a_search_whose_check_pool_dies_goes_on_with_the_same_candidates(tmp_path):
    alone, _ = _run(tmp_path, "alone.db", check_workers=0)
    killed: list[int] = []

    def kill_the_pool_at_birth_20(controller: Controller, progress) -> None:
        pool = controller.check_pool
        if pool is None or killed or progress.proposed < 20:
            return
        for pid in pool.pids():  # the test plays the OOM killer
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    pooled, controller = _run(tmp_path, "pooled.db", check_workers=2, on_progress=kill_the_pool_at_birth_20)
    assert killed
    assert pooled == alone
    pool = controller.check_pool
    assert pool is not None and pool.broken is not None and "terminated abruptly" in pool.broken
    assert pool.hits > 0  # before the kill


def test_precomputed_checks_give_the_verdict_of_the_chain_itself():
    config = tiny_config(mutations=EVERY_MUTATION)
    index = DuplicateIndex()
    checks = build_checks(config, index)
    space = config.build_space()
    graphs = [random_graph(space, random.Random(i)) for i in range(120)]
    graphs += graphs[:10]  # duplicates by canonical form
    graphs.append(parse("y = x * sigmoid(v1 * x)"))
    graphs.append(parse("y = sigmoid(v1 * x) * x"))  # the same layer written otherwise
    seen: set[RejectionStage | None] = set()
    for birth, graph in enumerate(graphs):
        inline = checks.run(graph)
        known = checks.precompute(graph)
        ahead = checks.run(graph, known)
        assert ahead.rejection == inline.rejection, graph.to_text()
        assert ahead.facts == inline.facts, graph.to_text()
        assert ahead.seconds.keys() == inline.seconds.keys()
        seen.add(None if inline.rejection is None else inline.rejection.stage)
        index.add(birth, inline.facts.canonical_hash, inline.facts.fingerprint)
    assert seen >= {None, RejectionStage.STATIC, RejectionStage.DUPLICATE, RejectionStage.NUMERIC}


def test_a_stage_the_precomputation_lacks_is_run_in_the_chain():
    config = tiny_config()
    checks = build_checks(config, DuplicateIndex())
    graph = parse("y = x / std(x, group)")
    known = checks.precompute(graph)
    del known.stages[RejectionStage.STABILITY]
    verdict = checks.run(graph, known)
    assert verdict.rejection is None
    assert verdict.facts.gradient_norm is not None and verdict.facts.gradient_norm > 0
    assert verdict.facts == checks.run(graph).facts


def test_the_pool_answers_what_it_was_given_and_nothing_else():
    config = tiny_config()
    graph, other = parse("y = x / std(x, group)"), parse("y = relu(x)")
    with_pool = CheckPool(config.model_dump(mode="json"), 1, build_checks, limit=2)
    try:
        with_pool.submit(graph)
        known = with_pool.take(graph)
        assert known is not None and known.canonical_hash is not None
        assert known.stages.keys() == {RejectionStage.STATIC, RejectionStage.NUMERIC, RejectionStage.STABILITY}
        assert with_pool.take(graph) is None  # taken once
        assert with_pool.take(other) is None  # never given
        for text in ("y = x", "y = -x", "y = tanh(x)"):  # beyond the limit, the oldest is dropped
            with_pool.submit(parse(text))
        assert len(with_pool) == 2 and with_pool.dropped == 1
        assert (with_pool.hits, with_pool.misses) == (1, 2)
    finally:
        with_pool.close()


def test_a_dead_pool_says_why_and_takes_no_more_work():
    config = tiny_config()
    graph = parse("y = x / std(x, group)")
    with_pool = CheckPool(config.model_dump(mode="json"), 1, build_checks)
    try:
        with_pool.submit(graph)
        assert with_pool.take(graph) is not None  # started and answering
        assert len(with_pool.pids()) == 1
        for pid in with_pool.pids():
            os.kill(pid, signal.SIGKILL)
        # Submitted once the process is gone, so it cannot have answered first (on a busy machine a layer
        # submitted before the kill was sometimes checked before the kill landed).
        wait_until(lambda: not with_pool.pids(), what="the killed pool process to be gone")
        with_pool.submit(parse("y = relu(x)"))
        assert with_pool.take(parse("y = relu(x)")) is None
        assert with_pool.broken is not None and "terminated abruptly" in with_pool.broken
        with_pool.submit(graph)
        assert len(with_pool) == 0 and with_pool.take(graph) is None
    finally:
        with_pool.close()


def test_a_pool_needs_a_process():
    with pytest.raises(ValueError, match="check workers must be >= 1"):
        CheckPool(tiny_config().model_dump(mode="json"), 0, build_checks)
